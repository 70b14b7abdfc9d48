package forward

import (
	"encoding/binary"
	"net/netip"

	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
	"github.com/lvsd/lvsd/sched"
)

// Verdict says what the link must do with a processed frame.
type Verdict uint8

const (
	// Drop: discard the frame; the reason has been counted.
	Drop Verdict = iota
	// ToStack: deliver the (unmodified) frame to the netstack.
	ToStack
	// Transmit: write Buf[Off:Off+Len], with VNet, back to the link (after
	// the frames Process may have written through Packet.Emit).
	Transmit
	// Held: nothing to write or deliver. The frame was a fragment, whose
	// bytes lvsd copied to reassemble its datagram, or it completed one
	// whose frames all went out through Packet.Emit (see frag.go).
	Held
	// AwaitNeighbor: the frame, rewritten for its real server (or tunnel
	// endpoint) but for its destination MAC, which is not known yet, waits
	// for that MAC in Packet.Neigh's hold queue: the link copies it there
	// (lvs.Neighbor.Hold) and sends it once the netstack resolves the
	// neighbour, or drops it (no-neighbor) when the resolution fails, as
	// the kernel's neighbour layer queues packets on an unresolved
	// neighbour.
	AwaitNeighbor
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "drop"
	case ToStack:
		return "to-stack"
	case Transmit:
		return "transmit"
	case Held:
		return "held"
	case AwaitNeighbor:
		return "await-neighbor"
	}
	return "verdict?"
}

// Framing is what a link's frames start with: an Ethernet header or the IP
// header. (config.LinkType is the kind of device; TAP and PACKET devices
// have Ethernet framing, TUN devices IP framing.)
type Framing uint8

const (
	// Ethernet links (TAP devices) carry Ethernet II frames.
	Ethernet Framing = iota
	// IP links (TUN devices with IFF_NO_PI) carry bare IPv4 or IPv6 packets.
	IP
)

// VNetHdr is the virtio-net header (struct virtio_net_hdr, 10 bytes) that a
// TAP or TUN opened with IFF_VNET_HDR puts before every frame. The zero value
// means "complete checksum, not GSO". Offsets are from the start of the frame
// (the Ethernet header on a TAP, the IP header on a TUN).
type VNetHdr struct {
	Flags      uint8  // VirtioNetHdrFNeedsCsum, VirtioNetHdrFDataValid
	GSOType    uint8  // VirtioNetHdrGSO*
	HdrLen     uint16 // length of all headers (L2 to L4) of a GSO frame
	GSOSize    uint16 // payload bytes per segment of a GSO frame
	CsumStart  uint16 // offset where checksumming starts (the L4 header)
	CsumOffset uint16 // offset of the checksum field from CsumStart
}

// Decode reads the header from b, which holds at least VNetHdrLen bytes in
// the device's (little-endian) byte order.
func (h *VNetHdr) Decode(b []byte) {
	_ = b[VNetHdrLen-1]
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.LittleEndian.Uint16(b[2:])
	h.GSOSize = binary.LittleEndian.Uint16(b[4:])
	h.CsumStart = binary.LittleEndian.Uint16(b[6:])
	h.CsumOffset = binary.LittleEndian.Uint16(b[8:])
}

