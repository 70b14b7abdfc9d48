package conntrack

import (
	"testing"

	"github.com/lvsd/lvsd/lvs"
)

// TestTrackRST checks the RFC 5961-style window check of RST segments on a
// NAT TCP connection: an RST near the sequence number its sender reached
// (within the receiver's largest window) is accepted, a blind one is not
// and is counted; with the check off, or on a DR connection, every RST is.
func TestTrackRST(t *testing.T) {
	clk := &fakeClock{}
	tab := New(Options{Clock: clk.now, CheckRST: true})
	d := dest("192.0.2.21", 8080, lvs.NAT)
	in := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	e, _, err := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
	if err != nil {
		t.Fatal(err)
	}
	const sISN = 5000
	var cISN uint32 = 0xfffff000 // the client's wraps around 2^32
	for _, s := range []struct {
		seg        Segment
		fromClient bool
	}{
		{Segment{Flags: FlagSYN, Seq: cISN, Len: 1, Win: 65535, WScale: 7}, true},
		{Segment{Flags: FlagSYN | FlagACK, Seq: sISN, Len: 1, Win: 65535, WScale: 7}, false},
		{Segment{Flags: FlagACK, Seq: cISN + 1, Win: 512, WScale: -1}, true},
		{Segment{Flags: FlagACK, Seq: cISN + 1, Len: 8000, Win: 512, WScale: -1}, true},
		{Segment{Flags: FlagACK, Seq: sISN + 1, Len: 100, Win: 1000, WScale: -1}, false}, // 128,000 bytes
	} {
		if !tab.Track(e, &s.seg, s.fromClient) {
			t.Fatalf("segment %+v refused", s.seg)
		}
	}
	cNxt := cISN + 1 + 8000
	for _, tt := range []struct {
		name       string
		seq        uint32
		fromClient bool
		want       bool
	}{
		{"client's RST at its next sequence number", cNxt, true, true},
		{"client's RST within the server's window", cNxt + 100_000, true, true},
		{"client's RST before its data, within the window", cNxt - 8000, true, true},
		{"blind RST past the server's window", cNxt + 200_000, true, false},
		{"blind RST far away", cNxt + 1<<31, true, false},
		{"blind RST behind the window", cNxt - 200_000, true, false},
		{"server's RST at its next sequence number", sISN + 101, false, true},
		{"server's RST within the client's window", sISN + 101 + 60_000, false, true},
		{"blind RST past the client's window (512 << 7)", sISN + 101 + 70_000, false, false},
	} {
		if got := tab.Track(e, &Segment{Flags: FlagRST, Seq: tt.seq, WScale: -1}, tt.fromClient); got != tt.want {
			t.Errorf("%s: Track = %v, want %v", tt.name, got, tt.want)
		}
	}
	if n := tab.Stats().RSTOutOfWindow; n != 4 {
		t.Errorf("RSTOutOfWindow = %d, want 4", n)
	}

	// A blind attacker cannot move the window first: a SYN or a segment
	// outside the window records nothing, so its RST stays blind.
	far := cNxt + 1<<30
	for _, tt := range []struct {
		name       string
		seg        Segment
		fromClient bool
		rst        uint32
	}{
		{"SYN far ahead, then an RST after it", Segment{Flags: FlagSYN, Seq: far, Len: 1, Win: 65535, WScale: 14}, true, far + 1},
		{"data far ahead, then an RST after it", Segment{Flags: FlagACK, Seq: far, Len: 1000, Win: 512, WScale: -1}, true, far + 1000},
		// The client's window is 512 << 7; a SYN with scale 14 or a
		// segment out of the window with a large window must not widen it.
		{"client SYN with scale 14, then its window", Segment{Flags: FlagSYN, Seq: cNxt, Win: 65535, WScale: 14}, true, 0},
		{"client ACK in window after it", Segment{Flags: FlagACK, Seq: cNxt, Win: 512, WScale: -1}, true, 0},
		{"client ACK out of the window with a large window", Segment{Flags: FlagACK, Seq: far, Win: 65535, WScale: -1}, true, 0},
	} {
		if !tab.Track(e, &tt.seg, tt.fromClient) {
			t.Fatalf("%s: segment refused", tt.name)
		}
		if tt.rst != 0 && tab.Track(e, &Segment{Flags: FlagRST, Seq: tt.rst, WScale: -1}, tt.fromClient) {
			t.Errorf("%s: the RST was accepted", tt.name)
		}
	}
	if tab.Track(e, &Segment{Flags: FlagRST, Seq: sISN + 101 + 70_000, WScale: -1}, false) {
		t.Error("the client's window was widened by a SYN or a segment out of the window")
	}
	if !tab.Track(e, &Segment{Flags: FlagRST, Seq: cNxt, WScale: -1}, true) {
		t.Error("after the blind segments, the client's RST at its next sequence number was refused")
	}
	if n := tab.Stats().RSTOutOfWindow; n != 7 {
		t.Errorf("RSTOutOfWindow = %d, want 7", n)
	}
	tab.SetCheckRST(false)
	if !tab.Track(e, &Segment{Flags: FlagRST, Seq: cNxt + 1<<31, WScale: -1}, true) {
		t.Error("with the check off (IPVS), a blind RST was refused")
	}
	tab.SetCheckRST(true)

	// A DR connection: the director sees one side only, nothing to check.
	dr := dest("192.0.2.22", 80, lvs.DR)
	in2 := tuple(lvs.TCP, "192.0.2.10", 40001, "192.0.2.100", 80)
	e2, _, _ := tab.Insert(&in2, dr, nil, lvs.MAC{}, clk.now())
	tab.Track(e2, &Segment{Flags: FlagSYN, Seq: 1, Len: 1, Win: 100, WScale: -1}, true)
	if !tab.Track(e2, &Segment{Flags: FlagRST, Seq: 1 << 31, WScale: -1}, true) {
		t.Error("DR connection: RST refused")
	}

	// A recycled entry starts with empty windows: an RST before the real
	// server answered is not checked.
	tab.Remove(e)
	e3, _, _ := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
	if e3.loc != e.loc {
		t.Fatalf("entry not recycled (%x, %x)", e3.loc, e.loc)
	}
	tab.Track(e3, &Segment{Flags: FlagSYN, Seq: 77, Len: 1, Win: 100, WScale: -1}, true)
	if !tab.Track(e3, &Segment{Flags: FlagRST, Seq: 1 << 31, WScale: -1}, true) {
		t.Error("recycled entry kept its old windows")
	}
	// The stale Entry of the old connection reaches nothing.
	if !tab.Track(e, &Segment{Flags: FlagRST, Seq: 1 << 31, WScale: -1}, true) {
		t.Error("stale entry checked against the new connection")
	}
	if n := testing.AllocsPerRun(1000, func() {
		tab.Track(e3, &Segment{Flags: FlagACK, Seq: 78, Len: 10, Win: 100, WScale: -1}, true)
	}); n != 0 {
		t.Errorf("Track allocates %v times", n)
	}
}

