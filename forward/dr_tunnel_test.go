package forward_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

func TestDR(t *testing.T) {
	tests := []struct {
		name string
		p    pkt
		vnet bool // send with a partial checksum and GSO
	}{
		{"tcp4", pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, payload: "x"}, false},
		{"udp6", pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), proto: lvs.UDP, payload: "x"}, false},
		{"tcp4 gso partial", pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, payload: string(bytes.Repeat([]byte("z"), 4000))}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proto := tc.p.proto
			if proto == 0 {
				proto = lvs.TCP
			}
			d := rs(rip4, 80, lvs.DR)
			e := newEnv(t, envOpts{}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: proto, dest: d})
			in := tc.p.build(t)
			var vnet forward.VNetHdr
			if tc.vnet {
				vnet = makePartial(forward.Ethernet, in)
				vnet.GSOType, vnet.GSOSize, vnet.HdrLen = forward.VirtioNetHdrGSOTCPv4, 1448, 54
			}
			v, p := e.process(in, vnet)
			if v != forward.Transmit {
				t.Fatalf("verdict %v (drop %v)", v, e.dropReason(forward.Counters{}))
			}
			out := p.Frame()
			want := append(append(append([]byte(nil), rsMAC[:]...), dirMAC[:]...), ttlDecremented(t, forward.Ethernet, in)[12:]...)
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("frame: only the MACs and the TTL may change (-want +got):\n%s", diff)
			}
			if p.VNet != vnet {
				t.Errorf("virtio header %+v, want %+v", p.VNet, vnet)
			}
			e.tab.Stats() // folds the workers' packet counters into lvs.Stats
			if d.Stats.InPkts.Load() != 1 || d.Stats.Conns.Load() != 1 {
				t.Errorf("dest stats: %d packets %d conns", d.Stats.InPkts.Load(), d.Stats.Conns.Load())
			}
		})
	}
}

func TestDROnIPLink(t *testing.T) {
	e := newEnv(t, envOpts{link: forward.IP}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 80, lvs.DR)})
	in := pkt{link: forward.IP, src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t)
	if v, _ := e.process(in, forward.VNetHdr{}); v != forward.Drop || e.dropReason(forward.Counters{}) != forward.DropUnsupported {
		t.Errorf("verdict %v, reason %v; want drop unsupported", v, e.dropReason(forward.Counters{}))
	}
	if e.tab.Len() != 0 {
		t.Errorf("a connection was created: %d", e.tab.Len())
	}
}

func TestTUN(t *testing.T) {
	tests := []struct {
		name    string
		link    forward.Framing
		p       pkt
		partial bool
		// Expected outer header fields: the TTL is the inner one after
		// its decrement (decrement_ttl comes before the encapsulation).
		tos, ttl uint8
		df       bool
		proto    layers.IPProtocol
	}{
		// IPVS copies the DS field, its ECN field as INET_ECN_encapsulate
		// sets it (ip_vs_prepare_tunneled_skb): CE inside is ECT(0) outside.
		{name: "tcp4 df ce", p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 57, tos: 0xb8 | 3, df: true, payload: "hi"},
			tos: 0xb8 | 2, ttl: 56, df: true, proto: layers.IPProtocolIPv4},
		{name: "udp4 no df ect1", p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), proto: lvs.UDP, ttl: 9, tos: 0x01, payload: "hi", pad: 5},
			tos: 0x01, ttl: 8, proto: layers.IPProtocolIPv4},
		{name: "tcp6 in ipv4", p: pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, ttl: 33, tos: 0x20, payload: "hi"},
			tos: 0x20, ttl: 32, proto: layers.IPProtocolIPv6},
		{name: "tcp4 ip link", link: forward.IP, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 64, df: true},
			ttl: 63, df: true, proto: layers.IPProtocolIPv4},
		{name: "tcp4 partial checksum completed", partial: true, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 64, payload: "abc"},
			ttl: 63, proto: layers.IPProtocolIPv4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.link = tc.link
			proto := tc.p.proto
			if proto == 0 {
				proto = lvs.TCP
			}
			d := rs(rip4, 80, lvs.TUN)
			e := newEnv(t, envOpts{link: tc.link}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: proto, dest: d, tunSrc: dip4})
			in := tc.p.build(t)
			orig := ipOf(tc.link, ttlDecremented(t, tc.link, in)) // the inner packet, padding excluded
			var vnet forward.VNetHdr
			if tc.partial {
				vnet = makePartial(tc.link, in)
			}
			v, p := e.process(in, vnet)
			if v != forward.Transmit {
				t.Fatalf("verdict %v (drop %v)", v, e.dropReason(forward.Counters{}))
			}
			if p.Off != headroom-forward.TunnelHeadroom || p.VNet != (forward.VNetHdr{}) {
				t.Errorf("Off %d VNet %+v; want %d, empty", p.Off, p.VNet, headroom-forward.TunnelHeadroom)
			}
			out := p.Frame()
			first := layers.LayerTypeEthernet
			if tc.link == forward.IP {
				first = layers.LayerTypeIPv4
			}
			pk := gopacket.NewPacket(out, first, gopacket.Default)
			if tc.link == forward.Ethernet {
				eth, _ := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				if eth == nil || eth.DstMAC.String() != macStr(rsMAC) || eth.SrcMAC.String() != macStr(dirMAC) || eth.EthernetType != layers.EthernetTypeIPv4 {
					t.Errorf("ethernet header %+v", eth)
				}
			}
			outer, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if outer == nil {
				t.Fatalf("no outer IPv4 header: %v", pk)
			}
			type hdr struct {
				Src, Dst     string
				TOS, TTL, HL uint8
				Len          uint16
				DF, MF       bool
				FragOff      uint16
				Proto        layers.IPProtocol
			}
			got := hdr{outer.SrcIP.String(), outer.DstIP.String(), outer.TOS, outer.TTL, outer.IHL, outer.Length,
				outer.Flags&layers.IPv4DontFragment != 0, outer.Flags&layers.IPv4MoreFragments != 0, outer.FragOffset, outer.Protocol}
			want := hdr{dip4.String(), rip4.String(), tc.tos, tc.ttl, 5, uint16(20 + len(orig)), tc.df, false, 0, tc.proto}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outer header (-want +got):\n%s", diff)
			}
			outerIP := out[len(out)-len(orig)-20:]
			if sum := fold(onesSum(outerIP[:20], 0)); sum != 0xffff {
				t.Errorf("outer header checksum invalid (sum %#04x)", sum)
			}
			inner := outerIP[20:]
			if tc.partial {
				checkSums(t, inner)
				if diff := cmp.Diff(summarize(t, forward.IP, orig), summarize(t, forward.IP, inner)); diff != "" {
					t.Errorf("inner packet (-want +got):\n%s", diff)
				}
			} else if diff := cmp.Diff(orig, inner); diff != "" {
				t.Errorf("inner packet changed (-want +got):\n%s", diff)
			}
			e.tab.Stats() // folds the workers' packet counters into lvs.Stats
			if d.Stats.InPkts.Load() != 1 || d.Stats.InBytes.Load() != uint64(len(orig)) {
				t.Errorf("dest stats %d packets %d bytes", d.Stats.InPkts.Load(), d.Stats.InBytes.Load())
			}
		})
	}
}

