package forward

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
)

// TunnelHeadroom6 is the headroom (Packet.Off) that TUN forwarding to an
// IPv6 real server needs in front of a frame for its outer IPv6 header.
const TunnelHeadroom6 = header.IPv6MinimumSize

// tunnel6 forwards a client's packet of a TUN connection to an IPv6 real
// server (tunnel found it): the IP packet is encapsulated in an outer IPv6
// header from src, the director's IPv6 address toward the real server
// (Config.Source), to the real server, as IPVS's ip_vs_tunnel_xmit_v6
// builds it, after decrementing the inner hop limit or TTL as tunnel does
// (a time exceeded from the VIP at 1): next header 41 (IPv6 inside) or 4 (IPv4 inside), traffic class
// the inner DS field as it is, flow label 0, hop limit the inner hop limit
// or TTL, no extension header.
//
// Either family may be inside (IPVS tunnels IPv4 and IPv6 over either).
//
// The inner packet may be at most MTU-40 bytes (the tunnel's overhead; an
// MTU under 1320 leaves the tunnel under IPv6's minimum and the packet is
// dropped as unsupported, as IPVS does):
//   - a bigger IPv6 packet (one reassembled from fragments that each fit
//     excepted), or IPv4 packet with DF, is answered with ICMPv6
//     packet-too-big (ICMP fragmentation-needed) carrying MTU-40, from the
//     VIP to the client (tooBig), as IPVS's ensure_mtu_is_adequate;
//   - any other bigger packet leaves as fragments of the outer packet
//     (tunnelFragments6): IPVS sets ignore_df and ip6_fragment cuts it.
//
// A partial checksum is completed and a TCP super-frame segmented first,
// as for an IPv4 tunnel (tunnel, tunnelGSO).
func (w *Worker) tunnel6(p *Packet, b []byte, e *conntrack.Entry, src lvs.Addr) DropReason {
	pk := &w.pk
	d := e.Dest
	mtu := w.f.mtu - header.IPv6MinimumSize
	if mtu < header.IPv6MinimumMTU {
		return DropUnsupported
	}
	// As __ip_vs_get_out_rt_v6, and as tunnel: decremented before the MTU
	// check and the encapsulation.
	if !decrementTTL(b, pk) {
		return w.timeExceeded(p, b, &pk.t.Dst)
	}
	o := outer{v6: true, src6: src, dst6: d.Addr}
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
		if o.df || pk.v6 && (w.fragMax == 0 || w.fragMax > mtu) {
			return w.tooBig(p, b, mtu)
		}
		if p.Neigh != nil {
			return DropNoNeighbor // several frames cannot wait as one
		}
		return w.tunnelFragments6(p, b, e, &o)
	}
	if p.Off < TunnelHeadroom6 {
		return DropUnsupported
	}

	// Checks done: from here on the frame is modified.
	if p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0 {
		completeChecksum(b[pk.l4:pk.ipEnd], p.VNet.CsumOffset, pk.t.Proto == lvs.UDP)
	}
	p.VNet = VNetHdr{}
	at := p.Off + pk.l3
	start := w.putOuter6(p.Buf, at, len(inner), &o, nil)
	p.Off, p.Len = start, at+len(inner)-start
	countIn(e, len(inner))
	return DropNone
}

// outerFrag is the fragment header of one fragment of an outer IPv6 packet.
type outerFrag struct {
	off  int // offset of its data in the outer packet's fragmentable part
	more bool
	id   uint32
}

// putOuter6 writes, in front of the n bytes at buf[at] (an inner packet or a
// piece of one), the outer IPv6 header, with a fragment header when f is not
// nil, and, on Ethernet links, the Ethernet header; it returns the offset of
// the frame's first byte.
func (w *Worker) putOuter6(buf []byte, at, n int, o *outer, f *outerFrag) int {
	hl := header.IPv6MinimumSize
	if f != nil {
		hl += 8
		fh := buf[at-8 : at]
		fh[0], fh[1] = o.proto, 0
		fo := uint16(f.off)
		if f.more {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:4], fo)
		binary.BigEndian.PutUint32(fh[4:8], f.id)
	}
	ip := buf[at-hl : at-hl+header.IPv6MinimumSize]
	ip[0] = 0x60 | o.tos>>4
	ip[1] = o.tos << 4 // flow label 0
	ip[2], ip[3] = 0, 0
	binary.BigEndian.PutUint16(ip[4:6], uint16(hl-header.IPv6MinimumSize+n))
	ip[6] = o.proto
	if f != nil {
		ip[6] = ip6Fragment
	}
	ip[7] = o.ttl
	copy(ip[8:24], o.src6[:])
	copy(ip[24:40], o.dst6[:])
	start := at - hl
	if w.f.link == Ethernet {
		start -= header.EthernetMinimumSize
		setMACs(buf[start:], &o.mac, &w.f.mac)
		binary.BigEndian.PutUint16(buf[start+12:start+14], uint16(header.IPv6ProtocolNumber))
	}
	return start
}

// tunnelFragments6 sends the inner packet of w.pk, too big for one outer
// IPv6 packet and allowed to be fragmented, as fragments of the outer
// packet, as ip6_fragment cuts it: each carries the outer header, a
// fragment header (one new identification for all) and the largest
// multiple of 8 bytes of the inner packet that fits the link's MTU (the
// last one the rest). They are built in place as tunnelFragments builds
// IPv4 ones: every fragment but the last goes through p.Emit, the last one
// is p's Transmit frame.
func (w *Worker) tunnelFragments6(p *Packet, b []byte, e *conntrack.Entry, o *outer) DropReason {
	pk := &w.pk
	if p.Emit == nil || p.Off < TunnelHeadroom6+8+EmitHeadroom {
		return DropUnsupported
	}
	innerLen := pk.ipEnd - pk.l3
	size := (w.f.mtu - header.IPv6MinimumSize - 8) &^ 7
	if p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0 {
		completeChecksum(b[pk.l4:pk.ipEnd], p.VNet.CsumOffset, pk.t.Proto == lvs.UDP)
	}
	p.VNet = VNetHdr{}
	f := outerFrag{id: w.f.fragID.Add(1)}
	for off := 0; ; off += size {
		n := min(size, innerLen-off)
		f.off, f.more = off, off+n < innerLen
		at := p.Off + pk.l3 + off
		start := w.putOuter6(p.Buf, at, n, o, &f)
		if !f.more {
			p.Off, p.Len = start, at+n-start
			break
		}
		p.Emit.Emit(p.Buf, start, at+n-start) // a lost fragment is counted by the link
	}
	countIn(e, innerLen)
	return DropNone
}
