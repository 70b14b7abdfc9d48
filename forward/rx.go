package forward

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
)

// parsed is what Process learns about a frame. One lives in each Worker and
// is overwritten by every call. Offsets are from the start of the frame.
// Every field is valid once parse has returned parsedL4 (for parsedICMP:
// all but the ports and flags, which are zero).
type parsed struct {
	t      lvs.Tuple
	l3, l4 int     // offsets of the IP and TCP/UDP headers
	ipEnd  int     // end of the IP packet: Ethernet padding lies beyond
	v6     bool    // IPv6 (else IPv4)
	flags  uint8   // TCP flags; zero for UDP
	srcMAC lvs.MAC // source MAC; zero on IP links
	// answered is set when the packet is dropped and p holds the ICMP
	// error that answers it, to be transmitted instead (timeExceeded).
	answered bool
	// fh and nh are, for an IPv6 fragment (parse returned parsedFrag), the
	// offsets of its fragment header and of the next-header byte naming it.
	fh, nh int
}

// parseResult is what parse learned about a frame: not a Verdict, but
// which path of Process takes it.
type parseResult uint8

const (
	// parsedDrop: a frame to drop, for the DropReason returned with it.
	parsedDrop parseResult = iota
	// parsedLocal: a frame for the netstack (ARP, the director's own
	// traffic, protocols lvsd does not forward).
	parsedLocal
	// parsedL4: a TCP or UDP packet; w.pk describes it.
	parsedL4
	// parsedICMP: an ICMP packet that may be an error about a connection,
	// for icmpError.
	parsedICMP
	// parsedFrag: an IPv4 or IPv6 fragment, for reassembly (frag.go);
	// w.pk has its addresses, protocol and offsets (fh and nh for IPv6).
	parsedFrag
)

// Process decides what to do with the frame p.Buf[p.Off:p.Off+p.Len], which
// starts with an Ethernet header or an IP header as Options.Link says, and,
// for a Transmit verdict, rewrites it in place for the link: p.Off, p.Len and
// p.VNet then describe the frame to write. For Drop the reason is counted;
// for ToStack the frame is unmodified.
//
// p.Buf stays the caller's: Process never retains it nor p. For packets of
// known connections Process takes only one connection-table shard read lock
// and allocates nothing; a new connection allocates nothing either once the
// table has grown to its working size (its entry reuses a freed slab slot).
func (w *Worker) Process(p *Packet) Verdict {
	if p.Off < 0 || p.Len < 0 || p.Off > len(p.Buf) || p.Len > len(p.Buf)-p.Off {
		return w.drop(DropTruncated)
	}
	b := p.Buf[p.Off : p.Off+p.Len]
	s := w.f.snap.Load()
	switch res, r := w.parse(b, s); res {
	case parsedDrop:
		return w.drop(r)
	case parsedLocal:
		return w.toStack()
	case parsedICMP:
		return w.icmpError(p, b, s)
	case parsedFrag:
		return w.fragment(p, b)
	}

	pk := &w.pk
	tab := w.f.table
	now := tab.Now()
	e := w.ent
	found, reply := tab.LookupInto(&pk.t, e)
	if w.dry != nil {
		w.dry.lookedUp(e, found, reply, now)
	}
	if found && !reply {
		// IPVS's checks at the lookup (ip_vs_in), before any state change:
		// a connection whose real server was removed (expire_nodest_conn),
		// and a new SYN on a closed connection (the client reuses its port),
		// leave the table, and the packet is scheduled as a new one.
		var res conntrack.CheckResult
		if w.dry == nil {
			res = tab.Check(e, pk.flags)
		} else {
			res = w.dry.checked(tab.CheckDry(e, pk.flags))
		}
		switch res {
		case conntrack.Reschedule:
			found = false
		case conntrack.DropPacket:
			return w.dropLog(DropNoDest)
		}
	}
	if !found {
		if pk.t.Proto == lvs.TCP {
			if svc := w.synproxyService(s); svc != nil {
				return w.synproxyNew(p, b, svc, s, now)
			}
		}
		var (
			v Verdict
			r DropReason
		)
		if e, v, r = w.newConn(s, now); e == nil {
			if v == ToStack {
				return w.toStack()
			}
			return w.dropLog(r)
		}
		if e.Method == lvs.NAT && pk.t.Proto == lvs.TCP {
			// (A dry run's entry is not in the table: Track changes
			// nothing.)
			tab.Track(e, w.segment(b), true) // the client's SYN: its ISN and window scale
		}
	} else if e.Synproxy {
		return w.synproxyFound(p, b, e, reply, s, now)
	} else if w.dry == nil {
		// A dry run neither moves the connection's state and timer nor
		// checks a RST against its window (Track would record it).
		if e.Method == lvs.NAT && pk.t.Proto == lvs.TCP && !tab.Track(e, w.segment(b), !reply) {
			// A blind RST: out of the window its receiver accepts.
			return w.drop(DropRSTWindow)
		}
		tab.Update(e, pk.flags, !reply, now)
	}

	var r DropReason
	switch {
	case reply:
		r = w.natOut(p, b, e, s)
	case e.Method == lvs.NAT:
		r = w.natIn(p, b, e)
	case e.Method == lvs.DR:
		r = w.dr(p, b, e)
	case e.Method == lvs.TUN:
		r = w.tunnel(p, b, e, s)
	default:
		r = DropUnsupported
	}
	return w.finish(p, r, reply)
}