// TestTrackWindowScaleBothSides: a window is scaled only when both SYNs
// carried the window scale option (RFC 7323 section 2.2). A client that
// offered scale 7 to a server that offered none sends unscaled windows, so
// an RST of the server 70,000 bytes past its sequence number is outside
// the client's 65,535-byte window; with the option on both sides the same
// window field means 128,000 bytes and the RST is inside.
func TestTrackWindowScaleBothSides(t *testing.T) {
	const cISN, sISN = 1000, 5000
	for _, tt := range []struct {
		name     string
		serverWS int8
		accepted bool
	}{
		{"only the client offered it", -1, false},
		{"both offered it", 7, true},
	} {
		clk := &fakeClock{}
		tab := New(Options{Clock: clk.now, CheckRST: true})
		in := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
		e, _, err := tab.Insert(&in, dest("192.0.2.21", 8080, lvs.NAT), nil, lvs.MAC{}, clk.now())
		if err != nil {
			t.Fatal(err)
		}
		tab.Track(e, &Segment{Flags: FlagSYN, Seq: cISN, Len: 1, Win: 65535, WScale: 7}, true)
		tab.Track(e, &Segment{Flags: FlagSYN | FlagACK, Seq: sISN, Len: 1, Win: 65535, WScale: tt.serverWS}, false)
		tab.Track(e, &Segment{Flags: FlagACK, Seq: cISN + 1, Win: 1000, WScale: -1}, true)
		if got := tab.Track(e, &Segment{Flags: FlagRST, Seq: sISN + 1 + 70_000, WScale: -1}, false); got != tt.accepted {
			t.Errorf("%s: RST 70,000 past the server's sequence number accepted %v, want %v", tt.name, got, tt.accepted)
		}
	}
}

// TestTrackRSTTimeWait checks a client whose SYN meets the real server's
// TIME_WAIT of an earlier connection on the same ports: the server answers
// with that connection's ACK, the client resets it with an RST whose
// sequence number is that ACK's, unrelated to the client's own. The RST
// must pass (IPVS passes every RST), or the TIME_WAIT answers every retried
// SYN the same way until it expires. Once the server's SYN-ACK comes, its
// record starts from it and the check works again on both sides.
func TestTrackRSTTimeWait(t *testing.T) {
	clk := &fakeClock{}
	tab := New(Options{Clock: clk.now, CheckRST: true})
	d := dest("192.0.2.21", 8080, lvs.NAT)
	in := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	e, _, err := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
	if err != nil {
		t.Fatal(err)
	}
	const cISN, twSeq, twAck, sISN = 1000, 7_000_000, 900_000_000, 3_000_000_000
	steps := []struct {
		name       string
		seg        Segment
		fromClient bool
		want       bool
	}{
		{"client SYN", Segment{Flags: FlagSYN, Seq: cISN, Len: 1, Win: 65535, WScale: 7}, true, true},
		{"TIME_WAIT's ACK", Segment{Flags: FlagACK, Seq: twSeq, Win: 500, WScale: -1}, false, true},
		{"client's RST of that ACK", Segment{Flags: FlagRST, Seq: twAck, WScale: -1}, true, true},
		{"client SYN again", Segment{Flags: FlagSYN, Seq: cISN, Len: 1, Win: 65535, WScale: 7}, true, true},
		{"server SYN-ACK", Segment{Flags: FlagSYN | FlagACK, Seq: sISN, Len: 1, Win: 65535, WScale: 7}, false, true},
		{"client ACK", Segment{Flags: FlagACK, Seq: cISN + 1, Win: 512, WScale: -1}, true, true},
		{"server data", Segment{Flags: FlagACK, Seq: sISN + 1, Len: 100, Win: 512, WScale: -1}, false, true},
		{"server's RST at its next sequence number", Segment{Flags: FlagRST, Seq: sISN + 101, WScale: -1}, false, true},
		{"blind RST to the server", Segment{Flags: FlagRST, Seq: twAck, WScale: -1}, true, false},
		{"blind RST to the client", Segment{Flags: FlagRST, Seq: twSeq, WScale: -1}, false, false},
	}
	for _, s := range steps {
		if got := tab.Track(e, &s.seg, s.fromClient); got != s.want {
			t.Errorf("%s: Track = %v, want %v", s.name, got, s.want)
		}
	}
	if n := tab.Stats().RSTOutOfWindow; n != 2 {
		t.Errorf("RSTOutOfWindow = %d, want 2", n)
	}
}
