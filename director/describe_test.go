package director

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/lvs"
)

// TestTracePacket explains described packets on an in-memory director (not
// running: no neighbour is resolved, so a scheduled packet waits for its
// real server's MAC after the decision, as the kernel's neighbour layer
// queues it). The decision is wrr's next, and stays
// so however often it is traced; a real Schedule then returns it.
func TestTracePacket(t *testing.T) {
	d, _ := memDirector(t, testConfig)
	desc := func(s string) control.PacketDesc {
		t.Helper()
		p, err := control.ParsePacket(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	syn := desc("tcp 192.0.2.10:40000 > 192.0.2.100:80")
	var first string
	for i := range 3 {
		out, err := d.TracePacket(syn)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{
			"described packet on lvt0: ", "TCP 192.0.2.10:40000 > 192.0.2.100:80 [S]",
			"service:    TCP 192.0.2.100:80 scheduler wrr", "connection: none", "scheduler inputs:",
			"192.0.2.21:8080", "nat  weight 2 active 0 inactive 0 overloaded false available true health unchecked",
			"decision:   192.0.2.22:8080 (nat)", "after  02:00:5e:00:00:01 > 00:00:00:00:00:00, TCP 192.0.2.10:40000 > 192.0.2.22:8080 [S]",
			"verdict:    wait for the real server's MAC, being resolved",
		} {
			if !strings.Contains(out, h) {
				t.Errorf("trace %d lacks %q:\n%s", i, h, out)
			}
		}
		if i == 0 {
			first = out
		} else if out != first {
			t.Errorf("trace %d differs from the first:\n%s\nfirst:\n%s", i, out, first)
		}
	}
	d.mu.Lock()
	rs := d.services[lvs.ServiceKey{Addr: lvs.AddrFromNetip(netip.MustParseAddr("192.0.2.100")), Port: 80, Proto: lvs.TCP}]
	d.mu.Unlock()
	if got := rs.sched.Schedule(&lvs.Tuple{}); got == nil || got.Addr.Netip().String() != "192.0.2.22" {
		t.Errorf("wrr's first real choice after the traces: %v, want 192.0.2.22 (wrr over a configuration starts at the last added)", got)
	}

	out, err := d.TracePacket(desc("udp 192.0.2.10:5000 > 192.0.2.100:53"))
	if err != nil || !strings.Contains(out, "service:    UDP 192.0.2.100:53 scheduler rr") || !strings.Contains(out, "decision:   192.0.2.21:5353 (nat)") {
		t.Errorf("UDP: %v\n%s", err, out)
	}
	out, err = d.TracePacket(desc("tcp 192.0.2.10:40000 > 192.0.2.100:80 flags ."))
	if err != nil || !strings.Contains(out, "verdict:    to lvsd's netstack") || strings.Contains(out, "decision") {
		t.Errorf("a stray ACK: %v\n%s", err, out)
	}
	out, err = d.TracePacket(desc("tcp 192.0.2.10:40000 > 192.0.2.200:80"))
	if err != nil || !strings.Contains(out, "service:    none matches") || !strings.Contains(out, "to lvsd's netstack") {
		t.Errorf("no service: %v\n%s", err, out)
	}
	var pe *control.PacketError
	if _, err := d.TracePacket(desc("tcp 192.0.2.10:1 > 192.0.2.100:80 iface lvt9")); !errors.As(err, &pe) || !strings.Contains(err.Error(), `"lvt9": no such interface`) {
		t.Errorf("unknown interface: %v", err)
	}
}
