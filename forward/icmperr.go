package forward

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
)

// ICMP error messages lvsd forwards, as IPVS's ip_vs_in_icmp and
// ip_vs_out_icmp: destination unreachable (with fragmentation needed),
// source quench and time exceeded over IPv4; every error type (1 to 4,
// packet too big included) over IPv6.
func isICMPError(v6 bool, typ uint8) bool {
	if v6 {
		return typ < 128 && typ >= uint8(header.ICMPv6DstUnreachable) && typ <= uint8(header.ICMPv6ParamProblem)
	}
	switch header.ICMPv4Type(typ) {
	case header.ICMPv4DstUnreachable, header.ICMPv4SrcQuench, header.ICMPv4TimeExceeded:
		return true
	}
	return false
}

// isUnreachable reports whether an ICMP error (type typ, code code) says a
// destination cannot be reached: destination unreachable, except IPv4's
// fragmentation needed (a path MTU, not a dead server).
func isUnreachable(v6 bool, typ, code uint8) bool {
	if v6 {
		return typ == uint8(header.ICMPv6DstUnreachable)
	}
	return typ == uint8(header.ICMPv4DstUnreachable) && code != uint8(header.ICMPv4FragmentationNeeded)
}

// quoted is the packet an ICMP error quotes: offsets in the frame of its
// IP header and transport header, where the quote ends, and its tuple.
type quoted struct {
	l3, l4, end int
	t           lvs.Tuple
}

// icmpError handles an ICMP packet (w.pk describes its outer IP header;
// pk.l4 is the ICMP header). An error whose quoted packet belongs to a
// connection goes where the quoted packet went wrong, so that path-MTU
// discovery and unreachables work through the director:
//
//   - the quote is a client's packet as lvsd sent it to a NAT real server
//     (client to RIP:rport: the quote's reverse is the connection's Out
//     tuple), so a router on the real servers' side, or the real server
//     itself, reports about the client's packet: to the client, with the
//     outer source and the quote's destination rewritten to VIP:vport (and
//     the TTL decremented, as for NAT replies);
//   - the quote is a packet from VIP:vport to the client (its reverse is
//     the In tuple: a NAT reply as lvsd sent it, or a DR/TUN real server's
//     own reply), so something on the client's side reports about it: to
//     the real server, with, for NAT, the outer destination and the quote's
//     source rewritten to RIP:rport; DR and TUN forward it as any packet of
//     the connection. Toward a real server the TTL is decremented too, as
//     IPVS's ip_vs_icmp_xmit routes it like the connection's packets.
//
// An ICMP error whose TTL would reach zero is dropped, without an error
// about it.
//
// Rewrites keep every checksum right: the outer IPv4 header's, the quoted
// IPv4 header's, the quoted TCP/UDP checksum when the quote holds it (for
// its new address and port), and the ICMP checksum over the whole message
// (with IPv6's pseudo-header). An ICMP packet that is not such an error, or
// whose quote matches no connection, goes to the netstack. ICMP errors do
// not refresh the connection's timer, as in IPVS.
func (w *Worker) icmpError(p *Packet, b []byte, s *snapshot) Verdict {
	pk := &w.pk
	icmp := b[pk.l4:pk.ipEnd]
	if len(icmp) < header.ICMPv4MinimumSize || !isICMPError(pk.v6, icmp[0]) {
		return w.toStack()
	}
	var q quoted
	if !parseQuote(b, pk.l4+header.ICMPv4MinimumSize, pk.ipEnd, pk.v6, &q) {
		return w.toStack()
	}
	// The quote went the other way: its reverse is the tuple of the
	// connection's packets arriving here.
	rev := q.t.Reverse()
	e := w.ent
	found, reply := w.f.table.LookupInto(&rev, e)
	if !found {
		return w.toStack()
	}
	if p.VNet.GSOType != VirtioNetHdrGSONone {
		return w.dropLog(DropBadVNetHdr)
	}
	if p.VNet.Flags&VirtioNetHdrFDataValid == 0 && !icmpChecksumValid(b, pk) {
		return w.drop(DropBadL4Header)
	}
	if reply && isUnreachable(pk.v6, icmp[0], icmp[1]) {
		// About a packet lvsd sent to the real server: a failure for
		// passive health detection (conntrack/failures.go).
		e.CountFailure()
	}
	if e.Synproxy {
		w.synproxyQuote(b, e, &q, reply)
	}
	var r DropReason
	switch {
	case reply:
		r = w.icmpToClient(p, b, e, &q)
	case e.Method == lvs.NAT:
		r = w.icmpToRealNAT(p, b, e, &q)
	case e.Method == lvs.DR:
		r = w.icmpToRealDR(p, b, e)
	case e.Method == lvs.TUN:
		p.VNet = VNetHdr{}
		r = w.tunnel(p, b, e, s)
	default:
		r = DropUnsupported
	}
	return w.finish(p, r, reply)
}

