package forward

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
)

// TCP flags that segmentation changes.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// maxGSOHeaders bounds the IP and TCP headers of a super-frame: 60 + 60
// bytes (IPv4 with options; an IPv6 header without extension headers is 40).
const maxGSOHeaders = 120

// tunnelGSO forwards a TCP super-frame (a GSO frame from the virtio-net
// header, VirtioNetHdrGSOTCPv4 or TCPv6) of a TUN connection. The virtio
// header has no IPIP type, so lvsd segments it in user space, as the
// kernel's tcp_gso_segment would, and encapsulates every segment:
//
//   - segment i carries payload bytes [i*mss, (i+1)*mss) (the last one the
//     rest) with the super-frame's headers, sequence number seq+i*mss, IPv4
//     identification id+i, and full IP and TCP checksums;
//   - FIN and PSH stay on the last segment only, CWR on the first only;
//   - mss is the virtio header's GSOSize. A segment that would not fit the
//     tunnel (mtu bytes of inner packet) is answered, when DF is set or for
//     IPv6, with an ICMP error carrying mtu, as IPVS checks the segments of
//     a GSO packet against the tunnel's MTU; without DF the frame is cut
//     into segments that fit instead (IPVS would fragment each outer
//     packet; segments that fit lose nothing).
//
// The segments are built in place, each one's headers written in front of
// its payload over the tail of the segment before, which has already been
// written out: every segment but the last goes through p.Emit, the last one
// is p's Transmit frame. No allocation, no copy of the payload.
func (w *Worker) tunnelGSO(p *Packet, b []byte, e *conntrack.Entry, o *outer, mtu int) DropReason {
	pk := &w.pk
	switch p.VNet.GSOType &^ VirtioNetHdrGSOECN {
	case VirtioNetHdrGSOTCPv4, VirtioNetHdrGSOTCPv6:
	default:
		return DropUnsupported // UDP GSO: never offered to the device
	}
	ipLen := pk.l4 - pk.l3
	hdrEnd := pk.l4 + int(header.TCP(b[pk.l4:]).DataOffset())
	hlen := hdrEnd - pk.l3 // inner IP and TCP headers
	plen := pk.ipEnd - hdrEnd
	mss := int(p.VNet.GSOSize)
	if hlen+mss > mtu {
		if o.df || pk.v6 {
			return w.tooBig(p, b, mtu)
		}
		mss = mtu - hlen
	}
	if mss <= 0 || hlen > maxGSOHeaders {
		return DropUnsupported
	}
	nseg := max(1, (plen+mss-1)/mss)
	need := o.headroom()
	if nseg > 1 {
		if p.Emit == nil {
			return DropUnsupported
		}
		need += EmitHeadroom
	}
	if p.Off < need {
		return DropUnsupported
	}

	// Checks done: from here on the frame is modified.
	var tmpl [maxGSOHeaders]byte
	copy(tmpl[:hlen], b[pk.l3:hdrEnd])
	seq := binary.BigEndian.Uint32(tmpl[ipLen+4:])
	flags := tmpl[ipLen+13]
	id := binary.BigEndian.Uint16(tmpl[4:]) // IPv4 only
	for i := range nseg {
		n := min(mss, plen-i*mss)
		at := p.Off + pk.l3 + i*mss // this segment's IP header
		seg := p.Buf[at : at+hlen+n]
		copy(seg, tmpl[:hlen])
		if pk.v6 {
			binary.BigEndian.PutUint16(seg[4:6], uint16(hlen-header.IPv6MinimumSize+n))
		} else {
			binary.BigEndian.PutUint16(seg[2:4], uint16(hlen+n))
			binary.BigEndian.PutUint16(seg[4:6], id+uint16(i))
			seg[10], seg[11] = 0, 0
			binary.BigEndian.PutUint16(seg[10:12], ^checksum.Checksum(seg[:ipLen], 0))
		}
		tcp := seg[ipLen:]
		binary.BigEndian.PutUint32(tcp[4:8], seq+uint32(i*mss))
		f := flags
		if i > 0 {
			f &^= tcpCWR
		}
		if i < nseg-1 {
			f &^= tcpFIN | tcpPSH
		}
		tcp[13] = f
		tcp[16], tcp[17] = 0, 0
		if o.rem {
			// gue's remote checksum offload: the field keeps the
			// pseudo-header sum, the receiver completes it.
			binary.BigEndian.PutUint16(tcp[16:18], pseudoHeaderSum(seg, pk.v6, len(tcp)))
		} else {
			binary.BigEndian.PutUint16(tcp[16:18], ^checksum.Checksum(tcp, pseudoHeaderSum(seg, pk.v6, len(tcp))))
		}

		encAt := w.putEncap(p.Buf, at, len(seg), o)
		start := w.putOuter(p.Buf, encAt, at+len(seg)-encAt, o, w.outerID(o), 0)
		if i == nseg-1 {
			p.Off, p.Len = start, at+len(seg)-start
			break
		}
		p.Emit.Emit(p.Buf, start, at+len(seg)-start) // a lost segment is counted by the link
	}
	p.VNet = VNetHdr{}
	countIn(e, pk.ipEnd-pk.l3)
	return DropNone
}

// pseudoHeaderSum returns the ones' complement sum of the TCP pseudo-header
// of the IP packet ip (IPv6 without extension headers) for a TCP segment of
// l4len bytes.
func pseudoHeaderSum(ip []byte, v6 bool, l4len int) uint16 {
	var s uint16
	if v6 {
		s = checksum.Checksum(ip[8:40], 0)
	} else {
		s = checksum.Checksum(ip[12:20], 0)
	}
	return checksum.Combine(s, checksum.Combine(uint16(header.TCPProtocolNumber), uint16(l4len)))
}
