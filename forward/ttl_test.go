package forward_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// refICMPError is a plain reference of the ICMP error lvsd builds about the
// IP packet ip: from src to dst, IPv4 with TTL 64, TOS (ip's & 0x1e) | 0xc0,
// identification id, quoting up to 576 bytes in all; IPv6 with hop limit 64,
// quoting up to 1280 bytes; behind an Ethernet header to dstMAC on Ethernet
// links.
func refICMPError(link forward.Framing, dstMAC lvs.MAC, src, dst netip.Addr, id uint16, typ, code uint8, ip []byte) []byte {
	var out []byte
	if src.Is4() {
		icmp := cat([]byte{typ, code, 0, 0, 0, 0, 0, 0}, ip[:min(len(ip), 576-28)])
		put16(icmp[2:], int(^fold(onesSum(icmp, 0))))
		out = cat(refIPv4(src, dst, ip[1]&0x1e|0xc0, 64, 1, id, 0, len(icmp)), icmp)
		if link == forward.Ethernet {
			out = cat(ethHdr(dstMAC, dirMAC, 0x0800), out)
		}
		return out
	}
	icmp := cat([]byte{typ, code, 0, 0, 0, 0, 0, 0}, ip[:min(len(ip), 1280-48)])
	h := make([]byte, 40)
	h[0] = 0x60
	put16(h[4:], len(icmp))
	h[6], h[7] = 58, 64
	copy(h[8:], src.AsSlice())
	copy(h[24:], dst.AsSlice())
	put16(icmp[2:], int(^fold(onesSum(icmp, onesSum(h[8:40], uint32(len(icmp))+58)))))
	out = cat(h, icmp)
	if link == forward.Ethernet {
		out = cat(ethHdr(dstMAC, dirMAC, 0x86dd), out)
	}
	return out
}

