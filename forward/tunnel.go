package forward

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
)

// IP protocol numbers of the outer header.
const (
	protoIPIP = 4  // IPv4 in IPv4
	protoIPv6 = 41 // IPv6 in IPv4
)

// tunnel forwards a client's packet of a TUN connection: the IP packet
// (Ethernet padding removed) is encapsulated in an outer IPv4 header from the
// service's TunSrc to the real server, written into the headroom, with a new
// Ethernet header in front on Ethernet links. p.Off moves back by
// TunnelHeadroom.
//
// The outer header follows IPVS (ip_vs_tunnel_xmit): TTL and DF copied from
// the inner IPv4 header (DF clear for IPv6 inside), TOS the inner DS field
// with ECN encapsulated (RFC 6040 full-functionality: CE becomes ECT(0)).
//
// A partial checksum is completed in software before encapsulation, and the
// frame leaves with an empty virtio header: the kernel need not look inside
// the tunnel.
//
// Not yet: GSO super-frames (they must be segmented first: there is no IPIP
// GSO type in the virtio header), packets that would exceed the MTU (ICMP
// fragmentation-needed or fragmentation of the outer packet), IPv6 outer
// headers. All are dropped as DropUnsupported.
func (w *Worker) tunnel(p *Packet, b []byte, e *conntrack.Entry, s *snapshot) DropReason {
	pk := &w.pk
	d := e.Dest
	if p.VNet.GSOType != VirtioNetHdrGSONone {
		return DropUnsupported // TODO: segment GSO frames in userspace.
	}
	if !w.checkVNet(&p.VNet) {
		return DropBadVNetHdr
	}
	// The outer source is the service's, looked up again so that a reload
	// can change it; connections of a removed service lose their source.
	svc := s.services[ServiceKey{Addr: e.In.Dst, Port: e.In.DPort, Proto: e.In.Proto}]
	if svc == nil {
		return DropNoDest
	}
	if !isV4(&d.Addr) || !isV4(&svc.TunSrc) {
		return DropUnsupported
	}
	innerLen := pk.ipEnd - pk.l3
	outerLen := header.IPv4MinimumSize + innerLen
	if outerLen > w.f.mtu || outerLen > 0xffff {
		// TODO: ICMP fragmentation-needed (MTU - 20) when DF is set, as
		// IPVS; fragment the outer packet otherwise.
		return DropUnsupported
	}
	if p.Off < TunnelHeadroom {
		return DropUnsupported
	}
	var mac lvs.MAC
	if w.f.link == Ethernet {
		var ok bool
		if mac, ok = neighbor(d); !ok {
			return DropNoNeighbor
		}
	}

	// Checks done: from here on the frame is modified.
	if p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0 {
		completeChecksum(b[pk.l4:pk.ipEnd], p.VNet.CsumOffset, pk.t.Proto == lvs.UDP)
	}
	p.VNet = VNetHdr{}

	var tos, ttl, flags, proto uint8
	inner := b[pk.l3:pk.ipEnd]
	if pk.v6 {
		ip := header.IPv6(inner)
		tos, _ = ip.TOS()
		ttl, proto = ip.HopLimit(), protoIPv6
	} else {
		ip := header.IPv4(inner)
		tos, ttl, proto = inner[1], ip.TTL(), protoIPIP
		flags = ip.Flags() & header.IPv4FlagDontFragment
	}
	if tos&3 == 3 { // ECN CE is not copied out: ECT(0)
		tos = tos&^3 | 2
	}

	l2 := pk.l3 // 14 on Ethernet, 0 on IP links
	off := p.Off - TunnelHeadroom
	frame := p.Buf[off : off+l2+outerLen]
	if w.f.link == Ethernet {
		setMACs(frame, &mac, &w.f.mac)
		binary.BigEndian.PutUint16(frame[12:14], uint16(header.IPv4ProtocolNumber))
	}
	outer := header.IPv4(frame[l2 : l2+header.IPv4MinimumSize])
	outer.Encode(&header.IPv4Fields{
		TOS:         tos,
		TotalLength: uint16(outerLen),
		ID:          w.ipID,
		Flags:       flags,
		TTL:         ttl,
		Protocol:    proto,
		SrcAddr:     tcpip.AddrFrom4([4]byte(svc.TunSrc[12:16])),
		DstAddr:     tcpip.AddrFrom4([4]byte(d.Addr[12:16])),
	})
	outer.SetChecksum(^outer.CalculateChecksum())
	w.ipID++

	p.Off, p.Len = off, len(frame)
	countIn(e, innerLen)
	return DropNone
}

// completeChecksum does what the kernel does for a CHECKSUM_PARTIAL packet
// (skb_checksum_help): the checksum field at csumOff in l4 holds the
// pseudo-header sum; sum the segment over it and store the complement. A UDP
// result of 0 is sent as 0xffff.
func completeChecksum(l4 []byte, csumOff uint16, udp bool) {
	c := ^checksum.Checksum(l4, 0)
	if udp && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)
}
