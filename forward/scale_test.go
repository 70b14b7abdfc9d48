package forward_test

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
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
	run := runner(b, fl.e.w, fl.in, forward.VNetHdr{}, forward.Transmit, nil)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}
