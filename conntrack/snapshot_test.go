package conntrack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// TestSnapshotRestore takes a snapshot of a table, encodes and decodes it,
// and restores it into another table (with its own clock and its own Dest
// values, as another process would have): every connection comes back with
// its state, its real server by identity, the time it had left, its
// windows, its reply index and its real server's counts.
func TestSnapshotRestore(t *testing.T) {
	src, clk := newTestTable(t, 100)
	src.SetCheckRST(true) // windows are recorded only with the check on
	natA := dest("192.0.2.21", 8080, lvs.NAT)
	natB := dest("192.0.2.22", 8080, lvs.NAT)
	dr := dest("192.0.2.23", 53, lvs.DR)
	now := clk.now()
	mac := lvs.MAC{2, 0, 0x5e, 0, 0, 0x0c}

	// An established NAT connection, with windows.
	est := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	e, _, err := src.Insert(&est, natA, nil, mac, now)
	if err != nil {
		t.Fatal(err)
	}
	src.Track(e, &Segment{Flags: FlagSYN, Seq: 1000, Len: 1, Win: 64000, WScale: 7}, true)
	src.Update(e, FlagSYN, true, now)
	src.Track(e, &Segment{Flags: FlagSYN | FlagACK, Seq: 5000, Len: 1, Win: 65000, WScale: 7}, false)
	src.Update(e, FlagSYN|FlagACK, false, now)
	src.Update(e, FlagACK, true, now)
	// A closing NAT connection on another server, and a UDP DR flow.
	fin := tuple(lvs.TCP, "192.0.2.11", 40001, "192.0.2.100", 80)
	f, _, _ := src.Insert(&fin, natB, nil, mac, now)
	src.Update(f, FlagSYN, true, now)
	src.Update(f, FlagSYN|FlagACK, false, now)
	src.Update(f, FlagACK, true, now)
	src.Update(f, FlagFIN|FlagACK, true, now)
	udp := tuple(lvs.UDP, "192.0.2.12", 5000, "192.0.2.100", 53)
	src.Insert(&udp, dr, nil, lvs.MAC{}, now)
	// One whose real server the new process does not have.
	gone := tuple(lvs.TCP, "192.0.2.13", 40002, "192.0.2.100", 80)
	g, _, _ := src.Insert(&gone, dest("192.0.2.29", 8080, lvs.NAT), nil, mac, now)
	src.Update(g, FlagSYN, true, now)

	clk.advance(3 * time.Second)
	now = clk.now()
	recs := src.Snapshot(now)
	if len(recs) != 4 {
		t.Fatalf("snapshot of %d connections, want 4", len(recs))
	}
	data, err := EncodeSnapshot(recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != snapshotHdrSize+4*snapshotRecSize {
		t.Errorf("snapshot of 4 connections is %d bytes", len(data))
	}
	got, err := DecodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(recs, got); diff != "" {
		t.Fatalf("decoded snapshot (-want +got):\n%s", diff)
	}

	// The new process: its own table, clock and Dest values.
	dst, clk2 := newTestTable(t, 100)
	clk2.advance(17 * time.Minute)
	newDests := map[lvs.Addr]*lvs.Dest{}
	for _, d := range []*lvs.Dest{natA, natB, dr} {
		nd := lvs.NewDest(d.Addr.Netip(), d.Port, d.Method, 1)
		newDests[nd.Addr] = nd
	}
	svc := new(lvs.Stats)
	resolve := func(in *lvs.Tuple, a lvs.Addr, port uint16) (*lvs.Dest, *lvs.Stats) {
		if d := newDests[a]; d != nil && d.Port == port {
			return d, svc
		}
		return nil, nil
	}
	now2 := clk2.now()
	if n := dst.Restore(got, resolve, now2); n != 3 {
		t.Errorf("restored %d connections, want 3", n)
	}
	tests := []struct {
		name  string
		in    lvs.Tuple
		d     *lvs.Dest
		state State
	}{
		{"established", est, newDests[natA.Addr], StateEstablished},
		{"fin", fin, newDests[natB.Addr], StateCloseWait},
		{"udp", udp, newDests[dr.Addr], StateUDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, reply := dst.Lookup(&tt.in)
			if e == nil || reply {
				t.Fatalf("lookup: %v %v", e, reply)
			}
			if e.Dest != tt.d || e.State() != tt.state || e.Svc != svc {
				t.Errorf("dest %v state %v, want %v %v", e.Dest, e.State(), tt.d, tt.state)
			}
			old, _ := src.Lookup(&tt.in)
			want := old.Expires(now)
			if left := e.Expires(now2); left < want-time.Millisecond || left > want || want > 900*time.Second-3*time.Second {
				t.Errorf("expires in %v, want %v", left, want)
			}
			if e.Method == lvs.NAT {
				r, reply := dst.Lookup(&e.Out)
				if r == nil || !reply || !r.Same(e) {
					t.Errorf("reply lookup of %v: %v %v", e.Out, r, reply)
				}
			}
		})
	}
	if got := connsOf(newDests[natA.Addr]); got != (conns{Active: 1}) {
		t.Errorf("established server's counts %+v", got)
	}
	if got := connsOf(newDests[natB.Addr]); got != (conns{Inactive: 1}) {
		t.Errorf("closing server's counts %+v", got)
	}
	// The windows came along: a blind RST is refused, one in the window
	// passes.
	dst.SetCheckRST(true)
	e2, _ := dst.Lookup(&est)
	if dst.Track(e2, &Segment{Flags: FlagRST, Seq: 1001 + 1<<30}, true) {
		t.Error("blind RST accepted after restore")
	}
	if !dst.Track(e2, &Segment{Flags: FlagRST, Seq: 1001}, true) {
		t.Error("in-window RST refused after restore")
	}
	// Restoring again changes nothing: the tuples are taken.
	if n := dst.Restore(got, resolve, now2); n != 0 {
		t.Errorf("second restore added %d", n)
	}
	// And the restored connections expire when their time is up.
	clk2.advance(DefaultUDPTimeout)
	dst.Expire(clk2.now())
	if e, _ := dst.Lookup(&udp); e != nil {
		t.Errorf("udp flow still there after its timeout")
	}
}

