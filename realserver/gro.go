package realserver

import (
	"bytes"
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Receive coalescing (GRO in user space). The director cuts every TCP
// super-frame into MTU-sized IPIP segments (the virtio-net header has no IPIP
// offload type); a batch of received segments of one TCP flow that follow
// each other is joined here into one super-frame, written into the TUN once
// with a virtio-net header that says what a NIC's GRO would: a GSO frame of
// gsoSize segments whose TCP checksum is partial. The host's kernel then
// takes the whole flight as one packet, as it takes one from a NIC.
//
// Segments join a super-frame only when the result is what the sender's TCP
// would have sent as one TSO frame, by the rules the kernel's GRO applies:
//   - IPv4 without fragmentation, the same header length, DS field, TTL, DF
//     and options; IPv6 with TCP as next header (no extension headers), the
//     same traffic class, flow label and hop limit; the same addresses;
//   - TCP of the same ports, with the same acknowledgment number, window,
//     header length and options (timestamps included), and flags that differ
//     at most in PSH and FIN; no SYN, RST, URG or CWR on any of them;
//   - each segment's sequence number follows the bytes joined so far, its
//     payload is not empty and at most the first one's (the super-frame's
//     gsoSize); a shorter segment, or one with PSH or FIN, is the last;
//   - every segment's IPv4 header checksum and TCP checksum verify (the
//     super-frame's partial checksum would otherwise hide a corrupt one: the
//     kernel trusts it); a segment that does not verify passes through as it
//     is, and the kernel drops it as it would have;
//   - the super-frame stays within 65,535 bytes of IP packet.
//
// Everything else (other protocols, fragments, SYNs, pure ACKs, segments out
// of order) passes through unchanged, with an empty virtio-net header. Within
// a flow the order of packets is kept: a packet that does not join its flow's
// open super-frame closes it and goes after it.

// virtio-net header (struct virtio_net_hdr, little-endian on the hosts lvsd
// runs on: the TUN is opened without IFF_VNET_BE).
const (
	vnetHdrLen       = 10
	vnetNeedsCsum    = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSOTCPv4     = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOTCPv6     = 4 // VIRTIO_NET_HDR_GSO_TCPV6
	tcpCsumOffset    = 16
	maxIPPacket      = 65535
	ipProtoTCP       = 6
	tcpFlagFIN       = 0x01
	tcpFlagSYN       = 0x02
	tcpFlagRST       = 0x04
	tcpFlagPSH       = 0x08
	tcpFlagURG       = 0x20
	tcpFlagCWR       = 0x80
	tcpFlagsNoMerge  = tcpFlagSYN | tcpFlagRST | tcpFlagURG | tcpFlagCWR
	tcpFlagsLastOnly = tcpFlagFIN | tcpFlagPSH
)

// groItem is one frame to write: a packet as it came, or a super-frame being
// built in the buffer of its first segment.
type groItem struct {
	buf        []byte // the first segment's slot; the frame is buf[start:end], its virtio-net header before start
	start, end int
	segs       int  // packets in the frame
	tcp        bool // a TCP segment that may take more (the fields below are set)
	open       bool // more segments may join
	verified   bool // the first segment's checksums verified
	v6         bool
	ipLen      int    // IP header bytes
	hdrLen     int    // IP and TCP header bytes
	gsoSize    int    // payload bytes of the first segment
	nextSeq    uint32 // sequence number the next segment must have
	lastFlags  uint8  // PSH and FIN of the last segment joined
}

// coalescer joins the segments of one batch. It is owned by one receiving
// goroutine and reused batch after batch; it does not allocate.
type coalescer struct {
	items []groItem // in arrival order; cap is the batch size
}

func newCoalescer(batch int) *coalescer {
	return &coalescer{items: make([]groItem, 0, batch)}
}

// add takes the inner packet buf[start:end] (a valid IPv4 or IPv6 packet as
// decap returns it, with at least vnetHdrLen bytes of buf before start for
// the virtio-net header). buf must stay untouched until flush, and have room
// after end: a super-frame grows in the buffer of its first segment, up to
// len(buf). Nothing is copied out of buf.
func (c *coalescer) add(buf []byte, start, end int) {
	pkt := buf[start:end]
	it := groItem{buf: buf, start: start, end: end, segs: 1}
	seq, plen, ok := it.parseTCP(pkt)
	if !ok {
		c.items = append(c.items, it)
		return
	}
	// The flow's latest frame, if any.
	for i := len(c.items) - 1; i >= 0; i-- {
		o := &c.items[i]
		if !o.tcp || !sameFlow(o, pkt, it.v6) {
			continue
		}
		if o.open && o.join(pkt, seq, plen) {
			return
		}
		o.open = false // keep the flow's order: nothing joins a frame before this packet
		break
	}
	it.nextSeq = seq + uint32(plen)
	it.gsoSize = plen
	it.open = it.lastFlags == 0
	c.items = append(c.items, it)
}

// parseTCP fills it's TCP fields when pkt is a TCP segment that may start a
// super-frame, and returns its sequence number and payload length.
func (it *groItem) parseTCP(pkt []byte) (seq uint32, plen int, ok bool) {
	var ipLen int
	if pkt[0]>>4 == 4 {
		ipLen = int(pkt[0]&0xf) * 4
		if pkt[9] != ipProtoTCP || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
			return 0, 0, false // not TCP, or a fragment
		}
	} else {
		it.v6 = true
		ipLen = 40
		if pkt[6] != ipProtoTCP {
			return 0, 0, false // extension headers, or not TCP
		}
	}
	if len(pkt) < ipLen+20 {
		return 0, 0, false
	}
	tcp := pkt[ipLen:]
	tcpLen := int(tcp[12]>>4) * 4
	if tcpLen < 20 || tcpLen > len(tcp) {
		return 0, 0, false
	}
	flags := tcp[13]
	plen = len(pkt) - ipLen - tcpLen
	if flags&tcpFlagsNoMerge != 0 || plen == 0 {
		return 0, 0, false
	}
	it.tcp = true
	it.ipLen, it.hdrLen = ipLen, ipLen+tcpLen
	it.lastFlags = flags & tcpFlagsLastOnly
	return binary.BigEndian.Uint32(tcp[4:8]), plen, true
}

