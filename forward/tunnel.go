package forward

import (
	"encoding/binary"

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

// IPv4 flags and fragment offset field (host order).
const (
	ipv4DF         = 0x4000
	ipv4MF         = 0x2000
	ipv4OffsetMask = 0x1fff
)

// outer holds what every outer header of one tunnelled packet shares.
type outer struct {
	mac      lvs.MAC // next hop toward the real server (Ethernet links)
	src, dst [4]byte // DIP, RIP
	tos, ttl uint8   // copied from the inner header
	proto    uint8   // protoIPIP or protoIPv6
	df       bool    // copied from the inner IPv4 header; false for IPv6 inside
	// v6: an outer IPv6 header from src6 to dst6 (tunnel6) instead of
	// IPv4 from src to dst.
	v6         bool
	src6, dst6 lvs.Addr
}

// headroom returns the bytes of the outer IP header.
func (o *outer) headroom() int {
	if o.v6 {
		return TunnelHeadroom6
	}
	return TunnelHeadroom
}

// tunnel forwards a client's packet of a TUN connection: the IP packet
// (Ethernet padding removed) is encapsulated in an outer IPv4 header from the
// director's address toward the real server (Config.Source) to it (an IPv6
// real server: tunnel6), written into the headroom, with a new
// Ethernet header in front on Ethernet links. p.Off moves back by
// TunnelHeadroom.
//
// The outer header is IPVS's (ip_vs_tunnel_xmit with the default
// pmtu_disc=1): protocol 4 (41 for IPv6 inside), TOS the inner DS field as
// it is (ECN bits included), TTL the inner TTL or hop limit after its
// decrement, DF copied from the inner IPv4 header (clear for IPv6 inside),
// identification 0 when DF is set and a per-worker counter otherwise. The
// inner packet's only change is its TTL, decremented as in every method.
//
// The inner packet may be at most MTU-20 bytes (the tunnel's overhead):
//   - a bigger IPv4 packet with DF, or any bigger IPv6 packet, is answered
//     with ICMP fragmentation-needed (ICMPv6 packet-too-big) carrying MTU-20,
//     from the VIP to the client, as IPVS does; tunnel then returns
//     DropTooBig with p rewritten into that ICMP error, to be transmitted;
//   - a bigger IPv4 packet without DF leaves as fragments of the outer
//     packet (tunnelFragments).
//
// A partial checksum is completed in software and every frame leaves with an
// empty virtio header: the kernel need not look inside the tunnel. A TCP
// super-frame (GSO) is segmented first (tunnelGSO): the virtio header has no
// IPIP GSO type.
func (w *Worker) tunnel(p *Packet, b []byte, e *conntrack.Entry, s *snapshot) DropReason {
	pk := &w.pk
	d := e.Dest
	if !w.checkVNet(&p.VNet) {
		return DropBadVNetHdr
	}
	// The outer source is the director's address toward the real server
	// (IPVS's IP_VS_RT_MODE_CONNECT: the preferred source of the route),
	// from the current snapshot.
	src, ok := s.source(&d.Addr)
	if !ok {
		return DropUnsupported
	}
	if !isV4(&d.Addr) {
		return w.tunnel6(p, b, e, src)
	}
	mtu := w.f.mtu - header.IPv4MinimumSize // the largest inner packet
	if mtu < 68 {
		return DropUnsupported
	}
	// As __ip_vs_get_out_rt: the inner TTL is decremented (with a time
	// exceeded from the VIP at TTL 1) before the MTU check and the
	// encapsulation, so the outer header and a too-big error's quote see it
	// decremented.
	if !decrementTTL(b, pk) {
		return w.timeExceeded(p, b, &pk.t.Dst)
	}
	o := outer{src: [4]byte(src[12:16]), dst: [4]byte(d.Addr[12:16])}
	if r := w.fromInner(p, &o, b, d); r != DropNone {
		return r
	}
	inner := b[pk.l3:pk.ipEnd]

	if p.VNet.GSOType != VirtioNetHdrGSONone {
		if p.Neigh != nil {
			return DropNoNeighbor // several frames cannot wait as one
		}
		return w.tunnelGSO(p, b, e, &o, mtu)
	}
	if len(inner) > mtu {
		// An IPv6 packet is too big unless it was reassembled from
		// fragments that each fit (IPVS's __mtu_check_toobig_v6 with
		// frag_max_size): then the outer packet is fragmented.
		if o.df || pk.v6 && (w.fragMax == 0 || w.fragMax > mtu) {
			return w.tooBig(p, b, mtu)
		}
		if p.Neigh != nil {
			return DropNoNeighbor // several frames cannot wait as one
		}
		return w.tunnelFragments(p, b, e, &o, mtu)
	}
	if p.Off < TunnelHeadroom {
		return DropUnsupported
	}

	// Checks done: from here on the frame is modified.
	if p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0 {
		completeChecksum(b[pk.l4:pk.ipEnd], p.VNet.CsumOffset, pk.t.Proto == lvs.UDP)
	}
	p.VNet = VNetHdr{}
	at := p.Off + pk.l3
	start := w.putOuter(p.Buf, at, len(inner), &o, w.outerID(&o), 0)
	p.Off, p.Len = start, at+len(inner)-start
	countIn(e, len(inner))
	return DropNone
}

// fromInner sets what an outer header of either family takes from the
// inner packet of w.pk in b (TOS or traffic class, TTL or hop limit, DF,
// the protocol that says which family is inside) and, on Ethernet links,
// the MAC of the real server d (zero while p waits for it: see destMAC).
func (w *Worker) fromInner(p *Packet, o *outer, b []byte, d *lvs.Dest) DropReason {
	pk := &w.pk
	if w.f.link == Ethernet {
		var r DropReason
		if o.mac, r = destMAC(p, d); r != DropNone {
			return r
		}
	}
	inner := b[pk.l3:pk.ipEnd]
	if pk.v6 {
		ip := header.IPv6(inner)
		o.tos, _ = ip.TOS()
		o.ttl, o.proto = ip.HopLimit(), protoIPv6
	} else {
		o.tos, o.ttl, o.proto = inner[1], inner[8], protoIPIP
		o.df = binary.BigEndian.Uint16(inner[6:8])&ipv4DF != 0
	}
	return DropNone
}

// tunnelFragments sends the inner IPv4 packet of w.pk (DF clear, too big for
// one outer packet) as fragments of the outer packet, as the kernel's
// ip_fragment does for IPVS: each fragment but the last carries a multiple
// of 8 bytes, all share one identification. They are built in place, each
// one's headers written over the tail of the fragment before it, which has
// already been written out: every fragment but the last goes through
// p.Emit, the last one is p's Transmit frame.
func (w *Worker) tunnelFragments(p *Packet, b []byte, e *conntrack.Entry, o *outer, mtu int) DropReason {
	pk := &w.pk
	if p.Emit == nil || p.Off < TunnelHeadroom+EmitHeadroom {
		return DropUnsupported
	}
	innerLen := pk.ipEnd - pk.l3
	size := mtu &^ 7 // payload of every fragment but the last
	if p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0 {
		completeChecksum(b[pk.l4:pk.ipEnd], p.VNet.CsumOffset, pk.t.Proto == lvs.UDP)
	}
	p.VNet = VNetHdr{}
	id := w.ipID
	w.ipID++
	for off := 0; ; off += size {
		n := min(size, innerLen-off)
		last := off+n == innerLen
		at := p.Off + pk.l3 + off
		flags := uint16(off / 8)
		if !last {
			flags |= ipv4MF
		}
		start := w.putOuter(p.Buf, at, n, o, id, flags)
		if last {
			p.Off, p.Len = start, at+n-start
			break
		}
		p.Emit.Emit(p.Buf, start, at+n-start) // a lost fragment is counted by the link
	}
	countIn(e, innerLen)
	return DropNone
}

// outerID returns the identification of an outer header that is not a
// fragment: 0 with DF (an atomic datagram, RFC 6864; the kernel's
// ip_select_ident does the same without a socket), else the worker's next.
func (w *Worker) outerID(o *outer) uint16 {
	if o.df || o.v6 {
		return 0
	}
	id := w.ipID
	w.ipID++
	return id
}

// putOuter writes, in front of the n bytes at buf[at] (an inner packet or a
// fragment of one), the outer IPv4 header and, on Ethernet links, the
// Ethernet header, and returns the offset of the frame's first byte. flags
// holds MF and the fragment offset (in 8-byte units); DF comes from o.
func (w *Worker) putOuter(buf []byte, at, n int, o *outer, id, flags uint16) int {
	if o.v6 {
		return w.putOuter6(buf, at, n, o, nil) // not a fragment: no ID, no flags
	}
	ip := buf[at-header.IPv4MinimumSize : at]
	if o.df {
		flags |= ipv4DF
	}
	ip[0] = 0x45
	ip[1] = o.tos
	binary.BigEndian.PutUint16(ip[2:4], uint16(header.IPv4MinimumSize+n))
	binary.BigEndian.PutUint16(ip[4:6], id)
	binary.BigEndian.PutUint16(ip[6:8], flags)
	ip[8] = o.ttl
	ip[9] = o.proto
	ip[10], ip[11] = 0, 0
	copy(ip[12:16], o.src[:])
	copy(ip[16:20], o.dst[:])
	binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip, 0))
	start := at - header.IPv4MinimumSize
	if w.f.link == Ethernet {
		start -= header.EthernetMinimumSize
		setMACs(buf[start:], &o.mac, &w.f.mac)
		binary.BigEndian.PutUint16(buf[start+12:start+14], uint16(header.IPv4ProtocolNumber))
	}
	return start
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
