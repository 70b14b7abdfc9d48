package forward_test

import (
	"net/netip"
	"testing"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// TestV4MappedSpoof: an IPv6 packet with IPv4-mapped addresses
// (::ffff:a.b.c.d) never matches the IPv4 connection or service of those
// addresses, although lvs.Addr stores IPv4 as mapped: it is dropped and
// counted (v4-mapped), whichever direction it pretends to go.
func TestV4MappedSpoof(t *testing.T) {
	d := rs(rip4, 8080, lvs.NAT)
	d6 := rs(rip6, 8080, lvs.NAT)
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d}, svcSpec{vip: vip6, port: 80, proto: lvs.TCP, dest: d6})
	for _, p := range []pkt{
		{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn},
		{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: syn | ack},
		{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack},
	} {
		if v, _ := e.process(p.build(t), forward.VNetHdr{}); v != forward.Transmit {
			t.Fatalf("handshake: %v", v)
		}
	}
	mapped := func(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }
	for _, tt := range []struct {
		name string
		p    pkt
	}{
		{"client's segment of the IPv4 connection", pkt{src: ap(mapped(cli4), 40000), dst: ap(mapped(vip4), 80), flags: rst}},
		{"real server's reply of the IPv4 connection", pkt{srcMAC: rsMAC, src: ap(mapped(rip4), 8080), dst: ap(mapped(cli4), 40000), flags: ack, payload: "x"}},
		{"new connection to the IPv4 VIP", pkt{src: ap(mapped(cli4), 40001), dst: ap(mapped(vip4), 80), flags: syn}},
		{"mapped source to the IPv6 VIP", pkt{src: ap(mapped(cli4), 40002), dst: ap(vip6, 80), flags: syn}},
		{"UDP to the IPv4 VIP", pkt{proto: lvs.UDP, src: ap(cli6, 5353), dst: ap(mapped(vip4), 53)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := e.f.Counters()
			if v, _ := e.process(tt.p.build(t), forward.VNetHdr{}); v != forward.Drop {
				t.Fatalf("verdict %v, want Drop", v)
			}
			if r := e.dropReason(before); r != forward.DropV4Mapped {
				t.Errorf("drop reason %v, want v4-mapped", r)
			}
		})
	}
	// The IPv4 connection is untouched (the mapped RST did not close it).
	if v, _ := e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, payload: "data"}.build(t), forward.VNetHdr{}); v != forward.Transmit {
		t.Errorf("IPv4 connection after the spoofs: %v", v)
	}
	if d.ActiveConns.Load() != 1 || d6.ActiveConns.Load()+d6.InactiveConns.Load() != 0 {
		t.Errorf("conns: v4 active %d, v6 %d/%d", d.ActiveConns.Load(), d6.ActiveConns.Load(), d6.InactiveConns.Load())
	}
}