// finish turns the outcome r of forwarding a packet (reply: from a real
// server to a client) into Process's verdict, and counts it. A packet
// forwarded to a neighbour whose MAC is not known (p.Neigh set) waits for
// it: the link counts it from then on (it is not ForwardedIn yet).
func (w *Worker) finish(p *Packet, r DropReason, reply bool) Verdict {
	switch r {
	case DropNone:
		if p.Neigh != nil {
			return AwaitNeighbor
		}
	case DropTTLExceeded:
		w.drop(r)
		if w.pk.answered {
			return Transmit // the ICMP time exceeded in p
		}
		return Drop
	case DropTooBig:
		// The packet is dropped, and p now holds the ICMP error that
		// tells its sender (see Worker.tooBig).
		w.drop(r)
		return Transmit
	default:
		return w.dropLog(r)
	}
	if reply {
		w.c.fwdOut.inc()
	} else {
		w.c.fwdIn.inc()
	}
	return Transmit
}

// parse validates the frame's headers up to TCP or UDP and fills w.pk. It
// returns parsedDrop with the reason, or another result with DropNone.
func (w *Worker) parse(b []byte, s *snapshot) (parseResult, DropReason) {
	pk := &w.pk
	pk.answered = false
	l3 := 0
	var version uint8
	if w.f.link == Ethernet {
		if len(b) < header.EthernetMinimumSize {
			return parsedDrop, DropTruncated
		}
		// Unicast to another MAC: a TAP on a bridge sees flooded frames for
		// other hosts, which must never be forwarded.
		if b[0]&1 == 0 && lvs.MAC(b[0:6]) != w.f.mac {
			return parsedDrop, DropOtherHost
		}
		if b[0]&1 != 0 {
			// Broadcast and multicast frames are never forwarded: IPVS
			// handles only packets addressed to the host (PACKET_HOST).
			return parsedLocal, DropNone
		}
		pk.srcMAC = lvs.MAC(b[6:12])
		switch binary.BigEndian.Uint16(b[12:14]) {
		case uint16(header.IPv4ProtocolNumber):
			version = header.IPv4Version
		case uint16(header.IPv6ProtocolNumber):
			version = header.IPv6Version
		default:
			// ARP, VLAN-tagged frames, LLDP, ...: the netstack's business.
			return parsedLocal, DropNone
		}
		l3 = header.EthernetMinimumSize
	} else {
		if len(b) == 0 {
			return parsedDrop, DropTruncated
		}
		pk.srcMAC = lvs.MAC{}
		version = b[0] >> 4
	}
	pk.l3 = l3
	switch version {
	case header.IPv4Version:
		return w.parseIPv4(b, s)
	case header.IPv6Version:
		return w.parseIPv6(b)
	}
	return parsedDrop, DropBadIPHeader
}

