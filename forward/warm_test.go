package forward_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// warmEnv is a director of NAT (TCP and UDP, both families) and DR
// services, with the RST window check on, for the warm pass's tests.
func warmEnv(t testing.TB) *env {
	e := newEnv(t, envOpts{link: forward.Ethernet},
		svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 8080, lvs.NAT)},
		svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: rs(rip4, 5353, lvs.NAT)},
		svcSpec{vip: vip6, port: 443, proto: lvs.TCP, dest: rs(rip6, 8443, lvs.NAT)},
		svcSpec{vip: vip4, port: 81, proto: lvs.TCP, dest: rs(rip4, 81, lvs.DR)},
	)
	e.tab.SetCheckRST(true)
	return e
}

// warmBatches are batches of frames through the life of many connections:
// more TCP and UDP packets in a batch than conntrack.WarmBatch, a SYN and
// the next segment of its connection in one batch (the warm pass finds no
// entry for the second; Process creates it first), replies, a blind RST,
// and frames Process drops or gives the netstack.
func warmBatches(t testing.TB) [][][]byte {
	const clients = 40
	var open, talk, end [][]byte
	add := func(batch *[][]byte, p pkt) { *batch = append(*batch, p.build(t)) }
	for i := range clients {
		port := uint16(40000 + i)
		add(&open, pkt{src: ap(cli4, port), dst: ap(vip4, 80), flags: syn, seq: 1000})
		add(&talk, pkt{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, port), flags: syn | ack, seq: 5000})
		add(&talk, pkt{src: ap(cli4, port), dst: ap(vip4, 80), flags: ack, seq: 1001, payload: "hello"})
		add(&end, pkt{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, port), flags: ack, seq: 5001, payload: "world"})
		add(&end, pkt{src: ap(cli4, port), dst: ap(vip4, 80), flags: fin | ack, seq: 1006})
	}
	add(&open, pkt{src: ap(cli4, 41000), dst: ap(vip4, 80), flags: syn, seq: 1000})
	add(&open, pkt{src: ap(cli4, 41000), dst: ap(vip4, 80), flags: ack, seq: 1001})
	add(&open, pkt{src: ap(cli4, 42000), dst: ap(vip4, 53), proto: lvs.UDP, payload: "q"})
	add(&open, pkt{src: ap(cli6, 42000), dst: ap(vip6, 443), flags: syn})
	add(&open, pkt{src: ap(cli4, 42000), dst: ap(vip4, 81), flags: syn})
	add(&open, pkt{src: ap(cli4, 42000), dst: ap(dip4, 22), flags: syn}) // the director's own
	add(&open, pkt{dstMAC: otherMAC, src: ap(cli4, 42001), dst: ap(vip4, 80), flags: syn})
	open = append(open, []byte{1, 2, 3})
	add(&talk, pkt{srcMAC: rsMAC, src: ap(rip4, 5353), dst: ap(cli4, 42000), proto: lvs.UDP, payload: "a"})
	add(&talk, pkt{src: ap(cli6, 42000), dst: ap(vip6, 443), flags: ack, seq: 1001})
	add(&talk, pkt{src: ap(cli4, 42000), dst: ap(vip4, 81), flags: ack, seq: 1001})
	add(&talk, pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: rst, seq: 900000}) // blind
	add(&talk, pkt{src: ap(cli4, 40001), dst: ap(vip4, 80), flags: ack, fragOff: 10})
	add(&talk, pkt{src: ap(cli4, 42000), dst: ap(vip4, 53), proto: lvs.UDP, payload: "q"})
	return [][][]byte{open, talk, {talk[0]}, end}
}

