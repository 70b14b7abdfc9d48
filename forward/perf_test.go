package forward_test

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// flow is an established connection ready for benchmarks: a client packet
// and a reply, each to be copied into a reused buffer before every Process
// (Process rewrites in place).
type flow struct {
	e         *env
	in, reply []byte
}

func newFlow(tb testing.TB, m lvs.Method, link forward.Framing, payload int) *flow {
	tb.Helper()
	e := newEnv(tb, envOpts{link: link}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 8080, m), tunSrc: dip4})
	body := string(make([]byte, payload))
	first := pkt{link: link, src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(tb)
	if v, _ := e.process(first, forward.VNetHdr{}); v != forward.Transmit {
		tb.Fatalf("SYN: %v", v)
	}
	return &flow{
		e:     e,
		in:    pkt{link: link, src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, payload: body}.build(tb),
		reply: pkt{link: link, srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: ack, payload: body}.build(tb),
	}
}

// runner returns a function that processes frame once from a reused buffer
// and fails the test if the verdict is not want.
func runner(tb testing.TB, w *forward.Worker, frame []byte, vnet forward.VNetHdr, want forward.Verdict, each func(buf []byte)) func() {
	buf := make([]byte, headroom+len(frame))
	p := new(forward.Packet)
	return func() {
		copy(buf[headroom:], frame)
		if each != nil {
			each(buf[headroom:])
		}
		*p = forward.Packet{Buf: buf, Off: headroom, Len: len(frame), VNet: vnet}
		if v := w.Process(p); v != want {
			tb.Fatalf("verdict %v, want %v", v, want)
		}
	}
}

func TestProcessAllocs(t *testing.T) {
	nat := newFlow(t, lvs.NAT, forward.Ethernet, 100)
	natIP := newFlow(t, lvs.NAT, forward.IP, 100)
	natRST := newFlow(t, lvs.NAT, forward.Ethernet, 100)
	natRST.e.tab.SetCheckRST(true)
	dr := newFlow(t, lvs.DR, forward.Ethernet, 100)
	tun := newFlow(t, lvs.TUN, forward.Ethernet, 100)
	std := stdEnv(t, envOpts{})
	own := pkt{src: ap(cli4, 40000), dst: ap(dip4, 80), flags: syn}.build(t) // the director's own traffic
	sport := uint16(1)
	tests := []struct {
		name   string
		run    func()
		max    float64
		reason string
	}{
		{name: "nat in", run: runner(t, nat.e.w, nat.in, forward.VNetHdr{}, forward.Transmit, nil)},
		{name: "nat out", run: runner(t, nat.e.w, nat.reply, forward.VNetHdr{}, forward.Transmit, nil)},
		{name: "nat in partial checksum", run: runner(t, nat.e.w, nat.in, makePartial(forward.Ethernet, append([]byte(nil), nat.in...)), forward.Transmit, nil)},
		{name: "nat in, RST window check", run: runner(t, natRST.e.w, natRST.in, forward.VNetHdr{}, forward.Transmit, nil)},
		{name: "nat out, RST window check", run: runner(t, natRST.e.w, natRST.reply, forward.VNetHdr{}, forward.Transmit, nil)},
		{name: "nat in ip link", run: runner(t, natIP.e.w, natIP.in, forward.VNetHdr{}, forward.Transmit, nil)},
		{name: "dr", run: runner(t, dr.e.w, dr.in, forward.VNetHdr{}, forward.Transmit, nil)},
		{name: "tun", run: runner(t, tun.e.w, tun.in, forward.VNetHdr{}, forward.Transmit, nil)},
		{name: "tun gso", run: tunGSOCase(t).run(t)},
		{name: "tun too big", run: tunTooBigCase(t).run(t)},
		{name: "tun fragments", run: tunFragCase(t).run(t)},
		{name: "to stack", run: runner(t, std.w, own, forward.VNetHdr{}, forward.ToStack, nil)},
		{name: "stray ack to stack", run: runner(t, nat.e.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: ack}.build(t), forward.VNetHdr{}, forward.ToStack, nil)},
		{
			name: "new connection", max: 1, reason: "(1000 connections into a fresh table: its slab and index grow)",
			run: runner(t, nat.e.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{}, forward.Transmit,
				func(b []byte) { binary.BigEndian.PutUint16(b[34:], sport); sport++ }),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := testing.AllocsPerRun(1000, tc.run)
			if n > tc.max {
				t.Errorf("%v allocations per packet, want at most %v %s", n, tc.max, tc.reason)
			}
			t.Logf("%v allocations per packet", n)
		})
	}
}

func benchFlow(b *testing.B, m lvs.Method, link forward.Framing, reply bool) {
	benchFlowCheck(b, m, link, reply, false)
}