// Encode writes the header into the first VNetHdrLen bytes of b.
func (h *VNetHdr) Encode(b []byte) {
	_ = b[VNetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}

// virtio-net header constants from linux/virtio_net.h.
const (
	VNetHdrLen = 10

	VirtioNetHdrFNeedsCsum = 1
	VirtioNetHdrFDataValid = 2

	VirtioNetHdrGSONone  = 0
	VirtioNetHdrGSOTCPv4 = 1
	VirtioNetHdrGSOUDP   = 3
	VirtioNetHdrGSOTCPv6 = 4
	VirtioNetHdrGSOUDPL4 = 5
	VirtioNetHdrGSOECN   = 0x80
)

// Packet is one frame handed to Process. The reader owns Buf; the frame is
// Buf[Off:Off+Len] and Buf[:Off] is headroom that encapsulation may use.
// Process may change Off, Len and VNet for a Transmit verdict.
type Packet struct {
	Buf  []byte
	Off  int
	Len  int
	VNet VNetHdr
	// Emit, when not nil, writes extra frames to the link the frame came
	// from, before the Transmit verdict's own frame: a TCP super-frame
	// segmented for a TUN-mode real server, or an outer IPv4 packet in
	// fragments, leaves as several frames. Without it such packets are
	// dropped (DropUnsupported). The link sets it once per reader.
	Emit Emitter
	// Neigh is the neighbour slot whose MAC the frame waits for, set by
	// Process with the AwaitNeighbor verdict (and meaningless with any
	// other). The link starts every frame with it nil.
	Neigh *lvs.Neighbor
}

// Emitter writes frames to a link on behalf of Process. It is declared here,
// by its consumer; package stack implements it per reader.
type Emitter interface {
	// Emit writes the frame buf[off:off+n] to the link, with an empty
	// virtio-net header (a complete frame: no checksum or segmentation
	// offload), before it returns; Process may overwrite those bytes
	// afterwards. buf[off-EmitHeadroom:off] is scratch the link may
	// overwrite with its virtio-net header. An error means the frame is
	// lost; the link has counted it, and Process goes on.
	Emit(buf []byte, off, n int) error
}

// EmitHeadroom is the scratch space an Emitter may use in front of a frame.
const EmitHeadroom = VNetHdrLen

// Frame returns the frame bytes.
func (p *Packet) Frame() []byte { return p.Buf[p.Off : p.Off+p.Len] }

// DropReason says why a frame was dropped. Every drop is counted by reason.
type DropReason uint8

const (
	DropNone           DropReason = iota
	DropTruncated                 // shorter than the headers it claims
	DropBadIPHeader               // bad version, IHL or total length
	DropBadIPChecksum             // IPv4 header checksum wrong
	DropBadL4Header               // bad TCP data offset, UDP length, ...
	DropFragment                  // fragment that cannot be reassembled: bad length, datagram over 64 KiB, ECN mix
	DropNoDest                    // no usable real server for a new connection
	DropNoNeighbor                // real server's MAC not resolved: its resolution failed while the frame waited (AwaitNeighbor), or the frame cannot wait (a super-frame or fragments to a TUN endpoint, a reassembled datagram, no neighbour slot)
	DropTableFull                 // connection table at its limit
	DropBadVNetHdr                // virtio-net header inconsistent with the frame
	DropTTLExceeded               // TTL/hop limit would reach zero: answered with ICMP time exceeded (see timeExceeded)
	DropUnsupported               // forwarding method or GSO type not supported for this frame
	DropOtherHost                 // unicast frame for another MAC (a TAP on a bridge sees flooded traffic)
	DropTooBig                    // too big for the tunnel and not to be fragmented: answered with an ICMP error (see tunnel)
	DropSourceLimit               // new connection from a client prefix that holds [connections] per_source connections
	DropSourceRate                // new connection from a client prefix over [connections] per_source_rate this second
	DropV4Mapped                  // IPv6 packet with an IPv4-mapped source or destination (::ffff:a.b.c.d): never valid on the wire
	DropRSTWindow                 // RST of a NAT connection outside its receiver's window (a blind reset; [connections] check_rst)
	DropFragTimeout               // fragment of a datagram not complete within the reassembly timeout
	DropFragOverlap               // fragment of a datagram discarded for overlapping fragments
	DropFragDup                   // fragment whose bytes were all received already (the datagram goes on)
	DropFragLimit                 // fragment beyond the reassembly memory, queue or per-datagram fragment limit
	DropSynproxyCookie            // ACK to a SYN-proxy service, without a connection, whose acknowledgment number is no valid cookie (forged, expired, or its connection gone)
	DropSynproxyFlags             // segment to a SYN-proxy service, without a connection, that neither opens one (SYN) nor completes one (ACK)
	DropSynproxyState             // real server's segment of a SYN-proxy connection before its SYN-ACK, or a SYN-ACK that acknowledges another number
	DropNeighborQueue             // frame waiting for its neighbour's MAC, dropped (oldest first) from the neighbour's full hold queue; counted by the link (package stack), never by Process
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropNone:           "none",
	DropTruncated:      "truncated",
	DropBadIPHeader:    "bad-ip-header",
	DropBadIPChecksum:  "bad-ip-checksum",
	DropBadL4Header:    "bad-l4-header",
	DropFragment:       "fragment",
	DropNoDest:         "no-dest",
	DropNoNeighbor:     "no-neighbor",
	DropTableFull:      "table-full",
	DropBadVNetHdr:     "bad-vnet-hdr",
	DropTTLExceeded:    "ttl-exceeded",
	DropUnsupported:    "unsupported",
	DropOtherHost:      "other-host",
	DropTooBig:         "too-big",
	DropSourceLimit:    "source-limit",
	DropSourceRate:     "source-rate",
	DropV4Mapped:       "v4-mapped",
	DropRSTWindow:      "rst-window",
	DropFragTimeout:    "frag-timeout",
	DropFragOverlap:    "frag-overlap",
	DropFragDup:        "frag-dup",
	DropFragLimit:      "frag-limit",
	DropSynproxyCookie: "synproxy-cookie",
	DropSynproxyFlags:  "synproxy-flags",
	DropSynproxyState:  "synproxy-state",
	DropNeighborQueue:  "neighbor-queue-full",
}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Service is a virtual service in a Config snapshot. Immutable once the
// snapshot is published, except for the atomic counters inside it and its
// destinations.
//
// A service over several ports appears in Config.Services under the key of
// each of its ports (Ports), or under port 0 for all ports of its address
// (IPVS's port-zero service); a packet to a port without a service of its own
// finds the port-0 service of its address, if any. The destinations of such a
// service have port 0: each connection keeps the port the client addressed.
type Service struct {
	Key   lvs.ServiceKey // Port is 0 for a service over several ports
	Dests []*lvs.Dest
	Sched sched.Picker
	// Stats are the service's counters. The control plane passes the same
	// object to every snapshot of the service, so that they survive reloads
	// (connections keep counting into the object they started with); nil
	// gets a fresh one at SetConfig.
	Stats *lvs.Stats
	// Ports are the ports of a service over a list of ports, in the
	// configuration's order; nil for a one-port or all-ports service.
	Ports []uint16

	// Persist is the persistence of the service (ipvsadm -p and -M), or nil
	// when it is not persistent. Policies of all services share one
	// persist.Table.
	Persist *persist.Policy
	// OnePacket is ipvsadm -o: every UDP datagram is scheduled on its own
	// (through the persistence template, if any) and leaves no connection
	// entry. It applies to DR and TUN destinations only: a NAT reply needs
	// the entry to be translated back, so NAT destinations keep entries.
	OnePacket bool
	// Synproxy is an lvsd extension after DPVS: the director answers SYNs
	// to the service itself with SYN cookies and opens the connection to
	// the real server only on the client's valid ACK (synproxy.go), so
	// that spoofed SYNs cost no connection entry. NAT TCP services only:
	// a connection scheduled to a DR or TUN destination is dropped
	// (DropUnsupported).
	Synproxy bool
}

// Config is an immutable snapshot of the forwarding configuration. A reload
// builds a new one and publishes it with Forwarder.SetConfig.
//
// After SetConfig the snapshot, its map and its services must not be modified
// (their atomic counters and destinations' atomics excepted).
type Config struct {
	Services map[lvs.ServiceKey]*Service
	// Source returns the director's own address toward a real server (the
	// preferred source of its route to it: config.Interface.Source), or the
	// zero Addr when the interface has no address of its family. It is the
	// outer source of TUN packets and the source of the ICMP errors lvsd
	// sends toward real servers. SetConfig calls it once for the address of
	// every real server in Services and keeps the answers; Process calls it
	// only for an address that is none of them (an ICMP error about a
	// packet from elsewhere), so it must be safe for concurrent use and not
	// allocate. nil means no source: TUN packets are dropped
	// (DropUnsupported).
	Source func(dst netip.Addr) netip.Addr
	// SloppyTCP is IPVS's sloppy_tcp: a TCP segment without SYN (and
	// without RST) to a service, that matches no connection, is scheduled
	// and opens one, as a SYN does; its state follows IPVS's table for its
	// flags (an ACK from no state gives CLOSE, which the flow's segments
	// keep). Off, such a segment goes to the netstack, which answers it
	// with a RST.
	SloppyTCP bool
}
