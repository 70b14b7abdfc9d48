package conntrack

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// TestSynproxyState: an entry inserted with InsertSynproxy is marked, its
// record reads back, its delta is recorded once (the first SYN-ACK), and an
// Entry that outlived it, or a plain entry in its slot afterwards, reads as
// no SYN-proxy connection.
func TestSynproxyState(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.20", 8080, lvs.NAT)
	in := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	want := Synproxy{Cookie: 0xdeadbeef, ClientISN: 5000, MSS: 1452, SACK: true, Window: 502}
	e := new(Entry)
	sp := want
	if created, err := tab.InsertSynproxy(e, &in, d, nil, lvs.MAC{}, clk.now(), nil, &sp); !created || err != nil {
		t.Fatalf("InsertSynproxy: %v %v", created, err)
	}
	if !e.Synproxy {
		t.Fatal("entry not marked")
	}
	found, _ := tab.Lookup(&in)
	if found == nil || !found.Synproxy {
		t.Fatalf("lookup: %+v", found)
	}
	var got Synproxy
	open, delta, ok := tab.SynproxyOf(found, &got)
	if !ok || open || delta != 0 {
		t.Fatalf("before the SYN-ACK: open %v delta %d ok %v", open, delta, ok)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if !tab.SynproxyOpen(found, 12345) {
		t.Fatal("first SynproxyOpen refused")
	}
	if tab.SynproxyOpen(e, 999) {
		t.Error("second SynproxyOpen accepted")
	}
	if open, delta, ok = tab.SynproxyOf(e, &got); !open || delta != 12345 || !ok {
		t.Errorf("after: open %v delta %d ok %v", open, delta, ok)
	}

	if !tab.Remove(e) {
		t.Fatal("Remove")
	}
	if _, _, ok := tab.SynproxyOf(found, &got); ok {
		t.Error("an Entry of a removed connection reads as live")
	}
	if tab.SynproxyOpen(found, 1) {
		t.Error("SynproxyOpen on a removed connection")
	}
	plain, created, err := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
	if err != nil || !created {
		t.Fatal(err)
	}
	if plain.Synproxy {
		t.Error("a plain entry in the slot is marked")
	}
	plain.Synproxy = true // as a forged copy would claim
	if _, _, ok := tab.SynproxyOf(plain, &got); ok {
		t.Error("a plain entry reads as a SYN-proxy connection")
	}
}
