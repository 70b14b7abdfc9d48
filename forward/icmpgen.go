package forward

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/lvs"
)

// ICMP errors that the fast path generates itself, built in place in the
// packet buffer: the offending IP packet stays where it is and becomes the
// quoted part; the new IP and ICMP headers (and the Ethernet header) go in
// front of it, into the headroom.

// ICMPHeadroom is the headroom (Packet.Off) that an ICMP error built in
// place needs in front of a frame: an IPv6 and an ICMPv6 header (48 bytes;
// IPv4 needs 28). Without it the offending packet is dropped
// (DropUnsupported) and no error is sent.
const ICMPHeadroom = header.IPv6MinimumSize + header.ICMPv6MinimumSize

// Limits of the quoted packet, as the kernel's: an ICMPv4 error is at most
// 576 bytes long (icmp_send), an ICMPv6 error at most the IPv6 minimum MTU,
// 1280 (icmp6_send).
const (
	icmpv4MaxLen = 576
	icmpv6MaxLen = header.IPv6MinimumMTU
)

// Fields of the kernel's ICMP errors.
const (
	icmpTTL = 64 // sysctl ip_default_ttl and hop_limit defaults
	// IPTOS_TOS_MASK and IPTOS_PREC_INTERNETCONTROL: an ICMPv4 error keeps
	// the offending packet's TOS bits and gets precedence "internetwork
	// control".
	iptosTOSMask         = 0x1e
	iptosPrecInetControl = 0xc0
)

// tooBig replaces the frame in p, whose IP packet (parsed into w.pk) is too
// big for a path of mtu bytes and must not be fragmented, with the ICMP error
// that tells its source so: ICMP destination-unreachable /
// fragmentation-needed (type 3, code 4) with the next-hop MTU for IPv4, ICMPv6
// packet-too-big (type 2) for IPv6. This is what IPVS sends from
// ensure_mtu_is_adequate (icmp_send, icmpv6_send) for a tunnel, from the
// packet's destination (the VIP: the packet was addressed to the director
// itself, so the kernel answers from that address); see icmpReply.
//
// No rate limit applies: the kernel exempts fragmentation-needed from its
// ICMP rate limits, as path-MTU discovery needs an answer to each too-big
// packet.
//
// It returns DropTooBig with p rewritten (p.Off, p.Len, an empty p.VNet) to
// the frame to transmit, or DropUnsupported, leaving p unchanged, when no
// error can be sent (see icmpReply).
func (w *Worker) tooBig(p *Packet, b []byte, mtu int) DropReason {
	if mtu > 0xffff {
		return DropUnsupported
	}
	t4 := icmpType{uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4FragmentationNeeded)}
	t6 := icmpType{uint8(header.ICMPv6PacketTooBig), 0}
	if !w.icmpReply(p, b, &w.pk.t.Dst, t4, t6, uint32(mtu)) {
		return DropUnsupported
	}
	return DropTooBig
}

// icmpType is the type and code of an ICMP message.
type icmpType struct{ typ, code uint8 }

