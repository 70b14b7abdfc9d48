package pkttest

import (
	"cmp"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TCP flags, as in the TCP header's flags byte.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	ACK = 0x10
)

// IP protocol numbers of Frame.Proto.
const (
	TCP = 6
	UDP = 17
)

// Frame describes a TCP or UDP frame to build. The zero value of a field
// takes the default given beside it.
type Frame struct {
	// L3 leaves out the Ethernet header: a frame of an IP link (TUN).
	L3             bool
	DstMAC, SrcMAC [6]byte // default DirMAC, CliMAC
	Src, Dst       netip.AddrPort
	Proto          uint8  // TCP (default) or UDP
	Flags          uint8  // TCP flags
	Seq            uint32 // TCP sequence number; default 1000
	TTL            uint8  // default 64
	TOS            uint8
	DF             bool
	FragOff        uint16 // IPv4 fragment offset, 8-byte units
	MF             bool
	IPOptions      bool // IPv4: a 4-byte router-alert option (IHL 6)
	Payload        string
	ZeroUDPCsum    bool
	Pad            int // trailer bytes after the IP packet (beyond Ethernet's padding)
}

// Serialize builds layers with lengths and checksums computed.
func Serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// Build returns the frame f describes, with valid checksums (unless
// ZeroUDPCsum).
func (f Frame) Build(tb testing.TB) []byte {
	tb.Helper()
	if f.DstMAC == ([6]byte{}) {
		f.DstMAC = DirMAC
	}
	if f.SrcMAC == ([6]byte{}) {
		f.SrcMAC = CliMAC
	}
	if f.Proto == 0 {
		f.Proto = TCP
	}
	if f.TTL == 0 {
		f.TTL = 64
	}
	v6 := f.Dst.Addr().Is6()
	var ls []gopacket.SerializableLayer
	if !f.L3 {
		et := layers.EthernetTypeIPv4
		if v6 {
			et = layers.EthernetTypeIPv6
		}
		ls = append(ls, &layers.Ethernet{DstMAC: HW(f.DstMAC), SrcMAC: HW(f.SrcMAC), EthernetType: et})
	}
	var nl gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: f.TOS, HopLimit: f.TTL, NextHeader: layers.IPProtocol(f.Proto),
			SrcIP: f.Src.Addr().AsSlice(), DstIP: f.Dst.Addr().AsSlice()}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, TOS: f.TOS, TTL: f.TTL, Id: 0x1234, Protocol: layers.IPProtocol(f.Proto),
			SrcIP: f.Src.Addr().AsSlice(), DstIP: f.Dst.Addr().AsSlice(), FragOffset: f.FragOff}
		if f.DF {
			ip.Flags |= layers.IPv4DontFragment
		}
		if f.MF {
			ip.Flags |= layers.IPv4MoreFragments
		}
		if f.IPOptions {
			ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		}
		nl = ip
		ls = append(ls, ip)
	}
	switch f.Proto {
	case TCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.Src.Port()), DstPort: layers.TCPPort(f.Dst.Port()),
			Seq: cmp.Or(f.Seq, 1000), Window: 65535,
			FIN: f.Flags&FIN != 0, SYN: f.Flags&SYN != 0, RST: f.Flags&RST != 0, ACK: f.Flags&ACK != 0}
		if tcp.ACK {
			tcp.Ack = 2000
		}
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	case UDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(f.Src.Port()), DstPort: layers.UDPPort(f.Dst.Port())}
		udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp)
	}
	ls = append(ls, gopacket.Payload(f.Payload))
	b := Serialize(tb, ls...)
	if f.ZeroUDPCsum {
		l4 := L4Of(IPOf(f.L3, b))
		l4[6], l4[7] = 0, 0
	}
	return append(b, make([]byte, f.Pad)...)
}

// ARPRequest is an ARP request from (mac, ip) for target, broadcast.
func ARPRequest(tb testing.TB, mac [6]byte, ip, target netip.Addr) []byte {
	tb.Helper()
	return Serialize(tb,
		&layers.Ethernet{SrcMAC: HW(mac), DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: HW(mac), SourceProtAddress: ip.AsSlice(),
			DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: target.AsSlice(),
		})
}

// ARPReply is the reply of (mac, ip) to an ARP request from (toMAC, toIP).
func ARPReply(tb testing.TB, mac [6]byte, ip netip.Addr, toMAC [6]byte, toIP netip.Addr) []byte {
	tb.Helper()
	return Serialize(tb,
		&layers.Ethernet{SrcMAC: HW(mac), DstMAC: HW(toMAC), EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: HW(mac), SourceProtAddress: ip.AsSlice(),
			DstHwAddress: HW(toMAC), DstProtAddress: toIP.AsSlice(),
		})
}
