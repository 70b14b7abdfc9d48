package realserver

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/internal/pkttest"
)

// The packet kit's addresses.
var (
	dip  = pkttest.DIP4
	rip  = pkttest.RIP4
	cli  = pkttest.Cli4
	vip  = pkttest.VIP4
	cli6 = pkttest.Cli6
	vip6 = pkttest.VIP6
)

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	return pkttest.Serialize(tb, ls...)
}

// inner4 and inner6 are TCP packets from a client to a VIP.
func inner4(tb testing.TB, dst netip.Addr) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 60, Protocol: layers.IPProtocolTCP, SrcIP: cli.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 1}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, tcp, gopacket.Payload("hello"))
}

func inner6(tb testing.TB, dst netip.Addr) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 60, NextHeader: layers.IPProtocolTCP, SrcIP: cli6.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 1}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, tcp, gopacket.Payload("hello"))
}

// outer wraps an inner packet in IPIP from src to rip.
func outer(tb testing.TB, src netip.Addr, proto layers.IPProtocol, inner []byte) []byte {
	return serialize(tb, &layers.IPv4{Version: 4, TTL: 60, Flags: layers.IPv4DontFragment, Protocol: proto,
		SrcIP: src.AsSlice(), DstIP: rip.AsSlice()}, gopacket.Payload(inner))
}

func TestDecap(t *testing.T) {
	f := &filter{vips: []netip.Addr{vip, vip6}}
	only := &filter{vips: []netip.Addr{vip}, directors: []netip.Addr{dip}}
	in4, in6 := inner4(t, vip), inner6(t, vip6)
	tests := []struct {
		name   string
		f      *filter
		pkt    []byte
		want   []byte
		reason Reason
	}{
		{"ipv4 in ipv4", f, outer(t, dip, layers.IPProtocolIPv4, in4), in4, Injected},
		{"ipv6 in ipv4", f, outer(t, dip, layers.IPProtocolIPv6, in6), in6, Injected},
		{"trailing bytes cut", f, outer(t, dip, layers.IPProtocolIPv4, append(append([]byte(nil), in4...), 0, 0, 0)), in4, Injected},
		{"from the director", only, outer(t, dip, layers.IPProtocolIPv4, in4), in4, Injected},
		{"not from the director", only, outer(t, cli, layers.IPProtocolIPv4, in4), nil, NotDirector},
		{"not a vip", f, outer(t, dip, layers.IPProtocolIPv4, inner4(t, rip)), nil, NotVIP},
		{"ipv6 not a vip", only, outer(t, dip, layers.IPProtocolIPv6, in6), nil, NotVIP},
		{"inner truncated", f, outer(t, dip, layers.IPProtocolIPv4, in4[:30]), nil, Malformed},
		{"ipv6 inside protocol 4", f, outer(t, dip, layers.IPProtocolIPv4, in6), nil, Malformed},
		{"other protocol", f, outer(t, dip, layers.IPProtocolGRE, in4), nil, Malformed},
		{"outer truncated", f, outer(t, dip, layers.IPProtocolIPv4, in4)[:19], nil, Malformed},
		{"outer length beyond", f, func() []byte {
			b := outer(t, dip, layers.IPProtocolIPv4, in4)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)+1))
			return b
		}(), nil, Malformed},
		{"outer fragment", f, func() []byte {
			b := outer(t, dip, layers.IPProtocolIPv4, in4)
			b[6] = 0x20 // MF
			return b
		}(), nil, Malformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, r := tc.f.decap(tc.pkt)
			if r != tc.reason || !bytes.Equal(got, tc.want) {
				t.Errorf("decap = %x, %v; want %x, %v", got, r, tc.want, tc.reason)
			}
		})
	}
}

// TestDecapInner: what an IPv6 raw socket returns (the payload of an outer
// IPv6 packet, with its source) is checked as the payload of an IPv4 one.
func TestDecapInner(t *testing.T) {
	dip6 := netip.MustParseAddr("2001:db8:1::1")
	f := &filter{vips: []netip.Addr{vip, vip6}, directors: []netip.Addr{dip6}}
	in4, in6 := inner4(t, vip), inner6(t, vip6)
	tests := []struct {
		name   string
		pkt    []byte
		proto  uint8
		src    netip.Addr
		want   []byte
		reason Reason
	}{
		{"ipv6 in ipv6", in6, protoIPv6, dip6, in6, Injected},
		{"ipv4 in ipv6", in4, protoIPIP, dip6, in4, Injected},
		{"trailing bytes cut", append(append([]byte(nil), in6...), 1, 2), protoIPv6, dip6, in6, Injected},
		{"not from the director", in6, protoIPv6, cli6, nil, NotDirector},
		{"not a vip", inner6(t, cli6), protoIPv6, dip6, nil, NotVIP},
		{"ipv4 inside protocol 41", in4, protoIPv6, dip6, nil, Malformed},
		{"truncated", in6[:39], protoIPv6, dip6, nil, Malformed},
		{"other protocol", in6, 47, dip6, nil, Malformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, r := f.decapInner(tc.pkt, tc.proto, tc.src)
			if r != tc.reason || !bytes.Equal(got, tc.want) {
				t.Errorf("decapInner = %x, %v; want %x, %v", got, r, tc.want, tc.reason)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { f.decapInner(in6, protoIPv6, dip6) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

func TestDecapAllocs(t *testing.T) {
	f := &filter{vips: []netip.Addr{vip6, vip}, directors: []netip.Addr{dip}}
	b := outer(t, dip, layers.IPProtocolIPv4, inner4(t, vip))
	if n := testing.AllocsPerRun(100, func() { f.decap(b) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

// FuzzDecap feeds arbitrary packets: no panic, and an accepted inner packet
// lies inside the outer one and is addressed to a VIP.
func FuzzDecap(f *testing.F) {
	f.Add(outer(f, dip, layers.IPProtocolIPv4, inner4(f, vip)))
	f.Add(outer(f, dip, layers.IPProtocolIPv6, inner6(f, vip6)))
	f.Add(outer(f, cli, layers.IPProtocolIPv4, inner4(f, vip)))
	flt := &filter{vips: []netip.Addr{vip, vip6}, directors: []netip.Addr{dip}}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The same bytes as an IPv6 raw socket's payload, both protocols.
		for _, proto := range []uint8{protoIPIP, protoIPv6} {
			if inner, r := flt.decapInner(b, proto, dip); r == Injected && (len(inner) < 20 || !bytes.HasPrefix(b, inner)) {
				t.Fatalf("inner packet of %d bytes not a prefix of the payload", len(inner))
			}
		}
		inner, r := flt.decap(b)
		if r != Injected {
			if inner != nil {
				t.Fatal("inner packet with a drop")
			}
			return
		}
		if len(inner) < 20 || !bytes.Contains(b, inner) {
			t.Fatalf("inner packet of %d bytes not inside the outer one", len(inner))
		}
	})
}