func (w *Worker) parseIPv4(b []byte, s *snapshot) (parseResult, DropReason) {
	pk := &w.pk
	ip := header.IPv4(b[pk.l3:])
	if !ip.IsValid(len(ip)) {
		switch {
		case len(ip) < header.IPv4MinimumSize:
			return parsedDrop, DropTruncated
		case header.IPVersion(ip) != header.IPv4Version,
			ip.HeaderLength() < header.IPv4MinimumSize,
			ip.TotalLength() < uint16(ip.HeaderLength()):
			return parsedDrop, DropBadIPHeader
		}
		return parsedDrop, DropTruncated // total length beyond the frame
	}
	if !ip.IsChecksumValid() {
		return parsedDrop, DropBadIPChecksum
	}
	pk.v6 = false
	pk.l4 = pk.l3 + int(ip.HeaderLength())
	pk.ipEnd = pk.l3 + int(ip.TotalLength())
	pk.t.Src = lvs.AddrFrom4(ip[12:16])
	pk.t.Dst = lvs.AddrFrom4(ip[16:20])
	if ip.FragmentOffset() != 0 || ip.More() {
		// Reassembled first, as the kernel does before IPVS (frag.go).
		pk.t.Proto = lvs.Proto(ip.Protocol())
		return parsedFrag, DropNone
	}
	return w.parseL4(b, ip.Protocol())
}

// parseIPv6 skips the packet's extension headers as IPVS does (walkIPv6);
// a fragment is handed to reassembly.
func (w *Worker) parseIPv6(b []byte) (parseResult, DropReason) {
	pk := &w.pk
	ip := header.IPv6(b[pk.l3:])
	switch {
	case len(ip) < header.IPv6MinimumSize:
		return parsedDrop, DropTruncated
	case header.IPVersion(ip) != header.IPv6Version:
		return parsedDrop, DropBadIPHeader
	case !ip.IsValid(len(ip)):
		return parsedDrop, DropTruncated // payload length beyond the frame
	}
	pk.v6 = true
	pk.ipEnd = pk.l3 + header.IPv6MinimumSize + int(ip.PayloadLength())
	pk.t.Src = lvs.AddrFrom16(ip[8:24])
	pk.t.Dst = lvs.AddrFrom16(ip[24:40])
	if isV4(&pk.t.Src) || isV4(&pk.t.Dst) {
		// An lvs.Addr holds an IPv4 address as ::ffff:a.b.c.d, so such a
		// packet would match the IPv4 services and connections of that
		// address and be translated as theirs: a cross-family spoof.
		// IPv4-mapped addresses never appear on the wire (RFC 4291
		// 2.5.5.2; the kernel drops them as a source too).
		return parsedDrop, DropV4Mapped
	}
	var h ipv6Headers
	if !walkIPv6(b[pk.l3:pk.ipEnd], &h) {
		return parsedDrop, DropTruncated
	}
	pk.l4 = pk.l3 + h.l4
	if h.fh != 0 {
		pk.fh, pk.nh = pk.l3+h.fh, pk.l3+h.nh
		pk.t.Proto = lvs.Proto(h.proto)
		return parsedFrag, DropNone
	}
	return w.parseL4(b, h.proto)
}

