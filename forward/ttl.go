package forward

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/lvs"
)

// decrementTTL decrements the TTL (IPv4) or hop limit (IPv6) of the parsed
// packet in b, as a router does and as IPVS does in every forwarding method
// (decrement_ttl in __ip_vs_get_out_rt) and the kernel's ip_forward for NAT
// replies. The IPv4 header checksum is updated incrementally as the kernel's
// ip_decrease_ttl does: one's complement addition of 0x0100, whose result is
// never 0xffff. A GSO super-frame stays whole: its segments inherit the
// header.
//
// It reports false, changing nothing, when the TTL is 1 or 0: the packet
// must not leave (see timeExceeded).
func decrementTTL(b []byte, pk *parsed) bool {
	if pk.v6 {
		hl := &b[pk.l3+7]
		if *hl <= 1 {
			return false
		}
		*hl--
		return true
	}
	ttl := &b[pk.l3+8]
	if *ttl <= 1 {
		return false
	}
	*ttl--
	sum := b[pk.l3+10 : pk.l3+12]
	c := uint32(binary.BigEndian.Uint16(sum)) + 0x0100
	if c >= 0xffff {
		c++ // the end-around carry; 0xffff becomes 0
	}
	binary.BigEndian.PutUint16(sum, uint16(c))
	return true
}

// timeExceeded handles a packet whose TTL would reach zero: it replaces p's
// frame with an ICMP time exceeded (IPv4 type 11 code 0, ICMPv6 type 3 code
// 0) from src to the packet's source, as the kernel does before it drops
// such a packet, and notes in w.pk that p holds it. It returns
// DropTTLExceeded.
//
// No error is sent about an ICMP error (the packets icmpError forwards):
// the kernel never answers one with another. Nor when icmpReply cannot build
// one; then p is unchanged and dropped.
func (w *Worker) timeExceeded(p *Packet, b []byte, src *lvs.Addr) DropReason {
	pk := &w.pk
	if pk.t.Proto == lvs.TCP || pk.t.Proto == lvs.UDP {
		t4 := icmpType{uint8(header.ICMPv4TimeExceeded), uint8(header.ICMPv4TTLExceeded)}
		t6 := icmpType{uint8(header.ICMPv6TimeExceeded), uint8(header.ICMPv6HopLimitExceeded)}
		pk.answered = w.icmpReply(p, b, src, t4, t6, 0)
	}
	return DropTTLExceeded
}