// sameFlow reports whether pkt (TCP, of family v6) has o's addresses and
// ports.
func sameFlow(o *groItem, pkt []byte, v6 bool) bool {
	if o.v6 != v6 {
		return false
	}
	first := o.buf[o.start:o.end]
	if v6 {
		return bytes.Equal(first[8:40], pkt[8:40]) && bytes.Equal(first[40:44], pkt[40:44])
	}
	ipLen := int(pkt[0]&0xf) * 4
	return bytes.Equal(first[12:20], pkt[12:20]) && bytes.Equal(first[o.ipLen:o.ipLen+4], pkt[ipLen:ipLen+4])
}

// join appends pkt's payload to the super-frame o when the rules above allow
// it, and reports whether it did.
func (o *groItem) join(pkt []byte, seq uint32, plen int) bool {
	first := o.buf[o.start:o.end]
	if !o.v6 && int(pkt[0]&0xf)*4 != o.ipLen {
		return false // other IP options
	}
	if seq != o.nextSeq || plen > o.gsoSize || int(pkt[o.ipLen+12]>>4)*4 != o.hdrLen-o.ipLen {
		return false
	}
	if o.end-o.start+plen > maxIPPacket || o.end+plen > len(o.buf) {
		return false
	}
	// IP fields that must match.
	if o.v6 {
		if !bytes.Equal(first[0:4], pkt[0:4]) || first[7] != pkt[7] {
			return false
		}
	} else if first[1] != pkt[1] || first[8] != pkt[8] || first[6]&0x40 != pkt[6]&0x40 ||
		!bytes.Equal(first[20:o.ipLen], pkt[20:o.ipLen]) {
		return false
	}
	// TCP: acknowledgment, header length and flags but PSH/FIN, window;
	// options.
	ft, pt := first[o.ipLen:o.hdrLen], pkt[o.ipLen:o.hdrLen]
	if !bytes.Equal(ft[8:12], pt[8:12]) || ft[12] != pt[12] || ft[13]&^tcpFlagsLastOnly != pt[13]&^tcpFlagsLastOnly ||
		!bytes.Equal(ft[14:16], pt[14:16]) || !bytes.Equal(ft[20:], pt[20:]) {
		return false
	}
	if !segmentValid(pkt, o.ipLen, o.v6) {
		return false
	}
	if !o.verified {
		if !segmentValid(first, o.ipLen, o.v6) {
			o.tcp = false // passes through as it is
			return false
		}
		o.verified = true
	}
	o.end += copy(o.buf[o.end:o.end+plen], pkt[o.hdrLen:])
	o.segs++
	o.nextSeq += uint32(plen)
	o.lastFlags = pt[13] & tcpFlagsLastOnly
	if plen < o.gsoSize || o.lastFlags != 0 {
		o.open = false
	}
	return true
}