func (w *Worker) parseL4(b []byte, proto uint8) (parseResult, DropReason) {
	pk := &w.pk
	l4 := b[pk.l4:pk.ipEnd]
	switch proto {
	case uint8(header.TCPProtocolNumber):
		if len(l4) < header.TCPMinimumSize {
			return parsedDrop, DropTruncated
		}
		tcp := header.TCP(l4)
		if off := int(tcp.DataOffset()); off < header.TCPMinimumSize || off > len(l4) {
			return parsedDrop, DropBadL4Header
		}
		pk.t.SPort, pk.t.DPort = tcp.SourcePort(), tcp.DestinationPort()
		pk.flags = l4[header.TCPFlagsOffset]
	case uint8(header.UDPProtocolNumber):
		if len(l4) < header.UDPMinimumSize {
			return parsedDrop, DropTruncated
		}
		udp := header.UDP(l4)
		if n := int(udp.Length()); n < header.UDPMinimumSize || n > len(l4) {
			return parsedDrop, DropBadL4Header
		}
		pk.t.SPort, pk.t.DPort = udp.SourcePort(), udp.DestinationPort()
		pk.flags = 0
	case uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		// An ICMP error about a connection is forwarded (icmperr.go); the
		// rest of ICMP is the netstack's.
		if (proto == uint8(header.ICMPv6ProtocolNumber)) != pk.v6 {
			return parsedLocal, DropNone
		}
		pk.t.SPort, pk.t.DPort, pk.flags = 0, 0, 0
		pk.t.Proto = lvs.Proto(proto)
		return parsedICMP, DropNone
	default:
		// SCTP, ...: the netstack's.
		return parsedLocal, DropNone
	}
	pk.t.Proto = lvs.Proto(proto)
	return parsedL4, DropNone
}

// newConn handles a packet without a connection: a packet to a virtual
// service creates one, anything else goes to the netstack. It returns the new
// entry, or nil with the verdict (ToStack or Drop) and drop reason.
//
// A persistent service (Service.Persist) sends the client to the real server
// of its template, and asks the scheduler only for a client without a valid
// template, binding the choice in a new one (IPVS's ip_vs_sched_persist). The
// connection then holds the template until it leaves the table.
//
// A datagram of a one-packet service (Service.OnePacket) is scheduled on its
// own and leaves no entry: the entry returned is the worker's scratch entry,
// valid until the next call.
func (w *Worker) newConn(s *snapshot, now int64) (*conntrack.Entry, Verdict, DropReason) {
	pk := &w.pk
	svc := s.service(lvs.ServiceKey{Addr: pk.t.Dst, Port: pk.t.DPort, Proto: pk.t.Proto})
	if svc == nil {
		// The director's own traffic: health-check replies, its services.
		return nil, ToStack, DropNone
	}
	if pk.t.Proto == lvs.TCP && !s.schedules(pk.flags) {
		// As IPVS (tcp_conn_schedule): only a SYN without RST opens a
		// connection (with sloppy_tcp, any segment without RST), and the
		// rest goes to the director's own stack, before any scheduling or
		// persistence. The netstack holds the VIP and has no socket on it:
		// it answers a stray ACK, FIN or data segment (after the connection
		// expired, or lvsd restarted) with a RST, so that the client gives
		// up at once instead of retransmitting; a RST it ignores.
		return nil, ToStack, DropNone
	}
	if svc.Sched == nil {
		return nil, Drop, DropNoDest
	}
	// The per-source limits come before the scheduler, so that a client
	// over them moves no scheduler state and takes no template.
	var err error
	if w.dry == nil {
		err = w.f.table.Admit(&pk.t.Src, now)
	} else {
		err = w.f.table.AdmitDry(&pk.t.Src, now)
	}
	switch err {
	case nil:
	case conntrack.ErrSourceRate:
		return nil, Drop, DropSourceRate
	default:
		return nil, Drop, DropSourceLimit
	}
	// IPVS answers "no destination" with an ICMP port unreachable
	// (ip_vs_leave); lvsd only drops for now.
	var (
		d  *lvs.Dest
		tp *persist.Template
	)
	if w.dry != nil {
		// The same decision, committing nothing (trace.go).
		if d = w.dry.choose(svc, &pk.t, now); d == nil {
			return nil, Drop, DropNoDest
		}
	} else if pp := svc.Persist; pp != nil {
		key := pp.Key(&pk.t)
		if tp = pp.Table.Get(&key, now); tp == nil {
			if d = svc.Sched.Schedule(&pk.t); d == nil {
				return nil, Drop, DropNoDest
			}
			var err error
			if tp, err = pp.Table.Create(&key, d, pp.Timeout, now); err != nil {
				return nil, Drop, DropTableFull
			}
		}
		d = tp.Dest
	} else if d = svc.Sched.Schedule(&pk.t); d == nil {
		return nil, Drop, DropNoDest
	}
	if r := w.canForward(d, s); r != DropNone {
		release(tp)
		return nil, Drop, r
	}
	if w.dry != nil {
		return w.dryEntry(d, svc), Transmit, DropNone
	}
	if svc.OnePacket && pk.t.Proto == lvs.UDP && d.Method != lvs.NAT {
		// IPVS's one-packet scheduling: the connection would end with this
		// datagram, and so does its control of the template (whose timer the
		// lookup restarted).
		release(tp)
		d.Stats.Conns.Add(1)
		svc.Stats.Conns.Add(1)
		return w.onePacket(d, svc), Transmit, DropNone
	}
	var ctl conntrack.Controller
	if tp != nil {
		ctl = tp
	}
	e := w.ent
	var created bool
	if w.spOn {
		created, err = w.f.table.InsertSynproxy(e, &pk.t, d, svc.Stats, pk.srcMAC, now, ctl, &w.spIns)
	} else {
		created, err = w.f.table.InsertInto(e, &pk.t, d, svc.Stats, pk.srcMAC, now, ctl)
	}
	if err != nil {
		release(tp)
		return nil, Drop, DropTableFull
	}
	if created {
		d.Stats.Conns.Add(1)
		svc.Stats.Conns.Add(1)
		w.c.newConns.inc()
	} else {
		// Another reader created the connection first, with its own
		// template reference.
		release(tp)
	}
	w.f.table.Update(e, pk.flags, true, now)
	return e, Transmit, DropNone
}

