package forward

import (
	"encoding/binary"
	"hash/maphash"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/lvs"
)

// The tunnel headers that IPVS puts between the outer IP header and the
// inner packet of a gue or gre destination (ip_vs_xmit.c's ipvs_gue_encap
// and ipvs_gre_encap); an ipip destination has none.
const (
	protoUDP = 17 // outer protocol of gue
	protoGRE = 47 // outer protocol of gre

	udpHdrLen  = 8
	gueHdrLen  = 4 // version 0: control bit, version, hlen, proto/ctype, flags
	gueRemLen  = 8 // the private flags word and the remote checksum option
	greHdrLen  = 4 // flags and version, protocol type
	greCsumLen = 4 // checksum and the reserved half-word, with the C bit

	gueFlagPriv      = 0x0001     // GUE flags: a private flags word follows
	guePFlagRemCsum  = 0x80000000 // private flags: remote checksum offload
	greFlagCsum      = 0x8000     // GRE flags: checksum present
	etherTypeIPv4    = 0x0800     // GRE protocol type of an IPv4 inner packet
	etherTypeIPv6    = 0x86dd     // and of IPv6
	udpSrcPortFirst  = 32768      // the kernel's default ip_local_port_range
	udpSrcPortBounds = 60999 - udpSrcPortFirst
)

// encapLen returns the bytes of tunnel header that t puts after the outer
// IP header, as __ip_vs_get_out_rt subtracts them from the tunnel's MTU:
// UDP and GUE headers for gue (8 more with remcsum when the inner checksum
// is partial, partial), the GRE header for gre (4 more with csum).
func encapLen(t lvs.Tunnel, partial bool) int {
	switch t.Type {
	case lvs.TunGUE:
		n := udpHdrLen + gueHdrLen
		if t.Flags&lvs.TunRemCsum != 0 && partial {
			n += gueRemLen
		}
		return n
	case lvs.TunGRE:
		if t.Flags&lvs.TunCsum != 0 {
			return greHdrLen + greCsumLen
		}
		return greHdrLen
	}
	return 0
}

// setEncap completes o (fromInner done: o.proto says which family is
// inside) for the tunnel t of the destination: the outer protocol, the
// tunnel header's length, and for gue the UDP source port and whether the
// remote checksum option goes in (remcsum with a partial inner checksum of
// the packet of w.pk, whose checksum field is at csumOff in its transport
// header).
func (w *Worker) setEncap(o *outer, t lvs.Tunnel, partial bool, csumOff uint16) {
	o.tun = t
	o.inner = o.proto
	o.encap = encapLen(t, partial)
	switch t.Type {
	case lvs.TunGUE:
		o.proto = protoUDP
		o.sport = w.flowPort()
		if o.rem = t.Flags&lvs.TunRemCsum != 0 && partial; o.rem {
			o.remStart = uint16(w.pk.l4 - w.pk.l3)
			o.remOff = o.remStart + csumOff
		}
	case lvs.TunGRE:
		o.proto = protoGRE
	}
}

// flowPort returns the UDP source port of a gue packet of the flow of w.pk,
// as the kernel's udp_flow_src_port: a hash of the flow, its upper half
// folded in, scaled into the default local port range 32768..60998. The
// kernel hashes the flow with the skb's flow hash (a random seed per boot);
// lvsd hashes the inner addresses, ports and protocol with a seed drawn per
// Forwarder: every packet of a connection gets the same port (the receiver's
// RSS keeps it on one queue), different flows spread over the range.
func (w *Worker) flowPort() uint16 {
	t := &w.pk.t
	var k [37]byte
	copy(k[0:16], t.Src[:])
	copy(k[16:32], t.Dst[:])
	binary.BigEndian.PutUint16(k[32:], t.SPort)
	binary.BigEndian.PutUint16(k[34:], t.DPort)
	k[36] = uint8(t.Proto)
	h := uint32(maphash.Bytes(w.f.flowSeed, k[:]))
	h ^= h << 16
	return uint16(uint64(h)*udpSrcPortBounds>>32) + udpSrcPortFirst
}

