package forward

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
)

// natTarget returns what a packet rewritten toward e's real server needs:
// the real server's MAC (Ethernet links) and its port, where a destination
// of port 0 (a service over several ports) keeps the port the client
// addressed. NAT cannot cross address families. A MAC not known yet is
// zero, and p waits for it (see destMAC).
func (w *Worker) natTarget(p *Packet, e *conntrack.Entry) (mac lvs.MAC, rport uint16, r DropReason) {
	d := e.Dest
	if isV4(&d.Addr) == w.pk.v6 {
		return mac, 0, DropUnsupported
	}
	if w.f.link == Ethernet {
		if mac, r = destMAC(p, d); r != DropNone {
			return mac, 0, r
		}
	}
	rport = d.Port
	if rport == 0 {
		rport = e.In.DPort
	}
	return mac, rport, DropNone
}

// natIn rewrites a client's packet for a NAT connection: destination
// VIP:vport becomes RIP:rport, and the TTL is decremented as IPVS does
// (decrement_ttl in __ip_vs_get_out_rt), with a time exceeded from the VIP
// at TTL 1.
func (w *Worker) natIn(p *Packet, b []byte, e *conntrack.Entry) DropReason {
	pk := &w.pk
	d := e.Dest
	if !w.checkVNet(&p.VNet) {
		return DropBadVNetHdr
	}
	if !decrementTTL(b, pk) {
		return w.timeExceeded(p, b, &pk.t.Dst)
	}
	mac, rport, r := w.natTarget(p, e)
	if r != DropNone {
		return r
	}
	// Checks done: from here on the frame is modified.
	rewrite(b, pk, true, &d.Addr, rport, p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0)
	if w.f.link == Ethernet {
		setMACs(b, &mac, &w.f.mac)
	}
	countIn(e, pk.ipEnd-pk.l3)
	return DropNone
}

// natOut rewrites a real server's reply of a NAT connection: source RIP:rport
// becomes VIP:vport, and the frame goes to the client's MAC. Replies are
// routed through the director, which decrements their TTL (IPVS sees them
// in the FORWARD hook, after ip_forward did); at TTL 1 ip_forward answers
// the real server with a time exceeded from the director's address toward
// it (the route's preferred source: Config.Source).
func (w *Worker) natOut(p *Packet, b []byte, e *conntrack.Entry, s *snapshot) DropReason {
	pk := &w.pk
	if !w.checkVNet(&p.VNet) {
		return DropBadVNetHdr
	}
	if !decrementTTL(b, pk) {
		if src, ok := s.source(&pk.t.Src); ok {
			return w.timeExceeded(p, b, &src)
		}
		return DropTTLExceeded
	}
	// Checks done: from here on the frame is modified.
	rewrite(b, pk, false, &e.In.Dst, e.In.DPort, p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0)
	if w.f.link == Ethernet {
		setMACs(b, &e.ClientMAC, &w.f.mac)
	}
	countOut(e, pk.ipEnd-pk.l3)
	return DropNone
}

// checksumUpdate returns the ones' complement sum xsum with one 16-bit word
// (2-byte aligned in the summed data) changed from old to new (RFC 1624).
func checksumUpdate(xsum, old, new uint16) uint16 {
	return checksum.Combine(xsum, checksum.Combine(new, ^old))
}

// rewrite replaces the destination (dst) or source address and port of the
// parsed packet in b with a and port, updating the checksums incrementally:
//
//   - the IPv4 header checksum always;
//   - with partial (VIRTIO_NET_HDR_F_NEEDS_CSUM), the L4 checksum field holds
//     the non-complemented pseudo-header sum that the kernel (or the NIC)
//     completes over the whole segment: only the address, which is in the
//     pseudo-header, is folded in; the port is inside the summed range and
//     changes without an update;
//   - a UDP checksum of 0 (none) stays 0;
//   - otherwise the full checksum is updated for address and port, and a UDP
//     result of 0 is sent as 0xffff (0 would mean "no checksum").
//
// a has the packet's family (the caller checked).
func rewrite(b []byte, pk *parsed, dst bool, a *lvs.Addr, port uint16, partial bool) {
	var oldA, newA tcpip.Address
	if pk.v6 {
		ip := header.IPv6(b[pk.l3:])
		newA = tcpip.AddrFrom16([16]byte(*a))
		if dst {
			oldA = ip.DestinationAddress()
			ip.SetDestinationAddress(newA)
		} else {
			oldA = ip.SourceAddress()
			ip.SetSourceAddress(newA)
		}
	} else {
		ip := header.IPv4(b[pk.l3:])
		newA = tcpip.AddrFrom4([4]byte(a[12:16]))
		if dst {
			oldA = ip.DestinationAddress()
			ip.SetDestinationAddressWithChecksumUpdate(newA)
		} else {
			oldA = ip.SourceAddress()
			ip.SetSourceAddressWithChecksumUpdate(newA)
		}
	}

	l4 := b[pk.l4:]
	switch pk.t.Proto {
	case lvs.TCP:
		tcp := header.TCP(l4)
		tcp.UpdateChecksumPseudoHeaderAddress(oldA, newA, !partial)
		switch {
		case partial && dst:
			tcp.SetDestinationPort(port)
		case partial:
			tcp.SetSourcePort(port)
		case dst:
			tcp.SetDestinationPortWithChecksumUpdate(port)
		default:
			tcp.SetSourcePortWithChecksumUpdate(port)
		}
	case lvs.UDP:
		udp := header.UDP(l4)
		full := !partial && udp.Checksum() != 0
		if partial || full {
			udp.UpdateChecksumPseudoHeaderAddress(oldA, newA, full)
		}
		switch {
		case full && dst:
			udp.SetDestinationPortWithChecksumUpdate(port)
		case full:
			udp.SetSourcePortWithChecksumUpdate(port)
		case dst:
			udp.SetDestinationPort(port)
		default:
			udp.SetSourcePort(port)
		}
		if full && udp.Checksum() == 0 {
			udp.SetChecksum(0xffff)
		}
	}
}