func benchFlowCheck(b *testing.B, m lvs.Method, link forward.Framing, reply, checkRST bool) {
	f := newFlow(b, m, link, 64)
	f.e.tab.SetCheckRST(checkRST)
	frame := f.in
	if reply {
		frame = f.reply
	}
	run := runner(b, f.e.w, frame, forward.VNetHdr{}, forward.Transmit, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		run()
	}
}

// BenchmarkNATIn is one established flow's client packet (64 bytes of
// payload), rewritten in memory; the time includes copying the frame into
// the buffer.
func BenchmarkNATIn(b *testing.B) { benchFlow(b, lvs.NAT, forward.Ethernet, false) }

// BenchmarkNATOut is the reply direction of BenchmarkNATIn.
func BenchmarkNATOut(b *testing.B) { benchFlow(b, lvs.NAT, forward.Ethernet, true) }

// BenchmarkNATInCheckRST and BenchmarkNATOutCheckRST are BenchmarkNATIn
// and BenchmarkNATOut with the table's RST window check on (lvsd's
// default): each segment also updates its direction's window.
func BenchmarkNATInCheckRST(b *testing.B)  { benchFlowCheck(b, lvs.NAT, forward.Ethernet, false, true) }
func BenchmarkNATOutCheckRST(b *testing.B) { benchFlowCheck(b, lvs.NAT, forward.Ethernet, true, true) }

func BenchmarkDR(b *testing.B)  { benchFlow(b, lvs.DR, forward.Ethernet, false) }
func BenchmarkTUN(b *testing.B) { benchFlow(b, lvs.TUN, forward.Ethernet, false) }

// BenchmarkNewConn creates one connection per packet (SYNs from ever new
// source ports) in a table emptied every 64k connections.
func BenchmarkNewConn(b *testing.B) {
	e := newEnv(b, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 8080, lvs.NAT)})
	var n uint32
	run := runner(b, e.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: syn}.build(b), forward.VNetHdr{}, forward.Transmit,
		func(buf []byte) {
			n++
			binary.BigEndian.PutUint16(buf[34:], uint16(n))
			if n&0xffff == 0 {
				e.clk.advance(time.Hour)
				e.tab.Expire(e.clk.now())
			}
		})
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

// TestConcurrentWorkers runs several workers on distinct flows while the
// configuration is swapped, counters are read and connections expire; run
// with -race.
func TestConcurrentWorkers(t *testing.T) {
	d := rs(rip4, 8080, lvs.NAT)
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d})
	const workers, flows = 4, 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bg sync.WaitGroup
	bg.Go(func() {
		for ctx.Err() == nil {
			e.f.SetConfig(e.cfg)
			_ = e.f.Counters()
			e.tab.Expire(e.clk.now())
			time.Sleep(time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	for i := range workers {
		w := e.f.NewWorker()
		wg.Go(func() {
			for j := range flows {
				port := uint16(1024 + i*flows + j)
				for _, p := range []pkt{
					{src: ap(cli4, port), dst: ap(vip4, 80), flags: syn},
					{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, port), flags: syn | ack},
					{src: ap(cli4, port), dst: ap(vip4, 80), flags: ack, payload: "data"},
				} {
					frame := p.build(t)
					buf := make([]byte, headroom+len(frame))
					copy(buf[headroom:], frame)
					if v := w.Process(&forward.Packet{Buf: buf, Off: headroom, Len: len(frame)}); v != forward.Transmit {
						t.Errorf("worker %d flow %d: %v", i, j, v)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	cancel()
	bg.Wait()
	c := e.f.Counters()
	if c.ForwardedIn != 2*workers*flows || c.ForwardedOut != workers*flows || c.NewConns != workers*flows {
		t.Errorf("counters %+v", c)
	}
	if got := d.ActiveConns.Load(); got != workers*flows {
		t.Errorf("active connections %d, want %d", got, workers*flows)
	}
}

// TestNewConnSteadyStateAllocs: once the connection table has grown to its
// working size, the first packet of a connection allocates nothing: its
// entry reuses a slab slot that an expired connection freed. (The "new
// connection" case of TestProcessAllocs measures a table still growing.)
func TestNewConnSteadyStateAllocs(t *testing.T) {
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 8080, lvs.NAT)})
	var sport uint16
	run := runner(t, e.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{}, forward.Transmit,
		func(b []byte) { sport++; binary.BigEndian.PutUint16(b[34:], sport) })
	const conns = 1000
	for range 2 * conns { // grow the slab and index beyond what is measured
		run()
	}
	e.clk.advance(time.Hour)
	e.tab.Expire(e.clk.now())
	if n := e.tab.Len(); n != 0 {
		t.Fatalf("%d connections left after expiry, want 0", n)
	}
	if n := testing.AllocsPerRun(conns, run); n != 0 {
		t.Errorf("%v allocations per new connection in a grown table, want 0", n)
	}
}
