package forward_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// tunDest returns a TUN destination with tunnel t.
func tunDest(addr netip.Addr, t lvs.Tunnel) *lvs.Dest {
	d := rs(addr, 80, lvs.TUN)
	d.Tun = t
	return d
}

// refEncap is a plain reference of the tunnel header of IPVS's gue and gre
// (ipvs_gue_encap, ipvs_gre_encap) in front of inner, from src to dst (the
// outer addresses, for the UDP pseudo-header), with gue's UDP source port
// sport and, when rem is set, the remote checksum option for a checksum
// that starts at remStart of inner with its field at remStart+remOff.
func refEncap(t lvs.Tunnel, src, dst netip.Addr, sport uint16, rem bool, remStart, remOff int, inner []byte) []byte {
	innerProto := byte(4)
	if inner[0]>>4 == 6 {
		innerProto = 41
	}
	switch t.Type {
	case lvs.TunGUE:
		gue := []byte{0, innerProto, 0, 0}
		if rem {
			gue[0] = 2 // hlen: two 32-bit words of options
			gue[3] = 1 // the private flags word is present
			gue = append(gue, 0x80, 0, 0, 0, 0, 0, 0, 0)
			put16(gue[8:], remStart)
			put16(gue[10:], remStart+remOff)
		}
		udp := make([]byte, 8)
		put16(udp[0:], int(sport))
		put16(udp[2:], int(t.Port))
		put16(udp[4:], 8+len(gue)+len(inner))
		h := cat(udp, gue)
		if t.Flags != 0 {
			var ph []byte
			ph = append(ph, src.AsSlice()...)
			ph = append(ph, dst.AsSlice()...)
			ph = append(ph, 0, 17, 0, 0)
			put16(ph[len(ph)-2:], len(h)+len(inner))
			c := ^fold(onesSum(inner, onesSum(h, onesSum(ph, 0))))
			if c == 0 {
				c = 0xffff
			}
			put16(h[6:], int(c))
		}
		return h
	case lvs.TunGRE:
		h := []byte{0, 0, 0x08, 0x00}
		if innerProto == 41 {
			h[2], h[3] = 0x86, 0xdd
		}
		if t.Flags&lvs.TunCsum != 0 {
			h[0] = 0x80
			h = append(h, 0, 0, 0, 0)
			put16(h[4:], int(^fold(onesSum(inner, onesSum(h, 0)))))
		}
		return h
	}
	return nil
}