// icmpReply replaces the frame in p, whose IP packet is parsed into w.pk,
// with an ICMP error about it from src (an address of the packet's family) to
// the packet's source, of type t4 (IPv4) or t6 (IPv6), whose 32-bit field
// after the checksum is info (the MTU of a too-big error, else 0), as the
// kernel's icmp_send and icmpv6_send build them:
//
//   - on Ethernet links to the MAC the frame came from (the client, its
//     router, or a real server), from the director's MAC;
//   - IPv4: TTL 64, TOS (inner TOS & 0x1e) | 0xc0, DF clear, the worker's
//     next identification; quoting the offending packet from its IP header
//     on, up to 576 bytes in all;
//   - IPv6: hop limit 64, traffic class 0, quoting up to 1280 bytes in all.
//
// The quoted packet is as it is in b (a partial checksum stays partial; the
// quote of a GSO super-frame shows its total length); receivers use only its
// addresses and ports.
//
// It reports false, leaving p unchanged, when the headroom is too small or
// the source is no unicast address to answer (the kernel would have dropped
// such a packet before IPVS saw it). Otherwise p.Off, p.Len and p.VNet (now
// empty) describe the frame to transmit.
func (w *Worker) icmpReply(p *Packet, b []byte, src *lvs.Addr, t4, t6 icmpType, info uint32) bool {
	pk := &w.pk
	inner := b[pk.l3:pk.ipEnd]
	hdrLen := header.IPv4MinimumSize + header.ICMPv4MinimumSize
	limit := icmpv4MaxLen
	if pk.v6 {
		hdrLen = header.IPv6MinimumSize + header.ICMPv6MinimumSize
		limit = icmpv6MaxLen
	}
	if p.Off < hdrLen || !unicastSource(pk) {
		return false
	}
	quote := min(len(inner), limit-hdrLen)
	at := p.Off + pk.l3 // the quoted packet stays here
	ip := p.Buf[at-hdrLen : at]
	var msg []byte // the ICMP header and the quote
	if pk.v6 {
		msg = p.Buf[at-header.ICMPv6MinimumSize : at+quote]
		ip[0], ip[1], ip[2], ip[3] = 0x60, 0, 0, 0 // version, traffic class 0, no flow label
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
		ip[6] = uint8(header.ICMPv6ProtocolNumber)
		ip[7] = icmpTTL
		copy(ip[8:24], src[:])
		copy(ip[24:40], pk.t.Src[:])
		msg[0], msg[1] = t6.typ, t6.code
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint32(msg[4:8], info)
		sum := checksum.Checksum(ip[8:40], 0) // the pseudo-header's addresses
		sum = checksum.Combine(sum, uint16(len(msg)))
		sum = checksum.Combine(sum, uint16(header.ICMPv6ProtocolNumber))
		binary.BigEndian.PutUint16(msg[2:4], ^checksum.Checksum(msg, sum))
	} else {
		msg = p.Buf[at-header.ICMPv4MinimumSize : at+quote]
		ip[0] = 0x45
		ip[1] = inner[1]&iptosTOSMask | iptosPrecInetControl
		binary.BigEndian.PutUint16(ip[2:4], uint16(header.IPv4MinimumSize+len(msg)))
		binary.BigEndian.PutUint16(ip[4:6], w.ipID)
		w.ipID++
		ip[6], ip[7] = 0, 0 // DF clear: the kernel's ICMP socket does no PMTU discovery
		ip[8] = icmpTTL
		ip[9] = uint8(header.ICMPv4ProtocolNumber)
		ip[10], ip[11] = 0, 0
		copy(ip[12:16], src[12:16])
		copy(ip[16:20], pk.t.Src[12:16])
		binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip[:header.IPv4MinimumSize], 0))
		msg[0], msg[1] = t4.typ, t4.code
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint32(msg[4:8], info)
		binary.BigEndian.PutUint16(msg[2:4], ^checksum.Checksum(msg, 0))
	}
	start := at - hdrLen
	if w.f.link == Ethernet {
		// The frame's own Ethernet header lies where the new one goes: its
		// source MAC is in w.pk.
		start -= header.EthernetMinimumSize
		eth := p.Buf[start : start+header.EthernetMinimumSize]
		setMACs(eth, &pk.srcMAC, &w.f.mac)
		et := header.IPv4ProtocolNumber
		if pk.v6 {
			et = header.IPv6ProtocolNumber
		}
		binary.BigEndian.PutUint16(eth[12:14], uint16(et))
	}
	p.Off, p.Len, p.VNet = start, at+quote-start, VNetHdr{}
	return true
}

// unicastSource reports whether the source of the parsed packet is an
// address an ICMP error may go to: not unspecified, loopback, multicast or
// limited broadcast.
func unicastSource(pk *parsed) bool {
	a := pk.t.Src.Netip()
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