// segmentValid reports whether the IPv4 header checksum (IPv4) and the TCP
// checksum of the segment pkt, of ipLen bytes of IP header, verify.
func segmentValid(pkt []byte, ipLen int, v6 bool) bool {
	if !v6 && checksum.Checksum(pkt[:ipLen], 0) != 0xffff {
		return false
	}
	return checksum.Checksum(pkt[ipLen:], pseudoSum(pkt, ipLen, v6, len(pkt)-ipLen)) == 0xffff
}

// pseudoSum is the ones' complement sum of the TCP pseudo-header of the IP
// packet pkt for l4len bytes of TCP.
func pseudoSum(pkt []byte, ipLen int, v6 bool, l4len int) uint16 {
	var s uint16
	if v6 {
		s = checksum.Checksum(pkt[8:40], 0)
	} else {
		s = checksum.Checksum(pkt[12:20], 0)
	}
	s = checksum.Combine(s, ipProtoTCP)
	return checksum.Combine(s, uint16(l4len))
}

// frame finishes item it and returns it with its virtio-net header in front:
// a super-frame gets its IP length, IPv4 header checksum, the last segment's
// PSH and FIN, and a partial TCP checksum (the pseudo-header's sum) that the
// header asks the kernel to treat as offloaded; a single packet gets an empty
// header and goes as it came.
func (it *groItem) frame() []byte {
	h := it.buf[it.start-vnetHdrLen : it.start]
	clear(h)
	pkt := it.buf[it.start:it.end]
	if it.segs > 1 {
		n := len(pkt)
		tcp := pkt[it.ipLen:]
		if it.v6 {
			binary.BigEndian.PutUint16(pkt[4:6], uint16(n-40))
			h[1] = vnetGSOTCPv6
		} else {
			binary.BigEndian.PutUint16(pkt[2:4], uint16(n))
			pkt[10], pkt[11] = 0, 0
			binary.BigEndian.PutUint16(pkt[10:12], ^checksum.Checksum(pkt[:it.ipLen], 0))
			h[1] = vnetGSOTCPv4
		}
		tcp[13] = tcp[13]&^tcpFlagsLastOnly | it.lastFlags
		binary.BigEndian.PutUint16(tcp[16:18], pseudoSum(pkt, it.ipLen, it.v6, n-it.ipLen))
		h[0] = vnetNeedsCsum
		binary.LittleEndian.PutUint16(h[2:4], uint16(it.hdrLen))
		binary.LittleEndian.PutUint16(h[4:6], uint16(it.gsoSize))
		binary.LittleEndian.PutUint16(h[6:8], uint16(it.ipLen))
		binary.LittleEndian.PutUint16(h[8:10], tcpCsumOffset)
	}
	return it.buf[it.start-vnetHdrLen : it.end]
}

// flush hands every frame of the batch, in order, to write with the number
// of packets it carries, and empties the coalescer.
func (c *coalescer) flush(write func(frame []byte, segs int)) {
	for i := range c.items {
		it := &c.items[i]
		write(it.frame(), it.segs)
	}
	clear(c.items) // drop the buffer references
	c.items = c.items[:0]
}