// TestWarmSameDecisions runs the same batches through two directors, one
// processing each frame alone, the other calling Warm on each batch first
// (as the AF_PACKET reader does): every verdict, every frame written, the
// counters and the table must be the same.
func TestWarmSameDecisions(t *testing.T) {
	forward.WarmAlways(t)
	plain, warmed := warmEnv(t), warmEnv(t)
	type out struct {
		V     forward.Verdict
		Frame []byte
	}
	run := func(e *env, batch [][]byte, warm bool) []out {
		bufs := make([][]byte, len(batch))
		sizes := make([]int, len(batch))
		for i, f := range batch {
			bufs[i] = make([]byte, headroom+len(f)+16)
			copy(bufs[i][headroom:], f)
			sizes[i] = headroom + len(f)
		}
		if warm {
			e.w.Warm(bufs, sizes, headroom)
		}
		outs := make([]out, len(batch))
		for i, f := range batch {
			p := &forward.Packet{Buf: bufs[i], Off: headroom, Len: len(f)}
			v := e.w.Process(p)
			outs[i] = out{V: v}
			if v == forward.Transmit {
				outs[i].Frame = append([]byte(nil), p.Frame()...)
			}
		}
		return outs
	}
	sink := warmed.w.WarmSink()
	for bi, batch := range warmBatches(t) {
		want := run(plain, batch, false)
		got := run(warmed, batch, true)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("batch %d (-alone +warmed):\n%s", bi, diff)
		}
		plain.clk.advance(time.Second)
		warmed.clk.advance(time.Second)
	}
	if diff := cmp.Diff(plain.f.Counters(), warmed.f.Counters()); diff != "" {
		t.Errorf("counters (-alone +warmed):\n%s", diff)
	}
	if c := plain.f.Counters(); c.ForwardedIn == 0 || c.ForwardedOut == 0 || c.NewConns == 0 || c.ToStack == 0 {
		t.Errorf("the batches do not cover every path: %+v", c)
	}
	if plain.tab.Len() != warmed.tab.Len() {
		t.Errorf("connections: %d alone, %d warmed", plain.tab.Len(), warmed.tab.Len())
	}
	if warmed.w.WarmSink() == sink {
		t.Error("Warm never read the table: the comparison tested nothing")
	}
}

// TestWarmReadsTable checks that Warm hands a batch's TCP and UDP tuples to
// the table (the table's sum of what it read grows), does nothing for a
// batch of one or for frames without a connection tuple, and allocates
// nothing; and that it leaves a small table alone.
func TestWarmReadsTable(t *testing.T) {
	e := warmEnv(t)
	var acks [][]byte
	for i := range 8 {
		port := uint16(40000 + i)
		if v, _ := e.process(pkt{src: ap(cli4, port), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{}); v != forward.Transmit {
			t.Fatalf("SYN %d: %v", i, v)
		}
		acks = append(acks, pkt{src: ap(cli4, port), dst: ap(vip4, 80), flags: ack, seq: 1001}.build(t))
	}
	// The table is too small to gain (8 connections): Warm leaves it.
	sizes := []int{len(acks[0]), len(acks[1])}
	if sink := e.w.WarmSink(); true {
		e.w.Warm(acks[:2], sizes, 0)
		if e.w.WarmSink() != sink {
			t.Error("Warm read a table of fewer than warmMinConns connections")
		}
	}
	forward.WarmAlways(t)
	arp := pkt{dstMAC: bcastMAC, src: netip.AddrPortFrom(cli4, 1), dst: netip.AddrPortFrom(vip4, 1)}.build(t)
	frames := func(fs ...[]byte) ([][]byte, []int) {
		sizes := make([]int, len(fs))
		for i, f := range fs {
			sizes[i] = len(f)
		}
		return fs, sizes
	}
	tests := []struct {
		name  string
		fs    [][]byte
		grows bool
	}{
		{"established", acks, true},
		{"one frame", acks[:1], false},
		{"broadcast", [][]byte{arp, arp, arp}, false},
		{"truncated", [][]byte{acks[0][:20], acks[1][:30]}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.w.WarmSink()
			bufs, sizes := frames(tt.fs...)
			e.w.Warm(bufs, sizes, 0)
			if grew := e.w.WarmSink() != before; grew != tt.grows {
				t.Errorf("Warm read the table: %v, want %v", grew, tt.grows)
			}
		})
	}
	bufs, sizes := frames(acks...)
	if a := testing.AllocsPerRun(1000, func() { e.w.Warm(bufs, sizes, 0) }); a != 0 {
		t.Errorf("Warm: %v allocs, want 0", a)
	}
	// A size below the offset or beyond the buffer: skipped, no panic.
	e.w.Warm(bufs[:2], []int{3, len(bufs[1]) + 1}, 4)
}