// schedules reports whether a TCP segment with flags, matching no
// connection, may open one: a SYN without RST, or with sloppy_tcp any
// segment without RST.
func (s *snapshot) schedules(flags uint8) bool {
	if flags&conntrack.FlagRST != 0 {
		return false
	}
	return flags&conntrack.FlagSYN != 0 || s.sloppyTCP
}

// segment fills the worker's Segment from the TCP header of the parsed
// frame b, for the table's window checks (conntrack.Table.Track).
func (w *Worker) segment(b []byte) *conntrack.Segment {
	pk := &w.pk
	tcp := header.TCP(b[pk.l4:pk.ipEnd])
	off := int(tcp.DataOffset()) // parse checked it lies within the packet
	sg := &w.seg
	sg.Flags = pk.flags
	sg.Seq = tcp.SequenceNumber()
	sg.Win = tcp.WindowSize()
	sg.Len = uint32(len(tcp) - off)
	sg.WScale = -1
	if pk.flags&conntrack.FlagSYN != 0 {
		sg.Len++
		sg.WScale = int8(header.ParseSynOptions(tcp[header.TCPMinimumSize:off], pk.flags&conntrack.FlagACK != 0).WS)
	}
	if pk.flags&conntrack.FlagFIN != 0 {
		sg.Len++
	}
	return sg
}

// release ends a template's control of a connection that was not created.
func release(tp *persist.Template) {
	if tp != nil {
		tp.Release()
	}
}

// onePacket fills the worker's scratch entry for a one-packet datagram of
// w.pk to d and returns it. Nothing else refers to it; the next call
// overwrites it.
func (w *Worker) onePacket(d *lvs.Dest, svc *Service) *conntrack.Entry {
	e := &w.ops
	e.In = w.pk.t
	e.Out = lvs.Tuple{}
	e.Dest = d
	e.Svc = svc.Stats
	e.ClientMAC = w.pk.srcMAC
	e.Method = d.Method
	e.Control = nil
	return e
}

// service returns the virtual service of packets to k: the service of k's
// port, or else the address's all-ports service (port 0), if any.
func (s *snapshot) service(k lvs.ServiceKey) *Service {
	if svc := s.services[k]; svc != nil {
		return svc
	}
	k.Port = 0
	return s.services[k]
}

