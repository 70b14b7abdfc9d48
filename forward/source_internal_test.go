package forward

import (
	"net/netip"
	"testing"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// BenchmarkSource compares the two ways of finding the outer source of a
// TUN packet toward a real server reached through a gateway route, with the
// director's rule (config.Interface.Source) over six addresses and six
// routes: asking Config.Source per packet ("scan", the code before the
// snapshot precomputed it) and the snapshot's precomputed answer
// ("precomputed", what Process does).
func BenchmarkSource(b *testing.B) {
	p := netip.MustParsePrefix
	gw := netip.MustParseAddr
	ifc := &config.Interface{
		Addresses: []netip.Prefix{
			p("2001:db8::1/64"), p("2001:db8:1::1/64"),
			p("192.0.2.1/29"), p("192.0.2.9/29"), p("192.0.2.129/28"), p("192.0.2.145/28"),
		},
		Routes: []config.Route{
			{Destination: p("192.0.2.32/28"), Gateway: gw("192.0.2.2")},
			{Destination: p("192.0.2.48/28"), Gateway: gw("192.0.2.3")},
			{Destination: p("192.0.2.64/27"), Gateway: gw("192.0.2.4")},
			{Destination: p("192.0.2.96/27"), Gateway: gw("192.0.2.130")},
			{Destination: p("192.0.2.16/28"), Gateway: gw("192.0.2.10")},
			{Destination: p("2001:db8:2::/48"), Gateway: gw("2001:db8::2")},
		},
	}
	rip := lvs.AddrFrom4([]byte{192, 0, 2, 21})
	d := lvs.NewDest(rip.Netip(), 80, lvs.TUN, 1)
	key := lvs.ServiceKey{Addr: lvs.AddrFrom4([]byte{192, 0, 2, 100}), Port: 80, Proto: lvs.TCP}
	cfg := &Config{
		Services: map[lvs.ServiceKey]*Service{key: {Key: key, Dests: []*lvs.Dest{d}}},
		Source: func(dst netip.Addr) netip.Addr {
			src, _ := ifc.Source(dst)
			return src
		},
	}
	f := &Forwarder{}
	f.SetConfig(cfg)
	s := f.snap.Load()
	want := lvs.AddrFrom4([]byte{192, 0, 2, 9})
	for _, bc := range []struct {
		name string
		fn   func(*lvs.Addr) (lvs.Addr, bool)
	}{{"scan", s.lookupSource}, {"precomputed", s.source}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if src, ok := bc.fn(&rip); !ok || src != want {
					b.Fatalf("source %v %v, want %v", src, ok, want)
				}
			}
		})
	}
}