// putEncap writes o's tunnel header in front of the n bytes at buf[at] (the
// whole inner packet, or one segment of a super-frame, complete: the UDP or
// GRE checksum covers it) and returns the offset of its first byte; with
// ipip it writes nothing and returns at.
//
// gue (ipvs_gue_encap): UDP from o.sport to the tunnel's port, length the
// datagram's; GUE version 0, hlen the options' 32-bit words, proto/ctype
// the inner protocol (4 or 41), flags 0 or, with the remote checksum
// option, the private-flags bit, a private flags word with its remcsum bit
// and the option's two offsets into the inner packet (where the checksum
// starts, where its field is). The UDP checksum is 0 with nocsum (IPv6 as
// well, as udp6_set_csum sends it) and complete with csum or remcsum.
//
// gre (ipvs_gre_encap, gre_build_header): flags 0 or the C bit with csum,
// version 0, protocol type 0x0800 or 0x86dd; with csum the checksum of the
// GRE header and the inner packet, then 16 reserved zero bits.
func (w *Worker) putEncap(buf []byte, at, n int, o *outer) int {
	start := at - o.encap
	h := buf[start:at]
	switch o.tun.Type {
	case lvs.TunGUE:
		udp := h[:udpHdrLen]
		binary.BigEndian.PutUint16(udp[0:2], o.sport)
		binary.BigEndian.PutUint16(udp[2:4], o.tun.Port)
		binary.BigEndian.PutUint16(udp[4:6], uint16(o.encap+n))
		udp[6], udp[7] = 0, 0
		gue := h[udpHdrLen:]
		opt := o.encap - udpHdrLen - gueHdrLen
		gue[0] = uint8(opt / 4) // control 0, version 0, hlen
		gue[1] = o.inner
		gue[2], gue[3] = 0, 0
		if o.rem {
			binary.BigEndian.PutUint16(gue[2:4], gueFlagPriv)
			binary.BigEndian.PutUint32(gue[4:8], guePFlagRemCsum)
			binary.BigEndian.PutUint16(gue[8:10], o.remStart)
			binary.BigEndian.PutUint16(gue[10:12], o.remOff)
		}
		if o.tun.Flags&(lvs.TunCsum|lvs.TunRemCsum) != 0 {
			c := ^checksum.Checksum(buf[start:at+n], o.pseudoSum(protoUDP, o.encap+n))
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(udp[6:8], c)
		}
	case lvs.TunGRE:
		flags := uint16(0)
		if o.encap > greHdrLen {
			flags = greFlagCsum
		}
		binary.BigEndian.PutUint16(h[0:2], flags)
		et := uint16(etherTypeIPv4)
		if o.inner == protoIPv6 {
			et = etherTypeIPv6
		}
		binary.BigEndian.PutUint16(h[2:4], et)
		if flags != 0 {
			clear(h[4:8])
			binary.BigEndian.PutUint16(h[4:6], ^checksum.Checksum(buf[start:at+n], 0))
		}
	}
	return start
}

// pseudoSum returns the sum of the outer pseudo-header of a transport
// segment of protocol proto and length n.
func (o *outer) pseudoSum(proto uint8, n int) uint16 {
	var s uint16
	if o.v6 {
		s = checksum.Combine(checksum.Checksum(o.src6[:], 0), checksum.Checksum(o.dst6[:], 0))
	} else {
		s = checksum.Combine(checksum.Checksum(o.src[:], 0), checksum.Checksum(o.dst[:], 0))
	}
	return checksum.Combine(s, checksum.Combine(uint16(proto), uint16(n)))
}

// innerChecksum completes the partial checksum of the inner packet of w.pk
// in b before encapsulation, as the kernel's skb_checksum_help; with gue's
// remote checksum option (o.rem) it stays partial, for the receiver to
// complete (the option says where).
func (w *Worker) innerChecksum(p *Packet, b []byte, o *outer) {
	if p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0 && !o.rem {
		completeChecksum(b[w.pk.l4:w.pk.ipEnd], p.VNet.CsumOffset, w.pk.t.Proto == lvs.UDP)
	}
}

// headerLen returns the bytes of outer headers in front of an inner packet
// that is not fragmented: the IP header and the tunnel header.
func (o *outer) headerLen() int {
	if o.v6 {
		return header.IPv6MinimumSize + o.encap
	}
	return header.IPv4MinimumSize + o.encap
}
