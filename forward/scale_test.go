package forward_test

import (
	"encoding/binary"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/sched"
)

// TestTUNSourcePerRealServer checks that the outer source of TUN packets is
// Config.Source's answer for each real server, asked once per real server
// when the snapshot is published and never per packet, and asked again
// when a new snapshot is.
func TestTUNSourcePerRealServer(t *testing.T) {
	ripB := netip.MustParseAddr("192.0.2.22")
	dipB := netip.MustParseAddr("192.0.2.2")
	dipC := netip.MustParseAddr("192.0.2.3")
	e := newEnv(t, envOpts{},
		svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 80, lvs.TUN), tunSrc: dip4},
		svcSpec{vip: vip4, port: 81, proto: lvs.TCP, dest: rs(ripB, 81, lvs.TUN)})
	var calls atomic.Int64
	publish := func(src func(netip.Addr) netip.Addr) {
		cfg := &forward.Config{Services: e.cfg.Services, Source: func(dst netip.Addr) netip.Addr {
			calls.Add(1)
			return src(dst)
		}}
		calls.Store(0)
		e.f.SetConfig(cfg)
		if n := calls.Load(); n != 2 {
			t.Errorf("SetConfig asked Source %d times, want 2 (once per real server)", n)
		}
		calls.Store(0)
	}
	// Each real server has a source of its own.
	publish(func(dst netip.Addr) netip.Addr {
		if dst.Unmap() == ripB {
			return dipB
		}
		return dip4
	})
	check := func(port uint16, rip, dip netip.Addr) {
		t.Helper()
		for i, flags := range []uint8{syn, ack, ack} {
			in := pkt{src: ap(cli4, 40000), dst: ap(vip4, port), flags: flags, payload: "x"}.build(t)
			v, frames := e.processAll(in, forward.VNetHdr{})
			if v != forward.Transmit || len(frames) != 1 {
				t.Fatalf("port %d packet %d: verdict %v, %d frames", port, i, v, len(frames))
			}
			outer := ipOf(forward.Ethernet, frames[0])
			src, _ := netip.AddrFromSlice(outer[12:16])
			dst, _ := netip.AddrFromSlice(outer[16:20])
			if src != dip || dst != rip {
				t.Errorf("port %d packet %d: outer %v -> %v, want %v -> %v", port, i, src, dst, dip, rip)
			}
		}
	}
	check(80, rip4, dip4)
	check(81, ripB, dipB)
	if n := calls.Load(); n != 0 {
		t.Errorf("Source asked %d times while forwarding, want 0 (precomputed per real server)", n)
	}
	// A new snapshot (a reload that changed the interface's addresses)
	// brings new answers, for the connections already made too.
	publish(func(netip.Addr) netip.Addr { return dipC })
	check(80, rip4, dipC)
	check(81, ripB, dipC)
	if n := calls.Load(); n != 0 {
		t.Errorf("Source asked %d times while forwarding, want 0", n)
	}
}

// routedInterface is an interface whose route toward rip4 goes through a
// gateway, behind a few addresses and routes, as config.Interface.Source
// walks them.
func routedInterface() *config.Interface {
	p := netip.MustParsePrefix
	return &config.Interface{
		Name: "lvt0",
		Addresses: []netip.Prefix{
			p("2001:db8::1/64"), p("2001:db8:1::1/64"),
			p("192.0.2.1/29"), p("192.0.2.9/29"), p("192.0.2.129/28"), p("192.0.2.145/28"),
		},
		Routes: []config.Route{
			{Destination: p("192.0.2.32/28"), Gateway: netip.MustParseAddr("192.0.2.2")},
			{Destination: p("192.0.2.48/28"), Gateway: netip.MustParseAddr("192.0.2.3")},
			{Destination: p("192.0.2.64/27"), Gateway: netip.MustParseAddr("192.0.2.4")},
			{Destination: p("192.0.2.96/27"), Gateway: netip.MustParseAddr("192.0.2.130")},
			{Destination: p("192.0.2.16/28"), Gateway: netip.MustParseAddr("192.0.2.10")},
			{Destination: p("2001:db8:2::/48"), Gateway: netip.MustParseAddr("2001:db8::2")},
		},
	}
}