// TestTimeExceeded: a packet toward a real server with TTL (hop limit) 1 or
// 0 is not forwarded, in any method, and its sender gets an ICMP time
// exceeded, as from IPVS's decrement_ttl: from the VIP (the packet's
// destination) to a client. A NAT reply with TTL 1 gets one from the
// director's address toward the real server (Config.Source), as from the
// kernel's ip_forward. TTL 2 leaves with 1.
func TestTimeExceeded(t *testing.T) {
	const dip6Str = "2001:db8:1::1"
	dip6 := netip.MustParseAddr(dip6Str)
	tests := []struct {
		name   string
		link   forward.Framing
		method lvs.Method
		open   *pkt // a packet that opens the connection first
		p      pkt
		// Expected ICMP error: from src to p's source, to the frame's
		// source MAC; an invalid src means none (dropped).
		src netip.Addr
	}{
		{name: "nat tcp4", method: lvs.NAT, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 1, tos: 0x17, payload: "x"}, src: vip4},
		{name: "nat udp4 ttl 0", method: lvs.NAT, p: pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 80), ttl: 255, payload: "x"}, src: vip4},
		{name: "nat tcp6", method: lvs.NAT, p: pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, ttl: 1, payload: "x"}, src: vip6},
		{name: "nat tcp4 ip link", link: forward.IP, method: lvs.NAT, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 1}, src: vip4},
		{name: "dr tcp4", method: lvs.DR, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 1}, src: vip4},
		{name: "dr udp6", method: lvs.DR, p: pkt{proto: lvs.UDP, src: ap(cli6, 40000), dst: ap(vip6, 80), ttl: 1, payload: "q"}, src: vip6},
		{name: "tun tcp4", method: lvs.TUN, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 1, payload: "x"}, src: vip4},
		{name: "tun tcp6 in ipv4", method: lvs.TUN, p: pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, ttl: 1}, src: vip6},
		{name: "nat reply tcp4", method: lvs.NAT,
			open: &pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn},
			p:    pkt{srcMAC: rsMAC, src: ap(rip4, 80), dst: ap(cli4, 40000), flags: syn | ack, ttl: 1, payload: "y"}, src: dip4},
		{name: "nat reply udp6", method: lvs.NAT,
			open: &pkt{proto: lvs.UDP, src: ap(cli6, 40000), dst: ap(vip6, 80)},
			p:    pkt{proto: lvs.UDP, srcMAC: rsMAC, src: ap(rip6, 80), dst: ap(cli6, 40000), ttl: 1}, src: dip6},
		{name: "no error to a multicast source", method: lvs.NAT, p: pkt{proto: lvs.UDP, src: ap(netip.MustParseAddr("224.0.0.9"), 40000), dst: ap(vip4, 80), ttl: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vip, rip := tc.p.dst.Addr(), rip4
			if tc.open != nil {
				vip = tc.open.dst.Addr()
			}
			if vip.Is6() && tc.method == lvs.NAT {
				rip = rip6
			}
			proto := tc.p.proto
			if proto == 0 {
				proto = lvs.TCP
			}
			e := newEnv(t, envOpts{link: tc.link}, svcSpec{vip: vip, port: 80, proto: proto, dest: rs(rip, 80, tc.method)})
			// The director's addresses toward the real servers.
			e.cfg.Source = func(dst netip.Addr) netip.Addr {
				if dst.Is4() {
					return dip4
				}
				return dip6
			}
			e.f.SetConfig(e.cfg)
			if tc.open != nil {
				o := *tc.open
				o.link = tc.link
				if v, _ := e.process(o.build(t), forward.VNetHdr{}); v != forward.Transmit {
					t.Fatalf("opening packet: %v", v)
				}
			}
			tc.p.link = tc.link
			in := tc.p.build(t)
			if tc.p.ttl == 255 { // the builder's zero is 64: write 0 by hand
				ip := ipOf(tc.link, in)
				ip[8] = 0
				ip[10], ip[11] = 0, 0
				put16(ip[10:], int(^fold(onesSum(ip[:20], 0))))
			}
			before := e.f.Counters()
			v, frames := e.processAll(in, forward.VNetHdr{})
			if r := e.dropReason(before); r != forward.DropTTLExceeded {
				t.Errorf("drop reason %v, want ttl-exceeded", r)
			}
			if after := e.f.Counters(); after.ForwardedIn != before.ForwardedIn || after.ForwardedOut != before.ForwardedOut {
				t.Errorf("counted as forwarded")
			}
			if !tc.src.IsValid() {
				if v != forward.Drop {
					t.Errorf("verdict %v, want drop without an ICMP error", v)
				}
				return
			}
			if v != forward.Transmit || len(frames) != 1 {
				t.Fatalf("verdict %v, %d frames; want one ICMP time exceeded", v, len(frames))
			}
			got := frames[0]
			typ := uint8(11)
			if tc.src.Is6() {
				typ = 3
			}
			var id uint16
			if tc.src.Is4() {
				id = binary.BigEndian.Uint16(got[l3Off(tc.link)+4:]) // the worker's counter
			}
			srcMAC := tc.p.srcMAC
			if srcMAC == (lvs.MAC{}) {
				srcMAC = cliMAC
			}
			want := refICMPError(tc.link, srcMAC, tc.src, tc.p.src.Addr(), id, typ, 0, ipOf(tc.link, in))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ICMP time exceeded (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTTLDecrement: TTL 2 leaves with 1 in every method, toward real servers
// and back to clients, and the incremental IPv4 checksum update equals a
// recomputation from scratch for every TTL and many checksums (the values
// where ones' complement arithmetic wraps included).
func TestTTLDecrement(t *testing.T) {
	for _, m := range []lvs.Method{lvs.NAT, lvs.DR, lvs.TUN} {
		e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 80, m), tunSrc: dip4})
		v, frames := e.processAll(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 2}.build(t), forward.VNetHdr{})
		if v != forward.Transmit || len(frames) != 1 {
			t.Fatalf("%v: verdict %v", m, v)
		}
		ip := frames[0][14:]
		if m == lvs.TUN {
			if ip[8] != 1 {
				t.Errorf("%v: outer TTL %d, want 1", m, ip[8])
			}
			ip = ip[20:]
		}
		if ip[8] != 1 {
			t.Errorf("%v: TTL %d, want 1", m, ip[8])
		}
		checkSums(t, ip[:binary.BigEndian.Uint16(ip[2:])]) // without Ethernet padding
	}

	rng := rand.New(rand.NewPCG(1, 2))
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 80, lvs.DR)})
	e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{})
	base := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack}.build(t)
	for i := range 20000 {
		in := append([]byte(nil), base...)
		ip := in[14:34]
		ip[8] = uint8(2 + i%254)
		// Vary the identification so that the checksum takes every kind of
		// value, 0x0000 and those near 0xffff included.
		binary.BigEndian.PutUint16(ip[4:], uint16(rng.Uint32()))
		ip[10], ip[11] = 0, 0
		put16(ip[10:], int(^fold(onesSum(ip, 0))))
		want := ttlDecremented(t, forward.Ethernet, in)[14:34]
		v, p := e.process(in, forward.VNetHdr{})
		if v != forward.Transmit {
			t.Fatalf("verdict %v", v)
		}
		if got := p.Frame()[14:34]; !cmp.Equal(want, got) {
			t.Fatalf("TTL %d checksum %#04x: got header % x, want % x", ip[8], binary.BigEndian.Uint16(ip[10:]), got, want)
		}
	}
}

func TestTimeExceededAllocs(t *testing.T) {
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 80, lvs.NAT)})
	in := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 1}.build(t)
	run := runner(t, e.w, in, forward.VNetHdr{}, forward.Transmit, nil)
	if n := testing.AllocsPerRun(1000, run); n > 0 {
		t.Errorf("%v allocations per time exceeded, want 0", n)
	}
}