// parseQuote parses the packet quoted in b[off:end] (an IP header and at
// least the 8 bytes of TCP or UDP header that carry the ports) into q. It
// reports false for anything else: another protocol, a later fragment, a
// quote too short, an IPv6 quote with extension headers.
func parseQuote(b []byte, off, end int, v6 bool, q *quoted) bool {
	ip := b[off:end]
	var proto uint8
	q.l3 = off
	if v6 {
		if len(ip) < header.IPv6MinimumSize+8 || header.IPVersion(ip) != header.IPv6Version {
			return false
		}
		proto = ip[6]
		q.t.Src = lvs.AddrFrom16(ip[8:24])
		q.t.Dst = lvs.AddrFrom16(ip[24:40])
		q.l4 = off + header.IPv6MinimumSize
	} else {
		if len(ip) < header.IPv4MinimumSize || header.IPVersion(ip) != header.IPv4Version {
			return false
		}
		ihl := int(ip[0]&0xf) * 4
		if ihl < header.IPv4MinimumSize || len(ip) < ihl+8 || header.IPv4(ip).FragmentOffset() != 0 {
			return false
		}
		proto = ip[9]
		q.t.Src = lvs.AddrFrom4(ip[12:16])
		q.t.Dst = lvs.AddrFrom4(ip[16:20])
		q.l4 = off + ihl
	}
	if proto != uint8(header.TCPProtocolNumber) && proto != uint8(header.UDPProtocolNumber) {
		return false
	}
	q.t.Proto = lvs.Proto(proto)
	q.t.SPort = binary.BigEndian.Uint16(b[q.l4:])
	q.t.DPort = binary.BigEndian.Uint16(b[q.l4+2:])
	q.end = end
	return true
}

// icmpChecksumValid verifies the ICMP checksum of the parsed packet.
func icmpChecksumValid(b []byte, pk *parsed) bool {
	icmp := b[pk.l4:pk.ipEnd]
	var sum uint16
	if pk.v6 {
		ip := header.IPv6(b[pk.l3:])
		sum = header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(icmp)))
	}
	return checksum.Checksum(icmp, sum) == 0xffff
}

// icmpToClient forwards an error about a client's packet of a NAT
// connection to the client (IPVS's ip_vs_nat_icmp, outbound): outer source
// and quoted destination become VIP:vport.
func (w *Worker) icmpToClient(p *Packet, b []byte, e *conntrack.Entry, q *quoted) DropReason {
	pk := &w.pk
	if !decrementTTL(b, pk) {
		return DropTTLExceeded // no ICMP error about an ICMP error
	}
	vip, vport := &e.In.Dst, e.In.DPort
	setOuterAddr(b, pk, false, vip)
	rewriteQuote(b, q, pk.v6, true, vip, vport)
	setICMPChecksum(b, pk)
	if w.f.link == Ethernet {
		setMACs(b, &e.ClientMAC, &w.f.mac)
	}
	p.VNet = VNetHdr{}
	countOut(e, pk.ipEnd-pk.l3)
	return DropNone
}

// icmpToRealNAT forwards an error about a NAT reply to the real server
// (ip_vs_nat_icmp, inbound): outer destination and quoted source become
// RIP:rport.
func (w *Worker) icmpToRealNAT(p *Packet, b []byte, e *conntrack.Entry, q *quoted) DropReason {
	pk := &w.pk
	d := e.Dest
	if !decrementTTL(b, pk) {
		return DropTTLExceeded // as for any packet to a real server
	}
	mac, rport, r := w.natTarget(p, e)
	if r != DropNone {
		return r
	}
	setOuterAddr(b, pk, true, &d.Addr)
	rewriteQuote(b, q, pk.v6, false, &d.Addr, rport)
	setICMPChecksum(b, pk)
	if w.f.link == Ethernet {
		setMACs(b, &mac, &w.f.mac)
	}
	p.VNet = VNetHdr{}
	countIn(e, pk.ipEnd-pk.l3)
	return DropNone
}