// BenchmarkTUNRouted is BenchmarkTUN with the director's source toward the
// real server found through routedInterface (config.Interface.Source), as
// lvsd's director configures it, instead of the tests' constant.
func BenchmarkTUNRouted(b *testing.B) {
	fl := newFlow(b, lvs.TUN, forward.Ethernet, 64)
	ifc := routedInterface()
	if src, _ := ifc.Source(rip4); src != netip.MustParseAddr("192.0.2.9") {
		b.Fatalf("source toward %v is %v, want 192.0.2.9", rip4, src)
	}
	fl.e.f.SetConfig(&forward.Config{Services: fl.e.cfg.Services, Source: func(dst netip.Addr) netip.Addr {
		src, _ := ifc.Source(dst)
		return src
	}})
	loopCPU(b, runner(b, fl.e.w, fl.in, forward.VNetHdr{}, forward.Transmit, nil))
}

// The scaling benchmarks: how the packet path's cost grows with the work
// (docs/benchmarks.md, "Scaling"). Every one reports allocations, which
// must stay at 0.

// loopCPU runs the benchmark loop of run and reports, beside ns/op, the
// CPU time of the benchmark's thread per operation (cpu-ns/op), which on a
// machine shared with other work leaves out the time slices other
// processes took (not their pollution of the caches).
func loopCPU(b *testing.B, run func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	var c0 time.Duration
	n := 0
	for b.Loop() {
		if n == 0 {
			c0 = threadCPU()
		}
		run()
		n++
	}
	b.ReportMetric(float64((threadCPU()-c0).Nanoseconds())/float64(max(n, 1)), "cpu-ns/op")
}

// threadCPU returns the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scaleEnv is an Ethernet NAT director with the given services, a table
// of at most max connections, one worker.
func scaleEnv(tb testing.TB, max int, svcs ...*forward.Service) *env {
	tb.Helper()
	clk := &fakeClock{}
	clk.ns.Store(int64(time.Hour))
	tab := conntrack.New(conntrack.Options{Max: max, Clock: clk.now})
	f := forward.New(forward.Options{Link: forward.Ethernet, MAC: dirMAC, Table: tab})
	cfg := &forward.Config{Services: make(map[lvs.ServiceKey]*forward.Service, len(svcs))}
	for _, s := range svcs {
		cfg.Services[s.Key] = s
	}
	f.SetConfig(cfg)
	return &env{tb: tb, clk: clk, tab: tab, f: f, w: f.NewWorker(), cfg: cfg, link: forward.Ethernet}
}

// scaleReal returns real server k of a scaling benchmark: 120 addresses
// (192.0.2.128 to .247), then more ports.
func scaleReal(k int) *lvs.Dest {
	return rs(netip.AddrFrom4([4]byte{192, 0, 2, byte(128 + k%120)}), uint16(8000+k/120), lvs.NAT)
}

// scaleService returns virtual service k of a scaling benchmark: TCP,
// VIP 192.0.2.100 + k/60000, port 1 + k%60000, with its dests scheduled
// by sched.
func scaleService(tb testing.TB, k int, scheduler string, dests []*lvs.Dest) *forward.Service {
	key := lvs.ServiceKey{Addr: lvs.AddrFrom4([]byte{192, 0, 2, byte(100 + k/60000)}), Port: uint16(1 + k%60000), Proto: lvs.TCP}
	s, err := sched.New(scheduler, dests, sched.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return &forward.Service{Key: key, Dests: dests, Sched: s}
}

// newConnRunner returns a function that sends one SYN from a new client
// port to service pick() (its VIP and port written into the frame), and
// empties the table every 64k connections, as BenchmarkNewConn does. It
// runs it over one such period first (and at least once per service), so
// that the table has grown to its working size before the timing starts
// (b.Loop's first call).
func newConnRunner(b *testing.B, e *env, pick func() *forward.Service) func() {
	run := newConnRun(b, e, pick)
	for range max(1<<16+1, len(e.cfg.Services)) {
		run()
	}
	return run
}

func newConnRun(b *testing.B, e *env, pick func() *forward.Service) func() {
	var n uint32
	const ip, tcp = 14, 34
	return runner(b, e.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: syn}.build(b), forward.VNetHdr{}, forward.Transmit,
		func(f []byte) {
			n++
			s := pick()
			binary.BigEndian.PutUint16(f[tcp:], uint16(n))
			a := s.Key.Addr.Netip().As4()
			copy(f[ip+16:ip+20], a[:])
			binary.BigEndian.PutUint16(f[tcp+2:], s.Key.Port)
			fixIPv4(f[ip:])
			if n&0xffff == 0 {
				e.clk.advance(time.Hour)
				e.tab.Expire(e.clk.now())
			}
		})
}

