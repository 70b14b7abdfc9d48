package pkttest

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Summary is what tests compare of a TCP or UDP frame (with cmp.Diff).
type Summary struct {
	DstMAC, SrcMAC string // empty on IP links
	Src, Dst       string // address:port
	Proto          uint8  // TCP or UDP
	TTL            uint8
	TOS            uint8
	Flags          string // TCP flags: S, A, F, R in that order
	Payload        string
}

// Summarize decodes a TCP or UDP frame (an IP packet when l3) and fails the
// test when it is neither.
func Summarize(tb testing.TB, l3 bool, frame []byte) Summary {
	tb.Helper()
	first := layers.LayerTypeEthernet
	if l3 {
		first = layers.LayerTypeIPv4
		if frame[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
	}
	pk := gopacket.NewPacket(frame, first, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil && pk.TransportLayer() == nil {
		// (Errors past the transport layer, such as a payload to port 53
		// that is no DNS message, do not matter here.)
		tb.Fatalf("decode: %v", el.Error())
	}
	var s Summary
	if eth, ok := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); ok {
		s.DstMAC, s.SrcMAC = eth.DstMAC.String(), eth.SrcMAC.String()
	}
	var src, dst netip.Addr
	switch ip := pk.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		s.TTL, s.TOS = ip.TTL, ip.TOS
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		s.TTL, s.TOS = ip.HopLimit, ip.TrafficClass
	default:
		tb.Fatalf("no IP layer in %v", pk)
	}
	switch l4 := pk.TransportLayer().(type) {
	case *layers.TCP:
		s.Proto = TCP
		s.Src = netip.AddrPortFrom(src, uint16(l4.SrcPort)).String()
		s.Dst = netip.AddrPortFrom(dst, uint16(l4.DstPort)).String()
		for _, f := range []struct {
			on   bool
			name string
		}{{l4.SYN, "S"}, {l4.ACK, "A"}, {l4.FIN, "F"}, {l4.RST, "R"}} {
			if f.on {
				s.Flags += f.name
			}
		}
		s.Payload = string(l4.Payload)
	case *layers.UDP:
		s.Proto = UDP
		s.Src = netip.AddrPortFrom(src, uint16(l4.SrcPort)).String()
		s.Dst = netip.AddrPortFrom(dst, uint16(l4.DstPort)).String()
		s.Payload = string(l4.Payload)
	default:
		tb.Fatalf("no transport layer in %v", pk)
	}
	return s
}