// canForward checks, before a connection is created, that packets of w.pk can
// be forwarded to d at all.
func (w *Worker) canForward(d *lvs.Dest, s *snapshot) DropReason {
	switch d.Method {
	case lvs.NAT:
		if isV4(&d.Addr) == w.pk.v6 {
			return DropUnsupported // NAT does not translate between families
		}
	case lvs.DR:
		if w.f.link != Ethernet {
			return DropUnsupported // DR changes only MACs: impossible without them
		}
	case lvs.TUN:
		if _, ok := s.source(&d.Addr); !ok {
			return DropUnsupported // no DIP of the real server's family for the outer header
		}
	default:
		return DropUnsupported
	}
	return DropNone
}

// isV4 reports whether a holds an IPv4-mapped address.
func isV4(a *lvs.Addr) bool {
	return binary.LittleEndian.Uint64(a[0:8]) == 0 && binary.LittleEndian.Uint32(a[8:12]) == 0xffff0000
}

// checkVNet reports whether the virtio-net header h is consistent with the
// parsed packet, for a frame about to be rewritten and transmitted with it:
// a partial checksum must start at the L4 header and point at its checksum
// field, and a GSO type must match the protocols.
func (w *Worker) checkVNet(h *VNetHdr) bool {
	pk := &w.pk
	partial := h.Flags&VirtioNetHdrFNeedsCsum != 0
	if partial {
		off := uint16(header.TCPChecksumOffset)
		if pk.t.Proto == lvs.UDP {
			off = udpChecksumOffset
		}
		if int(h.CsumStart) != pk.l4 || h.CsumOffset != off {
			return false
		}
	}
	gso := h.GSOType &^ VirtioNetHdrGSOECN
	if gso == VirtioNetHdrGSONone {
		return h.GSOType == VirtioNetHdrGSONone
	}
	if !partial || h.GSOSize == 0 {
		return false
	}
	switch gso {
	case VirtioNetHdrGSOTCPv4:
		return pk.t.Proto == lvs.TCP && !pk.v6
	case VirtioNetHdrGSOTCPv6:
		return pk.t.Proto == lvs.TCP && pk.v6
	case VirtioNetHdrGSOUDP, VirtioNetHdrGSOUDPL4:
		return pk.t.Proto == lvs.UDP
	}
	return false
}

// neighbor returns the MAC address that frames to d are sent to.
func neighbor(d *lvs.Dest) (lvs.MAC, bool) {
	if d.Neigh == nil {
		return lvs.MAC{}, false
	}
	return d.Neigh.Load()
}

// destMAC returns the MAC of d's real server for a frame p forwards to it.
// When it is not known yet, the frame is still rewritten (with a zero
// destination MAC) and waits for it: destMAC sets p.Neigh, and finish
// turns the outcome into AwaitNeighbor. Without a slot to wait on (a
// destination made without one) the frame is dropped (DropNoNeighbor).
func destMAC(p *Packet, d *lvs.Dest) (lvs.MAC, DropReason) {
	if m, ok := neighbor(d); ok {
		return m, DropNone
	}
	if d.Neigh == nil {
		return lvs.MAC{}, DropNoNeighbor
	}
	p.Neigh = d.Neigh
	return lvs.MAC{}, DropNone
}

// setMACs writes the Ethernet destination and source addresses of frame b.
func setMACs(b []byte, dst, src *lvs.MAC) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
}

// countIn and countOut add one packet of n IP bytes to the connection's
// destination and service counters.
//
// They add to the worker's own counters (conntrack.Entry.CountIn), which
// the connection table sums into lvs.Stats: no shared atomic per packet.
func countIn(e *conntrack.Entry, n int) { e.CountIn(n) }

func countOut(e *conntrack.Entry, n int) { e.CountOut(n) }

// udpChecksumOffset is the offset of the UDP checksum field.
const udpChecksumOffset = 6
