package conntrack

import (
	"testing"

	"github.com/lvsd/lvsd/lvs"
)

func failuresOf(tab *Table, d *lvs.Dest) uint64 {
	var n uint64
	tab.Failures(func(x *lvs.Dest, f uint64) {
		if x == d {
			n = f
		}
	})
	return n
}

// TestFailuresRST counts an RST that answers a forwarded SYN, and only
// that: an RST after the server's SYN-ACK, or on an established
// connection, or from the client, is no handshake failure.
func TestFailuresRST(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 8080, lvs.NAT)
	e := tab.NewEntry()
	open := func(port uint16) {
		t.Helper()
		in := tuple(lvs.TCP, "192.0.2.10", port, "192.0.2.100", 80)
		if created, err := tab.InsertInto(e, &in, d, nil, lvs.MAC{}, clk.now(), nil); !created || err != nil {
			t.Fatal(created, err)
		}
		tab.Update(e, FlagSYN, true, clk.now())
	}
	open(1000)
	tab.Update(e, FlagRST|FlagACK, false, clk.now()) // refused
	open(1001)
	tab.Update(e, FlagSYN|FlagACK, false, clk.now())
	tab.Update(e, FlagRST, false, clk.now()) // after the SYN-ACK
	open(1002)
	tab.Update(e, FlagSYN|FlagACK, false, clk.now())
	tab.Update(e, FlagACK, true, clk.now())
	tab.Update(e, FlagRST, false, clk.now()) // established
	open(1003)
	tab.Update(e, FlagRST, true, clk.now()) // the client gives up
	open(1004)
	tab.Update(e, FlagRST|FlagACK, false, clk.now()) // refused
	if got := failuresOf(tab, d); got != 2 {
		t.Errorf("failures %d, want 2", got)
	}
	if s := tab.Stats(); len(s.Dests) != 1 || s.Dests[0].Failures != 2 {
		t.Errorf("stats %+v", s.Dests)
	}
}

// TestFailuresExpired counts a NAT handshake that expires in SYN_RECV
// without a packet of the server's, and not one the server answered, nor
// a DR connection (whose replies the director never sees).
func TestFailuresExpired(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	nat, dr := dest("192.0.2.21", 8080, lvs.NAT), dest("192.0.2.22", 80, lvs.DR)
	e := tab.NewEntry()
	open := func(d *lvs.Dest, port uint16) {
		t.Helper()
		in := tuple(lvs.TCP, "192.0.2.10", port, "192.0.2.100", 80)
		if created, err := tab.InsertInto(e, &in, d, nil, lvs.MAC{}, clk.now(), nil); !created || err != nil {
			t.Fatal(created, err)
		}
		tab.Update(e, FlagSYN, true, clk.now())
	}
	open(nat, 1000) // no answer
	open(nat, 1001)
	tab.Update(e, FlagSYN|FlagACK, false, clk.now()) // answered; the client's ACK lost
	open(dr, 1002)
	if got := failuresOf(tab, nat); got != 0 {
		t.Fatalf("failures %d before expiry", got)
	}
	clk.advance(TCPSynTimeout + 2*tickMs*1e6)
	if n := tab.Expire(clk.now()); n != 3 {
		t.Fatalf("expired %d, want 3", n)
	}
	if got, gotDR := failuresOf(tab, nat), failuresOf(tab, dr); got != 1 || gotDR != 0 {
		t.Errorf("failures NAT %d (want 1), DR %d (want 0)", got, gotDR)
	}
}

// TestCountFailureAllocs: the packet path's count allocates nothing and
// sums across workers.
func TestCountFailureAllocs(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 8080, lvs.NAT)
	var want uint64
	for w := range 3 {
		e := tab.NewEntry()
		in := tuple(lvs.TCP, "192.0.2.10", uint16(1000+w), "192.0.2.100", 80)
		if _, err := tab.InsertInto(e, &in, d, nil, lvs.MAC{}, clk.now(), nil); err != nil {
			t.Fatal(err)
		}
		e.CountFailure() // grows the worker's pages once
		want++
		if n := testing.AllocsPerRun(1000, e.CountFailure); n != 0 {
			t.Errorf("CountFailure allocates %v", n)
		}
		want += 1001
	}
	if got := failuresOf(tab, d); got != want {
		t.Errorf("failures %d, want %d", got, want)
	}
}