func TestTUNUnsupported(t *testing.T) {
	tests := []struct {
		name    string
		mtu     int
		payload int
		df      bool
		off     int
		vnet    forward.VNetHdr
		tunSrc  netip.Addr
		src     netip.Addr // default cli4
	}{
		// Several frames and no Packet.Emit to write all but the last.
		{name: "gso without emitter", payload: 3000, df: true, off: headroom, tunSrc: dip4,
			vnet: forward.VNetHdr{GSOType: forward.VirtioNetHdrGSOTCPv4, GSOSize: 1000, HdrLen: 54}},
		{name: "fragments without emitter", mtu: 576, payload: 540, off: headroom, tunSrc: dip4},
		{name: "no room for the icmp error", mtu: 576, payload: 540, df: true, off: forward.TunnelHeadroom, tunSrc: dip4},
		{name: "no icmp error to a multicast source", src: netip.MustParseAddr("224.0.0.9"), mtu: 576, payload: 540, df: true, off: headroom, tunSrc: dip4},
		{name: "no headroom", payload: 10, off: forward.TunnelHeadroom - 1, tunSrc: dip4},
		{name: "no tunnel source", payload: 10, off: headroom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{mtu: tc.mtu}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 80, lvs.TUN), tunSrc: tc.tunSrc})
			src := tc.src
			if !src.IsValid() {
				src = cli4
			}
			in := pkt{src: ap(src, 40000), dst: ap(vip4, 80), flags: syn, df: tc.df, payload: string(make([]byte, tc.payload))}.build(t)
			vnet := tc.vnet
			if vnet.GSOType != 0 {
				gso := vnet
				vnet = makePartial(forward.Ethernet, in)
				vnet.GSOType, vnet.GSOSize, vnet.HdrLen = gso.GSOType, gso.GSOSize, gso.HdrLen
			}
			buf := make([]byte, tc.off+len(in))
			copy(buf[tc.off:], in)
			orig := in // refused before any change when the connection is created
			if tc.tunSrc.IsValid() {
				orig = ttlDecremented(t, forward.Ethernet, in) // decrement_ttl comes first, as in IPVS
			}
			p := &forward.Packet{Buf: buf, Off: tc.off, Len: len(in), VNet: vnet}
			if v := e.w.Process(p); v != forward.Drop {
				t.Fatalf("verdict %v, want drop", v)
			}
			if r := e.dropReason(forward.Counters{}); r != forward.DropUnsupported {
				t.Errorf("reason %v, want unsupported", r)
			}
			if !bytes.Equal(p.Frame(), orig) {
				t.Errorf("dropped frame was modified beyond its TTL")
			}
		})
	}
}