// TestDecodeSnapshotErrors checks that a damaged snapshot is refused with
// ErrSnapshot, before anything is allocated for a count it cannot hold.
func TestDecodeSnapshotErrors(t *testing.T) {
	one, err := EncodeSnapshot([]Record{{In: tuple(lvs.TCP, "192.0.2.10", 1, "192.0.2.100", 80), State: StateEstablished}})
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(one)) }
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"magic", mod(func(b []byte) []byte { b[0] = 'X'; return b })},
		{"version", mod(func(b []byte) []byte { b[5] = 3; return b })},
		{"truncated", one[:len(one)-1]},
		{"trailing", append(bytes.Clone(one), 0)},
		{"huge count", mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[6:], 1<<31); return b })},
		{"protocol", mod(func(b []byte) []byte { b[snapshotHdrSize+36] = 1; return b })},
		{"tcp state", mod(func(b []byte) []byte { b[snapshotHdrSize+62] = byte(StateUDP); return b })},
		{"flags", mod(func(b []byte) []byte { b[snapshotHdrSize+63] = 0x80; return b })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSnapshot(tt.data); !errors.Is(err, ErrSnapshot) {
				t.Errorf("error %v, want ErrSnapshot", err)
			}
		})
	}
	if _, err := DecodeSnapshot(one); err != nil {
		t.Errorf("the good one: %v", err)
	}
}

// FuzzDecodeSnapshot checks that any input is either refused or decodes to
// records that encode back to the same bytes.
func FuzzDecodeSnapshot(f *testing.F) {
	seed, _ := EncodeSnapshot([]Record{
		{In: tuple(lvs.TCP, "192.0.2.10", 1, "192.0.2.100", 80), State: StateEstablished, WasEst: true, Remaining: time.Minute},
		{In: tuple(lvs.UDP, "2001:db8::1", 2, "2001:db8::100", 53), State: StateUDP, NoOutput: true, Method: lvs.DR},
	})
	f.Add(seed)
	withSP, _ := EncodeSnapshot([]Record{
		{In: tuple(lvs.TCP, "192.0.2.10", 1, "192.0.2.100", 80), State: StateSynRecv, Remaining: time.Minute},
		{In: tuple(lvs.TCP, "192.0.2.10", 2, "192.0.2.100", 80), State: StateEstablished, Remaining: time.Minute,
			Synproxy: true, SP: Synproxy{Cookie: 1, ClientISN: 2, MSS: 1452, SACK: true, Window: 3}, SPOpen: true, SPDelta: 9},
	})
	f.Add(withSP)
	empty, _ := EncodeSnapshot(nil)
	f.Add(empty)
	f.Add([]byte("LVCT"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := DecodeSnapshot(data)
		if err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("error %v does not wrap ErrSnapshot", err)
			}
			return
		}
		again, err := EncodeSnapshot(recs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoded snapshot differs:\n%x\n%x", data, again)
		}
	})
}

// TestSnapshotV1Windows: a version 1 snapshot (an older lvsd handing over)
// is read, its window words converted to the current packing.
func TestSnapshotV1Windows(t *testing.T) {
	for _, tt := range []struct{ v1, want uint32 }{
		{0, 0},
		{7<<28 | 65535, 7<<winScaleShift | 65535},
		{15<<28 | 512, winNoScale<<winScaleShift | 512},
		{0<<28 | (1<<28 - 1), winMax},
	} {
		if got := winFromV1(tt.v1); got != tt.want {
			t.Errorf("winFromV1(%#x) = %#x, want %#x", tt.v1, got, tt.want)
		}
	}
}
