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

// refIPv6 is a plain reference IPv6 header.
func refIPv6(src, dst netip.Addr, tc, hop, next uint8, payload int) []byte {
	h := make([]byte, 40)
	h[0], h[1] = 0x60|tc>>4, tc<<4
	put16(h[4:], payload)
	h[6], h[7] = next, hop
	copy(h[8:], src.AsSlice())
	copy(h[24:], dst.AsSlice())
	return h
}

// TestTUN6Bytes compares whole frames tunnelled to an IPv6 real server
// (ip_vs_tunnel_xmit_v6) with a plain reference: Ethernet to the real
// server's MAC, outer IPv6 from the service's IPv6 tunnel source to the
// RIP, next header 41 (IPv6 inside) or 4 (IPv4 inside), traffic class the
// inner DS field, flow label 0, hop limit the inner one; the inner packet
// unchanged but for its hop limit or TTL, decremented first.
func TestTUN6Bytes(t *testing.T) {
	tests := []struct {
		name string
		link forward.Framing
		p    pkt
		next uint8
	}{
		{name: "tcp6 in ipv6", p: pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, ttl: 200, tos: 0xb9, payload: "v6"}, next: 41},
		{name: "udp6 in ipv6", p: pkt{proto: lvs.UDP, src: ap(cli6, 40000), dst: ap(vip6, 80), ttl: 9, payload: "q"}, next: 41},
		{name: "tcp4 in ipv6", p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 61, tos: 0x28, df: true, payload: "v4"}, next: 4},
		{name: "tcp6 in ipv6 ip link", link: forward.IP, p: pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, payload: "x"}, next: 41},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.link = tc.link
			proto := tc.p.proto
			if proto == 0 {
				proto = lvs.TCP
			}
			e := newEnv(t, envOpts{link: tc.link}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: proto, dest: rs(rip6, 80, lvs.TUN), tunSrc: dip6})
			in := tc.p.build(t)
			inner := ipOf(tc.link, ttlDecremented(t, tc.link, in))
			v, frames := e.processAll(in, forward.VNetHdr{})
			if v != forward.Transmit || len(frames) != 1 {
				t.Fatalf("verdict %v (drop reason %v), %d frames", v, e.dropReason(forward.Counters{}), len(frames))
			}
			ttl := tc.p.ttl
			if ttl == 0 {
				ttl = 64
			}
			want := refIPv6(dip6, rip6, tc.p.tos, ttl-1, tc.next, len(inner))
			if tc.link == forward.Ethernet {
				want = cat(ethHdr(rsMAC, dirMAC, 0x86dd), want)
			}
			want = cat(want, inner)
			if diff := cmp.Diff(want, frames[0]); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestTUN6TooBig: packets that do not fit the IPv6 tunnel (MTU-40) and must
// not be fragmented (any IPv6 packet, IPv4 with DF) are answered with
// packet-too-big / fragmentation-needed carrying MTU-40 from the VIP.
func TestTUN6TooBig(t *testing.T) {
	tests := []struct {
		name string
		p    pkt
	}{
		{name: "udp6", p: pkt{proto: lvs.UDP, src: ap(cli6, 40000), dst: ap(vip6, 80), payload: string(make([]byte, 1500-48))}},
		{name: "udp4 df", p: pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 80), df: true, payload: string(make([]byte, 1500-28))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: lvs.UDP, dest: rs(rip6, 80, lvs.TUN), tunSrc: dip6})
			v, frames := e.processAll(tc.p.build(t), forward.VNetHdr{})
			if v != forward.Transmit || len(frames) != 1 {
				t.Fatalf("verdict %v, %d frames", v, len(frames))
			}
			ip := ipOf(forward.Ethernet, frames[0])
			var mtu int
			if ip[0]>>4 == 6 {
				if ip[6] != 58 || ip[40] != 2 {
					t.Fatalf("not an ICMPv6 packet-too-big: next header %d type %d", ip[6], ip[40])
				}
				mtu = int(binary.BigEndian.Uint32(ip[44:48]))
			} else {
				hl := int(ip[0]&0xf) * 4
				if ip[9] != 1 || ip[hl] != 3 || ip[hl+1] != 4 {
					t.Fatalf("not an ICMP fragmentation-needed")
				}
				mtu = int(binary.BigEndian.Uint16(ip[hl+6:]))
			}
			if mtu != 1460 {
				t.Errorf("MTU %d, want 1460", mtu)
			}
			if !bytes.Equal(frames[0][0:6], cliMAC[:]) {
				t.Errorf("error to %x, want the client's MAC", frames[0][0:6])
			}
		})
	}
}