// TestTunnelTypeBytes compares whole gue and gre frames with a plain
// reference, for IPv4 and IPv6 outer headers and both families inside: the
// outer header as for ipip (TOS, TTL, DF, identification of the inner
// packet) but of protocol 17 or 47 and length the tunnel's, then the tunnel
// header, then the inner packet with its TTL decremented. gue's UDP source
// port is the flow's: the same for every packet of a connection, in the
// kernel's default local port range.
func TestTunnelTypeBytes(t *testing.T) {
	gue := lvs.Tunnel{Type: lvs.TunGUE, Port: 6080}
	gueCsum := lvs.Tunnel{Type: lvs.TunGUE, Port: 5555, Flags: lvs.TunCsum}
	gueRem := lvs.Tunnel{Type: lvs.TunGUE, Port: 5555, Flags: lvs.TunRemCsum}
	gre := lvs.Tunnel{Type: lvs.TunGRE}
	greCsum := lvs.Tunnel{Type: lvs.TunGRE, Flags: lvs.TunCsum}
	tcp4 := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 61, tos: 0x28, df: true, payload: "hello"}
	udp4 := pkt{proto: lvs.UDP, src: ap(cli4, 40001), dst: ap(vip4, 80), ttl: 9, tos: 0x02, payload: "q", pad: 9}
	tcp6 := pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, ttl: 200, tos: 0xb8, payload: "v6"}
	tests := []struct {
		name string
		link forward.Framing
		p    pkt
		tun  lvs.Tunnel
		rip  netip.Addr
	}{
		{name: "gue nocsum tcp4", p: tcp4, tun: gue, rip: rip4},
		{name: "gue csum udp4", p: udp4, tun: gueCsum, rip: rip4},
		{name: "gue remcsum without partial udp4", p: udp4, tun: gueRem, rip: rip4},
		{name: "gue csum tcp6 in ipv4", p: tcp6, tun: gueCsum, rip: rip4},
		{name: "gue nocsum tcp4 ip link", link: forward.IP, p: tcp4, tun: gue, rip: rip4},
		{name: "gre tcp4", p: tcp4, tun: gre, rip: rip4},
		{name: "gre csum udp4", p: udp4, tun: greCsum, rip: rip4},
		{name: "gre csum tcp6 in ipv4", p: tcp6, tun: greCsum, rip: rip4},
		{name: "gue nocsum tcp6 over ipv6", p: tcp6, tun: gue, rip: rip6},
		{name: "gue csum tcp4 over ipv6", p: tcp4, tun: gueCsum, rip: rip6},
		{name: "gre csum tcp6 over ipv6", p: tcp6, tun: greCsum, rip: rip6},
		{name: "gre udp4 over ipv6 ip link", link: forward.IP, p: udp4, tun: gre, rip: rip6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.link = tc.link
			proto := tc.p.proto
			if proto == 0 {
				proto = lvs.TCP
			}
			src := dip4
			if tc.rip.Is6() {
				src = dip6
			}
			e := newEnv(t, envOpts{link: tc.link}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: proto, dest: tunDest(tc.rip, tc.tun), tunSrc: src})
			in := tc.p.build(t)
			inner := ipOf(tc.link, ttlDecremented(t, tc.link, in))
			ttl, tos := tc.p.ttl, tc.p.tos
			if ttl == 0 {
				ttl = 64
			}
			var sport uint16
			for i := range 2 {
				v, frames := e.processAll(in, forward.VNetHdr{})
				if v != forward.Transmit || len(frames) != 1 {
					t.Fatalf("verdict %v, %d frames", v, len(frames))
				}
				got := frames[0]
				l2 := l3Off(tc.link)
				oproto := uint8(17)
				if tc.tun.Type == lvs.TunGRE {
					oproto = 47
				}
				ipLen := 20
				if tc.rip.Is6() {
					ipLen = 40
				}
				if tc.tun.Type == lvs.TunGUE {
					if len(got) < l2+ipLen+2 {
						t.Fatalf("%d-byte frame", len(got))
					}
					p := binary.BigEndian.Uint16(got[l2+ipLen:])
					if p < 32768 || p >= 60999 {
						t.Errorf("UDP source port %d outside 32768..60998", p)
					}
					if i == 1 && p != sport {
						t.Errorf("UDP source ports %d then %d in one flow", sport, p)
					}
					sport = p
				}
				enc := refEncap(tc.tun, src, tc.rip, sport, false, 0, 0, inner)
				var want []byte
				etype := uint16(0x0800)
				if tc.rip.Is4() {
					var id, flags uint16
					if tc.p.df && tc.p.dst.Addr().Is4() {
						flags = 0x4000
					} else {
						id = binary.BigEndian.Uint16(got[l2+4:]) // the worker's counter
					}
					want = refIPv4(src, tc.rip, tos, ttl-1, oproto, id, flags, len(enc)+len(inner))
				} else {
					etype = 0x86dd
					want = refIPv6(src, tc.rip, tos, ttl-1, oproto, len(enc)+len(inner))
				}
				if tc.link == forward.Ethernet {
					want = cat(ethHdr(rsMAC, dirMAC, etype), want)
				}
				want = cat(want, enc, inner)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("packet %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// TestGUERemCsum sends a packet with a partial checksum to a gue remcsum
// destination: the inner checksum stays partial (the pseudo-header sum),
// the GUE header carries the private flags word with the remcsum bit and
// the option's offsets, the UDP checksum covers it all, and the MTU is 8
// bytes lower. Completing the inner checksum where the option says, as the
// receiver does, gives the packet's checksum.
func TestGUERemCsum(t *testing.T) {
	tun := lvs.Tunnel{Type: lvs.TunGUE, Port: 5555, Flags: lvs.TunRemCsum}
	for _, p := range []pkt{
		{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, df: true, payload: "partial"},
		{proto: lvs.UDP, src: ap(cli6, 40000), dst: ap(vip6, 80), payload: "partial6"},
	} {
		proto := p.proto
		if proto == 0 {
			proto = lvs.TCP
		}
		e := newEnv(t, envOpts{}, svcSpec{vip: p.dst.Addr(), port: 80, proto: proto, dest: tunDest(rip4, tun), tunSrc: dip4})
		full := p.build(t)
		in := append([]byte(nil), full...)
		vnet := makePartial(forward.Ethernet, in)
		inner := ipOf(forward.Ethernet, ttlDecremented(t, forward.Ethernet, in))
		v, frames := e.processAll(in, vnet)
		if v != forward.Transmit || len(frames) != 1 {
			t.Fatalf("verdict %v, %d frames", v, len(frames))
		}
		got := frames[0]
		sport := binary.BigEndian.Uint16(got[14+20:])
		l4 := len(inner) - len(l4Of(inner))
		enc := refEncap(tun, dip4, rip4, sport, true, l4, csumOffset(inner), inner)
		var id, flags uint16
		if p.df {
			flags = 0x4000
		} else {
			id = binary.BigEndian.Uint16(got[14+4:])
		}
		want := cat(ethHdr(rsMAC, dirMAC, 0x0800), refIPv4(dip4, rip4, 0, 63, 17, id, flags, len(enc)+len(inner)), enc, inner)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", proto, diff)
		}
		// The receiver's remote checksum offload.
		rcv := append([]byte(nil), got[14+20+len(enc):]...)
		start, field := int(binary.BigEndian.Uint16(enc[16:])), int(binary.BigEndian.Uint16(enc[18:]))
		c := ^fold(onesSum(rcv[start:], 0))
		if c == 0 && proto == lvs.UDP {
			c = 0xffff
		}
		put16(rcv[field:], int(c))
		checkSums(t, rcv)
	}
}

// TestTunnelTypeTooBig checks the MTU of each tunnel as
// __ip_vs_get_out_rt computes it (the link's MTU less the outer IP header
// and the tunnel header): a packet that just fits is forwarded, one byte
// more is answered with fragmentation-needed (packet-too-big) carrying that
// MTU.
func TestTunnelTypeTooBig(t *testing.T) {
	tests := []struct {
		name    string
		tun     lvs.Tunnel
		rip     netip.Addr
		v6      bool
		partial bool
		mtu     int // the tunnel's
	}{
		{name: "ipip", rip: rip4, mtu: 1480},
		{name: "gue", tun: lvs.Tunnel{Type: lvs.TunGUE, Port: 6080}, rip: rip4, mtu: 1468},
		{name: "gue remcsum full checksum", tun: lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunRemCsum}, rip: rip4, mtu: 1468},
		{name: "gue remcsum partial", tun: lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunRemCsum}, rip: rip4, partial: true, mtu: 1460},
		{name: "gre", tun: lvs.Tunnel{Type: lvs.TunGRE}, rip: rip4, mtu: 1476},
		{name: "gre csum", tun: lvs.Tunnel{Type: lvs.TunGRE, Flags: lvs.TunCsum}, rip: rip4, mtu: 1472},
		{name: "gue over ipv6, ipv6 inside", tun: lvs.Tunnel{Type: lvs.TunGUE, Port: 6080}, rip: rip6, v6: true, mtu: 1448},
		{name: "gre csum over ipv6", tun: lvs.Tunnel{Type: lvs.TunGRE, Flags: lvs.TunCsum}, rip: rip6, mtu: 1452},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := dip4
			if tc.rip.Is6() {
				src = dip6
			}
			cli, vip, hdr := cli4, vip4, 20
			if tc.v6 {
				cli, vip, hdr = cli6, vip6, 40
			}
			e := newEnv(t, envOpts{mtu: 1500}, svcSpec{vip: vip, port: 80, proto: lvs.UDP, dest: tunDest(tc.rip, tc.tun), tunSrc: src})
			for _, extra := range []int{0, 1} {
				p := pkt{proto: lvs.UDP, src: ap(cli, 40000), dst: ap(vip, 80), df: true, payload: string(bytes.Repeat([]byte("m"), tc.mtu-hdr-8+extra))}
				in := p.build(t)
				var vnet forward.VNetHdr
				if tc.partial {
					vnet = makePartial(forward.Ethernet, in)
				}
				before := e.f.Counters()
				v, frames := e.processAll(in, vnet)
				if v != forward.Transmit || len(frames) != 1 {
					t.Fatalf("+%d: verdict %v, %d frames", extra, v, len(frames))
				}
				r := e.dropReason(before)
				switch {
				case extra == 0 && r != forward.DropNone:
					t.Errorf("a packet of the tunnel's MTU %d: drop reason %v", tc.mtu, r)
				case extra == 1 && r != forward.DropTooBig:
					t.Errorf("a packet one byte over %d: drop reason %v, want too-big", tc.mtu, r)
				case extra == 1:
					ip := ipOf(forward.Ethernet, frames[0])
					var m int
					if tc.v6 {
						m = int(binary.BigEndian.Uint32(ip[40+4:]))
					} else {
						m = int(binary.BigEndian.Uint16(ip[20+6:]))
					}
					if m != tc.mtu {
						t.Errorf("too-big error carries MTU %d, want %d", m, tc.mtu)
					}
				}
			}
		})
	}
}