// BenchmarkScaleServices opens connections (SYNs, NAT, one real server
// each, rr) to virtual services picked at random among 1 to 100,000: the
// service lookup and the scheduler's cache misses as the configuration
// grows. Established connections do not look services up.
func BenchmarkScaleServices(b *testing.B) {
	for _, n := range []int{1, 100, 10_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			svcs := make([]*forward.Service, n)
			for k := range svcs {
				svcs[k] = scaleService(b, k, "rr", []*lvs.Dest{scaleReal(k)})
			}
			e := scaleEnv(b, 0, svcs...)
			// Every service once first (the table makes a binding for
			// each real server on its first connection), then at random.
			x, k := uint32(1), 0
			run := newConnRunner(b, e, func() *forward.Service {
				if k < n {
					k++
					return svcs[k-1]
				}
				x = x*1664525 + 1013904223
				return svcs[int(uint64(x)*uint64(n)>>32)]
			})
			loopCPU(b, run)
		})
	}
}

// BenchmarkScaleReals opens connections (SYNs, NAT) to one virtual service
// of 8 to 1024 real servers, for every scheduler: the cost of choosing.
func BenchmarkScaleReals(b *testing.B) {
	for _, name := range sched.Names() {
		for _, n := range []int{8, 64, 256, 1024} {
			b.Run(name+"/"+strconv.Itoa(n), func(b *testing.B) {
				dests := make([]*lvs.Dest, n)
				for k := range dests {
					dests[k] = scaleReal(k)
				}
				svc := scaleService(b, 79, name, dests) // 192.0.2.100:80
				e := scaleEnv(b, 0, svc)
				run := newConnRunner(b, e, func() *forward.Service { return svc })
				loopCPU(b, run)
			})
		}
	}
}

// BenchmarkScaleConns forwards packets (NAT in, established, 64-byte
// payload) of connections picked at random among 1,000 to 10,000,000 in
// the table: the connection lookup as the table outgrows the caches and
// the TLB. The 10 M case needs about 1.5 GiB and minutes to fill, so it
// runs only with LVSD_BENCH_10M=1.
//
// For each N, beside the packets one at a time (ScaleConns/N), the same
// packets in batches of 32 as an AF_PACKET reader gets them: all 32 frames
// written first, then processed one by one, without (batch32/N) and with
// the warm pass first (warm32/N, Worker.Warm). ns/op and cpu-ns/op are per
// packet, the batch's share of the warm pass included. The table is filled
// once for the three.
func BenchmarkScaleConns(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000, 10_000_000} {
		var sc *scaleConns // filled by the first of the three that runs
		get := func(b *testing.B) *scaleConns {
			if n > 1_000_000 && os.Getenv("LVSD_BENCH_10M") == "" {
				b.Skip("set LVSD_BENCH_10M=1 to run the 10-million-connection case")
			}
			if sc == nil {
				sc = newScaleConns(b, n)
			}
			return sc
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			sc := get(b)
			run := runner(b, sc.e.w, sc.frame, forward.VNetHdr{}, forward.Transmit, sc.randomFlow)
			for range 10_000 {
				run() // the worker's first packets (counters, caches)
			}
			loopCPU(b, run)
		})
		for _, warm := range []bool{false, true} {
			name := "batch32/"
			if warm {
				name = "warm32/"
			}
			b.Run(name+strconv.Itoa(n), func(b *testing.B) {
				run := get(b).batchRunner(b, 32, warm)
				for range 10_000 {
					run()
				}
				loopCPU(b, run)
			})
		}
		sc = nil // the next N's table replaces this one
		runtime.GC()
	}
}