// TestTUN6Fragments: an IPv4 packet without DF too big for the IPv6 tunnel
// leaves as fragments of the outer IPv6 packet (IPVS sets ignore_df and
// ip6_fragment cuts it), each within the link's MTU, which reassemble into
// the outer packet around the inner one.
func TestTUN6Fragments(t *testing.T) {
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.UDP, dest: rs(rip6, 80, lvs.TUN), tunSrc: dip6})
	in := pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 80), payload: string(bytes.Repeat([]byte("f"), 3000))}.build(t)
	inner := ipOf(forward.Ethernet, ttlDecremented(t, forward.Ethernet, in))
	v, frames := e.processAll(in, forward.VNetHdr{})
	if v != forward.Transmit || len(frames) != 3 {
		t.Fatalf("verdict %v, %d frames; want 3 fragments", v, len(frames))
	}
	var ips [][]byte
	for i, f := range frames {
		ip := ipOf(forward.Ethernet, f)
		if len(ip) > 1500 {
			t.Errorf("fragment %d: %d bytes", i, len(ip))
		}
		ips = append(ips, ip)
	}
	outer := refReasm(t, ips)
	if outer[6] != 4 || netip.AddrFrom16([16]byte(outer[8:24])) != dip6 || netip.AddrFrom16([16]byte(outer[24:40])) != rip6 {
		t.Errorf("outer packet: next header %d from %x to %x", outer[6], outer[8:24], outer[24:40])
	}
	if !bytes.Equal(outer[40:], inner) {
		t.Errorf("inner packet changed")
	}
}

// TestTUN6NoSource: an IPv6 real server without an IPv6 tunnel source gets
// nothing (unsupported), as before; an IPv4 one needs the IPv4 source.
func TestTUN6NoSource(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rip    netip.Addr
		tunSrc netip.Addr
	}{
		{name: "ipv6 real server, ipv4 source", rip: rip6, tunSrc: dip4},
		{name: "ipv4 real server, ipv6 source", rip: rip4, tunSrc: dip6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{}, svcSpec{vip: vip6, port: 80, proto: lvs.TCP, dest: rs(tc.rip, 80, lvs.TUN), tunSrc: tc.tunSrc})
			v, _ := e.process(pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn}.build(t), forward.VNetHdr{})
			if r := e.dropReason(forward.Counters{}); v != forward.Drop || r != forward.DropUnsupported {
				t.Errorf("verdict %v reason %v, want unsupported", v, r)
			}
		})
	}
}

// TestTUN6GSO: a TCP super-frame for an IPv6 real server is segmented as
// for an IPv4 one (tunnelGSO), each segment inside its own outer IPv6
// header (next header 41 or 4), within the link's MTU.
func TestTUN6GSO(t *testing.T) {
	for _, g := range []gsoFrame{
		{v6: true, flags: "AP", payload: 6000, mss: 1368},
		{flags: "AP", payload: 4000, mss: 1400, ipID: 9},
	} {
		t.Run(map[bool]string{false: "ipv4 inside", true: "ipv6 inside"}[g.v6], func(t *testing.T) {
			payload := make([]byte, g.payload)
			for i := range payload {
				payload[i] = byte(i * 3)
			}
			vip, etype, next := vip4, uint16(0x0800), uint8(4)
			if g.v6 {
				vip, etype, next = vip6, 0x86dd, 41
			}
			e := newEnv(t, envOpts{}, svcSpec{vip: vip, port: 80, proto: lvs.TCP, dest: rs(rip6, 80, lvs.TUN), tunSrc: dip6})
			if v, _ := e.processAll(cat(ethHdr(dirMAC, cliMAC, etype), g.packet(t, 1, 4999, "S", nil)), forward.VNetHdr{}); v != forward.Transmit {
				t.Fatalf("SYN: %v", v)
			}
			frame := cat(ethHdr(dirMAC, cliMAC, etype), g.packet(t, g.ipID, 5000, g.flags, payload))
			vnet := makePartial(forward.Ethernet, frame)
			vnet.GSOType = forward.VirtioNetHdrGSOTCPv4
			if g.v6 {
				vnet.GSOType = forward.VirtioNetHdrGSOTCPv6
			}
			vnet.GSOSize = uint16(g.mss)
			vnet.HdrLen = vnet.CsumStart + 32
			v, frames := e.processAll(frame, vnet)
			if v != forward.Transmit {
				t.Fatalf("verdict %v (drop %v)", v, e.dropReason(forward.Counters{}))
			}
			want := g.segments(t, payload, g.mss)
			if len(frames) != len(want) {
				t.Fatalf("%d frames, want %d segments", len(frames), len(want))
			}
			for i, f := range frames {
				seg := ttlDecremented(t, forward.IP, want[i]) // decremented first
				wantFrame := cat(ethHdr(rsMAC, dirMAC, 0x86dd), refIPv6(dip6, rip6, 0, 63, next, len(seg)), seg)
				if diff := cmp.Diff(wantFrame, f); diff != "" {
					t.Fatalf("segment %d of %d (-want +got):\n%s", i, len(want), diff)
				}
				if len(f)-14 > 1500 {
					t.Errorf("segment %d: outer packet of %d bytes", i, len(f)-14)
				}
				checkSums(t, f[54:])
			}
		})
	}
}