// TestTunnelTypeGSO segments a TCP super-frame for gue and gre real
// servers: every segment is the kernel's (gsoFrame.segments) in a tunnel
// header of the reference (refEncap; with gue remcsum the inner checksum
// left as the pseudo-header sum, the option pointing at it), and fits the
// link's MTU with the tunnel's overhead.
func TestTunnelTypeGSO(t *testing.T) {
	tests := []struct {
		name string
		tun  lvs.Tunnel
		mss  int
	}{
		{name: "gue csum", tun: lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunCsum}, mss: 1416},
		{name: "gue remcsum", tun: lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunRemCsum}, mss: 1408},
		{name: "gre csum", tun: lvs.Tunnel{Type: lvs.TunGRE, Flags: lvs.TunCsum}, mss: 1420},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := gsoFrame{flags: "AP", payload: 5000, mss: tc.mss, ipID: 3}
			payload := make([]byte, g.payload)
			for i := range payload {
				payload[i] = byte(i * 5)
			}
			e := newEnv(t, envOpts{mtu: 1500}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: tunDest(rip4, tc.tun), tunSrc: dip4})
			if v, _ := e.processAll(cat(ethHdr(dirMAC, cliMAC, 0x0800), g.packet(t, 1, 4999, "S", nil)), forward.VNetHdr{}); v != forward.Transmit {
				t.Fatalf("SYN: %v", v)
			}
			frame := cat(ethHdr(dirMAC, cliMAC, 0x0800), g.packet(t, g.ipID, 5000, g.flags, payload))
			vnet := makePartial(forward.Ethernet, frame)
			vnet.GSOType, vnet.GSOSize = forward.VirtioNetHdrGSOTCPv4, uint16(g.mss)
			vnet.HdrLen = vnet.CsumStart + 32
			v, frames := e.processAll(frame, vnet)
			if v != forward.Transmit {
				t.Fatalf("verdict %v (drop %v)", v, e.dropReason(forward.Counters{}))
			}
			want := g.segments(t, payload, g.mss)
			if len(frames) != len(want) {
				t.Fatalf("%d frames, want %d segments", len(frames), len(want))
			}
			rem := tc.tun.Flags&lvs.TunRemCsum != 0
			for i, f := range frames {
				if len(f)-14 != 1500 && i < len(frames)-1 {
					t.Errorf("segment %d: outer packet of %d bytes, want the MTU, 1500", i, len(f)-14)
				}
				seg := ttlDecremented(t, forward.IP, want[i])
				l4 := len(seg) - len(l4Of(seg))
				if rem {
					put16(seg[l4+16:], int(fold(pseudoSum(seg))))
				}
				sport := binary.BigEndian.Uint16(f[14+20:])
				enc := refEncap(tc.tun, dip4, rip4, sport, rem, l4, 16, seg)
				proto := uint8(17)
				if tc.tun.Type == lvs.TunGRE {
					proto = 47
				}
				wantFrame := cat(ethHdr(rsMAC, dirMAC, 0x0800), refIPv4(dip4, rip4, 0, 63, proto, 0, 0x4000, len(enc)+len(seg)), enc, seg)
				if diff := cmp.Diff(wantFrame, f); diff != "" {
					t.Fatalf("segment %d of %d (-want +got):\n%s", i, len(want), diff)
				}
			}
		})
	}
}

