package director

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// TestPassiveEjects: failures counted for a real server of a service with
// passive detection take it out of the list (as a failed check would) and
// put it back at the head when the ejection ends; the status shows it;
// without the passive table the same failures change nothing.
func TestPassiveEjects(t *testing.T) {
	passive := `
  [virtual_server.passive]
  enabled = true
  failures = 2
  interval = "10s"
  base_ejection_time = "30s"
`
	fail := func(td *testDirector, addr string, n int) {
		t.Helper()
		e := td.d.Table().NewEntry()
		in := lvs.Tuple{Proto: lvs.TCP, Src: lvs.AddrFromNetip(netip.MustParseAddr("192.0.2.50")), SPort: 40000,
			Dst: lvs.AddrFromNetip(netip.MustParseAddr("192.0.2.100")), DPort: 80}
		if _, err := td.d.Table().InsertInto(e, &in, td.dest(80, addr, 8080), nil, lvs.MAC{}, td.d.Table().Now(), nil); err != nil {
			t.Fatal(err)
		}
		for range n {
			e.CountFailure()
		}
		td.d.Table().Remove(e)
	}

	td := newTestDirector(t, realsConf(passive, "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"))
	t0 := time.Unix(1e9, 0)
	td.d.observePassive(t0)
	td.d.waitEdges() // its edges apply in the background
	fail(td, "192.0.2.22", 2)
	td.d.observePassive(t0.Add(2 * time.Second))
	td.d.waitEdges() // its edges apply in the background
	if got := td.list(); got != "23 21" {
		t.Fatalf("list %s, want .22 ejected", got)
	}
	h := realHealth(td.d, "192.0.2.22")
	if h == nil || h.Passive == nil || h.Passive.State != "ejected" || h.Passive.Failures != 2 || h.State != "down" {
		t.Fatalf("health of .22: %+v", h)
	}
	if h := realHealth(td.d, "192.0.2.21"); h == nil || h.Passive == nil || h.Passive.State != "in" {
		t.Errorf("health of .21: %+v", h)
	}
	td.d.observePassive(t0.Add(20 * time.Second))
	td.d.waitEdges() // its edges apply in the background
	if got := td.list(); got != "23 21" {
		t.Fatalf("list %s before the end of the ejection", got)
	}
	td.d.observePassive(t0.Add(32 * time.Second))
	td.d.waitEdges() // its edges apply in the background
	if got := td.list(); got != "22 23 21" {
		t.Fatalf("list %s, want .22 back at the head", got)
	}

	off := newTestDirector(t, realsConf("", "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"))
	off.d.observePassive(t0)
	off.d.waitEdges() // its edges apply in the background
	fail(off, "192.0.2.22", 10)
	off.d.observePassive(t0.Add(2 * time.Second))
	off.d.waitEdges() // its edges apply in the background
	if got := off.list(); got != "23 22 21" {
		t.Errorf("list %s without passive detection", got)
	}
	if h := realHealth(off.d, "192.0.2.22"); h != nil {
		t.Errorf("health without check or passive detection: %+v", h)
	}
}