// icmpToRealDR forwards an error about a DR real server's reply to it:
// only the MACs change, as for the connection's packets.
func (w *Worker) icmpToRealDR(p *Packet, b []byte, e *conntrack.Entry) DropReason {
	if w.f.link != Ethernet {
		return DropUnsupported
	}
	if !decrementTTL(b, &w.pk) {
		return DropTTLExceeded // as for any packet to a real server
	}
	mac, r := destMAC(p, e.Dest)
	if r != DropNone {
		return r
	}
	setMACs(b, &mac, &w.f.mac)
	p.VNet = VNetHdr{}
	countIn(e, w.pk.ipEnd-w.pk.l3)
	return DropNone
}

// setOuterAddr replaces the outer destination (dst) or source address of
// the parsed packet with a, updating the IPv4 header checksum. The ICMP
// checksum is recomputed afterwards.
func setOuterAddr(b []byte, pk *parsed, dst bool, a *lvs.Addr) {
	if pk.v6 {
		off := pk.l3 + 8
		if dst {
			off = pk.l3 + 24
		}
		copy(b[off:off+16], a[:])
		return
	}
	ip := header.IPv4(b[pk.l3:])
	na := tcpip.AddrFrom4([4]byte(a[12:16]))
	if dst {
		ip.SetDestinationAddressWithChecksumUpdate(na)
	} else {
		ip.SetSourceAddressWithChecksumUpdate(na)
	}
}

// rewriteQuote replaces the quoted packet's destination (dst) or source
// address and port with a and port: the quoted IPv4 header's checksum is
// recomputed, and the quoted TCP or UDP checksum, when the quote holds it,
// is updated for the new address and port (a UDP checksum of 0 stays 0).
func rewriteQuote(b []byte, q *quoted, v6, dst bool, a *lvs.Addr, port uint16) {
	var addr []byte
	if v6 {
		off := q.l3 + 8
		if dst {
			off = q.l3 + 24
		}
		addr = b[off : off+16]
	} else {
		off := q.l3 + 12
		if dst {
			off = q.l3 + 16
		}
		addr = b[off : off+4]
	}
	portOff := q.l4
	if dst {
		portOff += 2
	}
	oldPort := binary.BigEndian.Uint16(b[portOff:])

	// The quoted transport checksum, if quoted, covers the pseudo-header
	// address and the port.
	csumOff := q.l4 + header.TCPChecksumOffset
	if q.t.Proto == lvs.UDP {
		csumOff = q.l4 + udpChecksumOffset
	}
	if csumOff+2 <= q.end {
		old := binary.BigEndian.Uint16(b[csumOff:])
		if q.t.Proto != lvs.UDP || old != 0 {
			x := ^old
			newAddr := a[16-len(addr):]
			for i := 0; i < len(addr); i += 2 {
				x = checksumUpdate(x, binary.BigEndian.Uint16(addr[i:]), binary.BigEndian.Uint16(newAddr[i:]))
			}
			x = checksumUpdate(x, oldPort, port)
			c := ^x
			if q.t.Proto == lvs.UDP && c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(b[csumOff:], c)
		}
	}
	copy(addr, a[16-len(addr):])
	binary.BigEndian.PutUint16(b[portOff:], port)
	if !v6 {
		h := b[q.l3:q.l4]
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:], ^checksum.Checksum(h, 0))
	}
}

// setICMPChecksum recomputes the ICMP checksum of the parsed packet.
func setICMPChecksum(b []byte, pk *parsed) {
	icmp := b[pk.l4:pk.ipEnd]
	icmp[2], icmp[3] = 0, 0
	var sum uint16
	if pk.v6 {
		ip := header.IPv6(b[pk.l3:])
		sum = header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(icmp)))
	}
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, sum))
}