// TestTunnelTypeFragments sends an IPv4 packet without DF, too big for a
// gre csum tunnel, and one too big for gue over IPv6: the outer packet is
// fragmented as the kernel's ip_fragment (ip6_fragment) cuts it, the
// tunnel header in the first fragment, its checksum over the whole inner
// packet; the fragments' payloads put together are the reference tunnel
// header and the inner packet.
func TestTunnelTypeFragments(t *testing.T) {
	for _, tc := range []struct {
		name string
		tun  lvs.Tunnel
		rip  netip.Addr
	}{
		{name: "gre csum", tun: lvs.Tunnel{Type: lvs.TunGRE, Flags: lvs.TunCsum}, rip: rip4},
		{name: "gue csum over ipv6", tun: lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunCsum}, rip: rip6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, hl := dip4, 20
			if tc.rip.Is6() {
				src, hl = dip6, 48
			}
			e := newEnv(t, envOpts{mtu: 1500}, svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: tunDest(tc.rip, tc.tun), tunSrc: src})
			in := pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 53), ttl: 30, payload: string(bytes.Repeat([]byte("0123456789"), 400))}.build(t)
			inner := ipOf(forward.Ethernet, ttlDecremented(t, forward.Ethernet, in))
			v, frames := e.processAll(in, forward.VNetHdr{})
			if v != forward.Transmit || len(frames) != 3 {
				t.Fatalf("verdict %v, %d frames; want 3 fragments", v, len(frames))
			}
			var whole []byte
			for i, f := range frames {
				if len(f)-14 > 1500 {
					t.Errorf("fragment %d: %d bytes over the MTU", i, len(f)-14)
				}
				pay := f[14+hl:]
				if i < len(frames)-1 && len(pay)%8 != 0 {
					t.Errorf("fragment %d: %d bytes, not a multiple of 8", i, len(pay))
				}
				if tc.rip.Is6() {
					fo := binary.BigEndian.Uint16(f[14+40+2:])
					if int(fo&^7) != len(whole) || (fo&1 == 1) != (i < len(frames)-1) {
						t.Errorf("fragment %d: offset field %#x at %d bytes", i, fo, len(whole))
					}
				} else {
					fl := binary.BigEndian.Uint16(f[14+6:])
					if int(fl&0x1fff)*8 != len(whole) || (fl&0x2000 != 0) != (i < len(frames)-1) {
						t.Errorf("fragment %d: flags %#x at %d bytes", i, fl, len(whole))
					}
				}
				whole = append(whole, pay...)
			}
			var sport uint16
			if tc.tun.Type == lvs.TunGUE {
				sport = binary.BigEndian.Uint16(whole)
			}
			want := cat(refEncap(tc.tun, src, tc.rip, sport, false, 0, 0, inner), inner)
			if diff := cmp.Diff(want, whole); diff != "" {
				t.Errorf("reassembled payload (-want +got):\n%s", diff)
			}
		})
	}
}

