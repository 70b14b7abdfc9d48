package conntrack

import (
	"encoding/binary"
	"errors"
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

// TestSynproxySnapshot: a snapshot carries the SYN proxy's record and
// delta of its connections (a trailer after the records, only when there
// are such connections), and Restore rebuilds them; a snapshot without
// them is what it was before the trailer; bad trailers are refused.
func TestSynproxySnapshot(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.20", 8080, lvs.NAT)
	open := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	opening := tuple(lvs.TCP, "192.0.2.10", 40001, "192.0.2.100", 80)
	plain := tuple(lvs.TCP, "192.0.2.10", 40002, "192.0.2.100", 80)
	e := new(Entry)
	sp1 := Synproxy{Cookie: 1, ClientISN: 2, MSS: 1452, SACK: true, Window: 3}
	sp2 := Synproxy{Cookie: 4, ClientISN: 5, MSS: 536, Window: 6}
	if _, err := tab.InsertSynproxy(e, &open, d, nil, lvs.MAC{}, clk.now(), nil, &sp1); err != nil {
		t.Fatal(err)
	}
	tab.SynproxyOpen(e, 777)
	if _, err := tab.InsertSynproxy(new(Entry), &opening, d, nil, lvs.MAC{}, clk.now(), nil, &sp2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tab.Insert(&plain, d, nil, lvs.MAC{}, clk.now()); err != nil {
		t.Fatal(err)
	}
	data, err := EncodeSnapshot(tab.Snapshot(clk.now()))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := DecodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	tab2, clk2 := newTestTable(t, 0)
	if n := tab2.Restore(recs, func(*lvs.Tuple, lvs.Addr, uint16) (*lvs.Dest, *lvs.Stats) { return d, nil }, clk2.now()); n != 3 {
		t.Fatalf("restored %d, want 3", n)
	}
	for _, tc := range []struct {
		in    lvs.Tuple
		sp    bool
		want  Synproxy
		open  bool
		delta uint32
	}{{open, true, sp1, true, 777}, {opening, true, sp2, false, 0}, {plain, false, Synproxy{}, false, 0}} {
		got, _ := tab2.Lookup(&tc.in)
		if got == nil || got.Synproxy != tc.sp {
			t.Fatalf("%v: %+v", tc.in, got)
		}
		var sp Synproxy
		o, dl, ok := tab2.SynproxyOf(got, &sp)
		if ok != tc.sp || o != tc.open || dl != tc.delta || sp != tc.want {
			t.Errorf("%v: %+v open %v delta %d ok %v", tc.in, sp, o, dl, ok)
		}
	}

	// Without SYN-proxy connections: no trailer.
	tab3, clk3 := newTestTable(t, 0)
	tab3.Insert(&plain, d, nil, lvs.MAC{}, clk3.now())
	data3, _ := EncodeSnapshot(tab3.Snapshot(clk3.now()))
	if len(data3) != snapshotHdrSize+snapshotRecSize {
		t.Errorf("a snapshot without SYN-proxy connections has %d bytes, want %d", len(data3), snapshotHdrSize+snapshotRecSize)
	}

	trailer := len(data) - (snapshotHdrSize + 3*snapshotRecSize)
	bad := map[string]func(b []byte) []byte{
		"cut":   func(b []byte) []byte { return b[:len(b)-1] },
		"magic": func(b []byte) []byte { b[len(b)-trailer] = 'X'; return b },
		"zero count": func(b []byte) []byte {
			return binary.BigEndian.AppendUint32(append(b[:len(b)-trailer], synproxyMagic...), 0)
		},
		"extra byte":  func(b []byte) []byte { return append(b, 0) },
		"flags":       func(b []byte) []byte { b[len(b)-trailer+8+16] |= 0x80; return b },
		"index order": func(b []byte) []byte { binary.BigEndian.PutUint32(b[len(b)-trailer+8+synproxyRecSize:], 0); return b },
	}
	for name, f := range bad {
		b := f(append([]byte(nil), data...))
		if _, err := DecodeSnapshot(b); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: %v, want ErrSnapshot", name, err)
		}
	}
}