// scaleConns is BenchmarkScaleConns's director with n established
// connections.
type scaleConns struct {
	e     *env
	n     int
	hosts []byte
	x     uint64 // the LCG's state
	mask  uint64
	frame []byte // a client's ACK with 64 bytes of payload, of flow 0
}

func newScaleConns(b *testing.B, n int) *scaleConns {
	d := rs(rip4, 8080, lvs.NAT)
	svc := &forward.Service{Key: lvs.ServiceKey{Addr: lvs.AddrFromNetip(vip4), Port: 80, Proto: lvs.TCP}, Dests: []*lvs.Dest{d}, Sched: fakeSched{d}}
	e := scaleEnv(b, n, svc)
	e.f.SetConfig(e.cfg) // svc.Stats set
	// Flow i: client 192.0.2.h (h one of 2..254 but for the director's,
	// the VIP's and the real server's addresses), port 1024 +
	// i/len(hosts).
	sc := &scaleConns{e: e, n: n, x: 1, mask: 1}
	for h := 2; h <= 254; h++ {
		if h != 10 && h != 21 && h != 100 {
			sc.hosts = append(sc.hosts, byte(h))
		}
	}
	ent := e.tab.NewEntry()
	now := e.clk.now()
	for i := range n {
		h, port := sc.flow(i)
		k := lvs.Tuple{Src: lvs.AddrFrom4([]byte{192, 0, 2, h}), Dst: svc.Key.Addr, SPort: port, DPort: 80, Proto: lvs.TCP}
		if created, err := e.tab.InsertInto(ent, &k, d, svc.Stats, cliMAC, now, nil); !created || err != nil {
			b.Fatalf("insert %d: %v %v", i, created, err)
		}
		e.tab.Update(ent, syn, true, now)
		e.tab.Update(ent, syn|ack, false, now)
		e.tab.Update(ent, ack, true, now)
	}
	for sc.mask < uint64(n) {
		sc.mask <<= 1
	}
	sc.mask--
	sc.frame = pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: ack, payload: string(make([]byte, 64))}.build(b)
	return sc
}

func (sc *scaleConns) flow(i int) (byte, uint16) {
	return sc.hosts[i%len(sc.hosts)], uint16(1024 + i/len(sc.hosts))
}

// randomFlow rewrites the frame f (sc.frame's copy) into a packet of a
// random flow: a full-period LCG over the flows, as conntrack's scale
// benchmarks.
func (sc *scaleConns) randomFlow(f []byte) {
	const ip, tcp = 14, 34
	for {
		sc.x = (sc.x*6364136223846793005 + 1442695040888963407) & sc.mask
		if sc.x < uint64(sc.n) {
			break
		}
	}
	h, port := sc.flow(int(sc.x))
	f[ip+15] = h
	binary.BigEndian.PutUint16(f[tcp:], port)
	fixIPv4(f[ip:])
}

// batchRunner returns a function that forwards one packet per call, in
// batches of size: every size calls it writes the next batch's frames of
// random flows (as a reader's ReadBatch would) and, when warm, gives them
// to Worker.Warm.
func (sc *scaleConns) batchRunner(b *testing.B, size int, warm bool) func() {
	bufs := make([][]byte, size)
	sizes := make([]int, size)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+len(sc.frame))
		sizes[i] = len(bufs[i])
	}
	p := new(forward.Packet)
	w := sc.e.w
	j := 0
	return func() {
		if j == 0 {
			for _, buf := range bufs {
				copy(buf[headroom:], sc.frame)
				sc.randomFlow(buf[headroom:])
			}
			if warm {
				w.Warm(bufs, sizes, headroom)
			}
		}
		*p = forward.Packet{Buf: bufs[j], Off: headroom, Len: len(sc.frame)}
		if v := w.Process(p); v != forward.Transmit {
			b.Fatalf("verdict %v, want Transmit", v)
		}
		j = (j + 1) % size
	}
}