// encapCase is an established flow to a TUN destination with tunnel tun:
// a small TCP packet (frames 1), a 3000-byte datagram without DF (frames 3,
// fragments), or a 64 KiB super-frame of 45 segments (gso).
func encapCase(tb testing.TB, tun lvs.Tunnel, kind string) tunCase {
	tb.Helper()
	switch kind {
	case "gso":
		const mss = 1400 // fits every tunnel's MTU
		e := newEnv(tb, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: tunDest(rip4, tun), tunSrc: dip4})
		g := gsoFrame{flags: "AP", mss: mss, ipID: 1}
		if v, _ := e.processAll(cat(ethHdr(dirMAC, cliMAC, 0x0800), g.packet(tb, 1, 4999, "S", nil)), forward.VNetHdr{}); v != forward.Transmit {
			tb.Fatalf("SYN: %v", v)
		}
		frame := cat(ethHdr(dirMAC, cliMAC, 0x0800), g.packet(tb, 2, 5000, "AP", make([]byte, 45*mss)))
		vnet := makePartial(forward.Ethernet, frame)
		vnet.GSOType, vnet.GSOSize, vnet.HdrLen = forward.VirtioNetHdrGSOTCPv4, mss, 14+52
		return tunCase{e: e, frame: frame, vnet: vnet, frames: 45}
	case "frag":
		e := newEnv(tb, envOpts{}, svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: tunDest(rip4, tun), tunSrc: dip4})
		in := pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 53), payload: string(make([]byte, 3000))}.build(tb)
		return tunCase{e: e, frame: in, frames: 3}
	}
	e := newEnv(tb, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: tunDest(rip4, tun), tunSrc: dip4})
	in := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, df: true, payload: string(make([]byte, 1000))}.build(tb)
	return tunCase{e: e, frame: in, frames: 1}
}

var encapTunnels = []struct {
	name string
	tun  lvs.Tunnel
}{
	{"gue", lvs.Tunnel{Type: lvs.TunGUE, Port: 6080}},
	{"gue-csum", lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunCsum}},
	{"gue-remcsum", lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunRemCsum}},
	{"gre", lvs.Tunnel{Type: lvs.TunGRE}},
	{"gre-csum", lvs.Tunnel{Type: lvs.TunGRE, Flags: lvs.TunCsum}},
}

// TestTunnelTypeAllocs: gue and gre encapsulation, segmentation and
// fragmentation allocate nothing.
func TestTunnelTypeAllocs(t *testing.T) {
	for _, tt := range encapTunnels {
		for _, kind := range []string{"one", "frag", "gso"} {
			run := encapCase(t, tt.tun, kind).run(t)
			run()
			if n := testing.AllocsPerRun(50, run); n != 0 {
				t.Errorf("%s %s: %v allocations per packet", tt.name, kind, n)
			}
		}
	}
}

// BenchmarkTunnelType encapsulates one packet (one), one 3000-byte datagram
// as three fragments (frag) or one 64 KiB super-frame as 45 segments (gso)
// per operation, for each tunnel type, without the writes.
func BenchmarkTunnelType(b *testing.B) {
	for _, tt := range encapTunnels {
		for _, kind := range []string{"one", "frag", "gso"} {
			b.Run(tt.name+"/"+kind, func(b *testing.B) { benchTUNCase(b, encapCase(b, tt.tun, kind)) })
		}
	}
}

// TestTunnelECN: the outer header's ECN field is INET_ECN_encapsulate's,
// in every tunnel type and family: the inner packet's copied, except CE,
// which becomes ECT(0) outside (the inner packet keeps its CE); the DSCP
// bits are copied.
func TestTunnelECN(t *testing.T) {
	for _, tc := range []struct {
		name     string
		p        pkt
		tun      lvs.Tunnel
		rip      netip.Addr
		outerTOS uint8
	}{
		{"ipip, CE", pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, tos: 0xbb}, lvs.Tunnel{}, rip4, 0xba},
		{"ipip, ECT(1)", pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, tos: 0xb9}, lvs.Tunnel{}, rip4, 0xb9},
		{"ipip over ipv6, CE", pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, tos: 0x2b}, lvs.Tunnel{}, rip6, 0x2a},
		{"gue, CE", pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, tos: 0x03}, lvs.Tunnel{Type: lvs.TunGUE, Port: 6080}, rip4, 0x02},
		{"gre over ipv6, not-ECT", pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, tos: 0x28}, lvs.Tunnel{Type: lvs.TunGRE}, rip6, 0x28},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := dip4
			if tc.rip.Is6() {
				src = dip6
			}
			e := newEnv(t, envOpts{}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: lvs.TCP, dest: tunDest(tc.rip, tc.tun), tunSrc: src})
			in := tc.p.build(t)
			v, frames := e.processAll(in, forward.VNetHdr{})
			if v != forward.Transmit || len(frames) != 1 {
				t.Fatalf("verdict %v, %d frames", v, len(frames))
			}
			outer := frames[0][14:]
			var got, inner uint8
			if tc.rip.Is6() {
				got = outer[0]<<4 | outer[1]>>4
			} else {
				got = outer[1]
			}
			in4 := ipOf(forward.Ethernet, in)
			if in4[0]>>4 == 6 {
				inner = in4[0]<<4 | in4[1]>>4
			} else {
				inner = in4[1]
			}
			if got != tc.outerTOS {
				t.Errorf("outer TOS %#02x for inner %#02x, want %#02x", got, inner, tc.outerTOS)
			}
			if !bytes.Contains(frames[0], ipOf(forward.Ethernet, ttlDecremented(t, forward.Ethernet, in))) {
				t.Errorf("the inner packet changed beyond its TTL")
			}
		})
	}
}
