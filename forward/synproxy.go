package forward

// The SYN proxy of NAT TCP services (Service.Synproxy), an lvsd extension
// after DPVS's synproxy: a spoofed SYN costs no connection entry at all.
//
//  1. A SYN to the service, without a connection, is answered by the
//     director itself, in place, with a SYN-ACK whose initial sequence
//     number is a cookie (synproxy_cookie.go): a keyed hash of the tuple,
//     the client's ISN and a time counter, carrying the MSS and SACK-
//     permitted options the client offered. The SYN-ACK advertises a zero
//     window, as DPVS's does, so that the client sends no data until the
//     real server is there. Nothing is stored.
//  2. An ACK whose acknowledgment number is a valid cookie plus one creates
//     the connection (conntrack.Table.InsertSynproxy), schedules a real
//     server, and is rewritten in place into the director's SYN to it, with
//     the client's ISN and options. An ACK that does not validate is
//     dropped (DropSynproxyCookie).
//  3. The real server's SYN-ACK gives the sequence delta (its ISN minus
//     the cookie); the director answers it, in place, with the ACK that
//     completes the real server's handshake, and sends the client (through
//     Packet.Emit) a window update carrying the real server's window, which
//     lets the client send. A client segment before it (a lost SYN or
//     SYN-ACK: the client's zero-window probe, or its ACK again) makes the
//     director send its SYN again: the client's probes drive the
//     retransmission, so that the packet path needs no timer.
//  4. From then on every segment is translated: the real server's sequence
//     number minus delta toward the client; the client's acknowledgment
//     number, and the edges of its SACK blocks, plus delta toward the real
//     server. The connection table's window checks (conntrack.Table.Track)
//     see every segment untranslated, in its sender's own sequence space,
//     so that its RST checks need no change.
//
// Window scaling and timestamps are not negotiated (DPVS's defaults: its
// synproxy's wscale and timestamp switches are off): the director must
// answer the client before it knows the real server's window scale and
// timestamp clock, and without them there is nothing else to translate. The
// options are left out of the SYN-ACK, so the client uses neither; windows
// are at most 64 KiB. The MSS the SYN-ACK announces is the client's, at
// most synproxyMSS (DPVS's 1452), rounded down to the cookie's table.
//
// Everything here works in the frame's own buffer, or in the worker's
// scratch (spBuf) for the window update, and allocates nothing.

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
)

const (
	// synproxyTTL is the TTL (hop limit) of the segments the SYN proxy
	// writes: DPVS's default for its SYN-ACK.
	synproxyTTL = 63
	// synproxyOptLen is the length of the options of the SYN-ACK and of
	// the SYN to the real server: MSS (4), then NOP NOP SACK-permitted or
	// four NOPs.
	synproxyOptLen = 8
	// spBufLen is the worker's scratch for the window update: the Emit
	// headroom, Ethernet, the IPv6 header and a bare TCP header.
	spBufLen = EmitHeadroom + header.EthernetMinimumSize + header.IPv6MinimumSize + header.TCPMinimumSize
)

// segSpec is a TCP segment that the SYN proxy writes: addresses, ports,
// sequence and acknowledgment numbers, flags and window; mss 0 writes no
// options, else MSS and, with sack, SACK-permitted.
type segSpec struct {
	src, dst     lvs.Addr
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	win          uint16
	mss          uint16
	sack         bool
}

// segLen returns the length of the IP packet writeSeg writes for sp.
func segLen(v6 bool, sp *segSpec) int {
	n := header.IPv4MinimumSize + header.TCPMinimumSize
	if v6 {
		n = header.IPv6MinimumSize + header.TCPMinimumSize
	}
	if sp.mss != 0 {
		n += synproxyOptLen
	}
	return n
}

// writeSeg writes the IP packet of sp (no payload) at b[l3:], with complete
// checksums, and returns its length. b must hold segLen bytes from l3.
func writeSeg(b []byte, l3 int, v6 bool, sp *segSpec) int {
	n := segLen(v6, sp)
	ip := b[l3 : l3+n]
	var src, dst tcpip.Address
	var l4 []byte
	if v6 {
		binary.BigEndian.PutUint32(ip[0:], 6<<28)
		binary.BigEndian.PutUint16(ip[4:], uint16(n-header.IPv6MinimumSize))
		ip[6] = uint8(header.TCPProtocolNumber)
		ip[7] = synproxyTTL
		copy(ip[8:24], sp.src[:])
		copy(ip[24:40], sp.dst[:])
		src, dst = tcpip.AddrFrom16(sp.src), tcpip.AddrFrom16(sp.dst)
		l4 = ip[header.IPv6MinimumSize:]
	} else {
		ip4 := header.IPv4(ip)
		ip[0] = 0x45
		ip[1] = 0
		binary.BigEndian.PutUint16(ip[2:], uint16(n))
		binary.BigEndian.PutUint32(ip[4:], 0x4000) // ID 0, DF
		ip[8] = synproxyTTL
		ip[9] = uint8(header.TCPProtocolNumber)
		ip[10], ip[11] = 0, 0
		copy(ip[12:16], sp.src[12:16])
		copy(ip[16:20], sp.dst[12:16])
		ip4.SetChecksum(^ip4.CalculateChecksum())
		src, dst = tcpip.AddrFrom4([4]byte(sp.src[12:16])), tcpip.AddrFrom4([4]byte(sp.dst[12:16]))
		l4 = ip[header.IPv4MinimumSize:]
	}
	off := header.TCPMinimumSize
	if sp.mss != 0 {
		off += synproxyOptLen
	}
	binary.BigEndian.PutUint16(l4[0:], sp.sport)
	binary.BigEndian.PutUint16(l4[2:], sp.dport)
	binary.BigEndian.PutUint32(l4[4:], sp.seq)
	binary.BigEndian.PutUint32(l4[8:], sp.ack)
	l4[12] = uint8(off/4) << 4
	l4[13] = sp.flags
	binary.BigEndian.PutUint16(l4[14:], sp.win)
	l4[16], l4[17], l4[18], l4[19] = 0, 0, 0, 0 // checksum, urgent pointer
	if sp.mss != 0 {
		o := l4[header.TCPMinimumSize:off]
		o[0], o[1] = header.TCPOptionMSS, 4
		binary.BigEndian.PutUint16(o[2:], sp.mss)
		o[4], o[5], o[6], o[7] = header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionNOP
		if sp.sack {
			o[6], o[7] = header.TCPOptionSACKPermitted, 2
		}
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(off))
	binary.BigEndian.PutUint16(l4[16:], ^checksum.Checksum(l4[:off], xsum))
	return n
}

// fullTCPChecksum recomputes the TCP checksum of the parsed packet in b.
func fullTCPChecksum(b []byte, pk *parsed) {
	tcp := header.TCP(b[pk.l4:pk.ipEnd])
	var src, dst tcpip.Address
	if pk.v6 {
		ip := header.IPv6(b[pk.l3:])
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	} else {
		ip := header.IPv4(b[pk.l3:])
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	}
	tcp.SetChecksum(0)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
}

// synproxyService returns the SYN-proxy service of the parsed TCP packet,
// or nil.
func (w *Worker) synproxyService(s *snapshot) *Service {
	pk := &w.pk
	svc := s.service(lvs.ServiceKey{Addr: pk.t.Dst, Port: pk.t.DPort, Proto: lvs.TCP})
	if svc == nil || !svc.Synproxy {
		return nil
	}
	return svc
}

// synproxyNew handles a TCP segment without a connection to the SYN-proxy
// service svc: a SYN is answered with a cookie, an ACK with a valid cookie
// opens the connection, an RST goes to the netstack (which ignores it, as
// without the proxy), and anything else is dropped.
func (w *Worker) synproxyNew(p *Packet, b []byte, svc *Service, s *snapshot, now int64) Verdict {
	pk := &w.pk
	switch f := pk.flags & (conntrack.FlagSYN | conntrack.FlagACK | conntrack.FlagRST | conntrack.FlagFIN); {
	case f&conntrack.FlagRST != 0:
		return w.toStack()
	case f == conntrack.FlagSYN:
		if svc.Sched == nil {
			return w.dropLog(DropNoDest)
		}
		return w.synCookie(p, b, now)
	case f&(conntrack.FlagSYN|conntrack.FlagACK) == conntrack.FlagACK:
		return w.synproxyACK(p, b, s, now)
	}
	return w.drop(DropSynproxyFlags)
}

// synCookie rewrites the client's SYN in p into the director's SYN-ACK,
// whose sequence number is the cookie, and returns Transmit.
func (w *Worker) synCookie(p *Packet, b []byte, now int64) Verdict {
	pk := &w.pk
	tcp := header.TCP(b[pk.l4:pk.ipEnd])
	mss, sack := parseSynOptions(tcp[header.TCPMinimumSize:tcp.DataOffset()])
	if mss == 0 {
		mss = 536 // RFC 9293's default for IPv4
		if pk.v6 {
			mss = 1220 // IPv6's minimum MTU less its headers
		}
	}
	idx := mssIndex(mss)
	cisn := tcp.SequenceNumber()
	cookie := w.f.cookies.make(&pk.t, cisn, uint64(now)/uint64(cookiePeriod), idx, sack)
	sp := segSpec{
		src: pk.t.Dst, dst: pk.t.Src, sport: pk.t.DPort, dport: pk.t.SPort,
		seq: cookie, ack: cisn + 1, flags: conntrack.FlagSYN | conntrack.FlagACK,
		win: 0, mss: mssTable[idx], sack: sack,
	}
	n := pk.l3 + segLen(pk.v6, &sp)
	if p.Off+n > len(p.Buf) {
		return w.drop(DropUnsupported)
	}
	b = p.Buf[p.Off : p.Off+n]
	writeSeg(b, pk.l3, pk.v6, &sp)
	if w.f.link == Ethernet {
		setMACs(b, &pk.srcMAC, &w.f.mac)
	}
	p.Len = n
	p.VNet = VNetHdr{}
	w.c.synCookies.inc()
	return Transmit
}

// synproxyACK checks the cookie of a client's ACK without a connection
// and, when it is valid, creates the connection and rewrites the ACK into
// the director's SYN to the real server the scheduler chose.
func (w *Worker) synproxyACK(p *Packet, b []byte, s *snapshot, now int64) Verdict {
	pk := &w.pk
	tcp := header.TCP(b[pk.l4:pk.ipEnd])
	cookie := tcp.AckNumber() - 1
	seq := tcp.SequenceNumber()
	epoch := uint64(now) / uint64(cookiePeriod)
	cisn := seq - 1
	idx, sack, ok := w.f.cookies.check(&pk.t, cisn, cookie, epoch)
	if !ok && len(tcp) == int(tcp.DataOffset()) {
		// A zero-window probe, whose sequence number is one less than
		// the ACK's (the client's ACK was lost).
		cisn = seq
		idx, sack, ok = w.f.cookies.check(&pk.t, cisn, cookie, epoch)
	}
	if !ok {
		return w.drop(DropSynproxyCookie)
	}
	w.spIns = conntrack.Synproxy{Cookie: cookie, ClientISN: cisn, MSS: mssTable[idx], SACK: sack, Window: tcp.WindowSize()}
	w.spOn = true
	// The connection starts as if the client's SYN had come now: the
	// table's states and the scheduler see a SYN.
	pk.flags = conntrack.FlagSYN
	e, v, r := w.newConn(s, now)
	w.spOn = false
	if e == nil {
		if v == ToStack {
			return w.toStack()
		}
		return w.dropLog(r)
	}
	if w.dry != nil {
		// A dry run's connection is a scratch entry out of the table
		// (trace.go): the SYN it would send, and nothing recorded.
		if e.Method != lvs.NAT {
			return w.dropLog(DropUnsupported)
		}
		return w.finish(p, w.synToServer(p, e, &w.spIns), false)
	}
	if !e.Synproxy {
		// Another reader's connection without the proxy (the
		// configuration changed in between): not ours to translate.
		return w.dropLog(DropSynproxyState)
	}
	if e.Method != lvs.NAT {
		w.f.table.Remove(e)
		return w.dropLog(DropUnsupported)
	}
	if open, _, _ := w.f.table.SynproxyOf(e, &w.spIns); open {
		// Another reader opened it with the same cookie and the real
		// server answered already: this ACK is a copy.
		return w.drop(DropSynproxyState)
	}
	w.c.synproxyOpened.inc()
	w.f.table.Track(e, &conntrack.Segment{Flags: conntrack.FlagSYN, Seq: cisn, Len: 1, Win: w.spIns.Window, WScale: -1}, true)
	return w.finish(p, w.synToServer(p, e, &w.spIns), false)
}

// synToServer rewrites the frame in p into the director's SYN to e's real
// server, with the client's ISN and options (sp).
func (w *Worker) synToServer(p *Packet, e *conntrack.Entry, sp *conntrack.Synproxy) DropReason {
	pk := &w.pk
	mac, rport, r := w.natTarget(p, e)
	if r != DropNone {
		return r
	}
	seg := segSpec{
		src: e.In.Src, dst: e.Dest.Addr, sport: e.In.SPort, dport: rport,
		seq: sp.ClientISN, flags: conntrack.FlagSYN, win: sp.Window, mss: sp.MSS, sack: sp.SACK,
	}
	n := pk.l3 + segLen(pk.v6, &seg)
	if p.Off+n > len(p.Buf) {
		return DropUnsupported
	}
	b := p.Buf[p.Off : p.Off+n]
	ipLen := writeSeg(b, pk.l3, pk.v6, &seg)
	if w.f.link == Ethernet {
		setMACs(b, &mac, &w.f.mac)
	}
	p.Len = n
	p.VNet = VNetHdr{}
	countIn(e, ipLen)
	return DropNone
}

// ackToServer rewrites the real server's SYN-ACK in p into the ACK that
// completes its handshake: from the client's address and port, with the
// client's next sequence number and window.
func (w *Worker) ackToServer(p *Packet, e *conntrack.Entry, sp *conntrack.Synproxy, serverISN uint32) DropReason {
	pk := &w.pk
	mac, rport, r := w.natTarget(p, e)
	if r != DropNone {
		return r
	}
	seg := segSpec{
		src: e.In.Src, dst: e.Dest.Addr, sport: e.In.SPort, dport: rport,
		seq: sp.ClientISN + 1, ack: serverISN + 1, flags: conntrack.FlagACK, win: sp.Window,
	}
	n := pk.l3 + segLen(pk.v6, &seg)
	b := p.Buf[p.Off : p.Off+n] // never longer than the SYN-ACK it replaces
	ipLen := writeSeg(b, pk.l3, pk.v6, &seg)
	if w.f.link == Ethernet {
		setMACs(b, &mac, &w.f.mac)
	}
	p.Len = n
	p.VNet = VNetHdr{}
	countIn(e, ipLen)
	return DropNone
}

// windowUpdate sends the client of e, through p.Emit, the ACK that opens
// its window: the director's SYN-ACK advertised none. win is the real
// server's window from its SYN-ACK. Without an Emitter it sends nothing:
// the client's zero-window probe, forwarded to the real server, gets the
// window from it.
func (w *Worker) windowUpdate(p *Packet, e *conntrack.Entry, sp *conntrack.Synproxy, win uint16) {
	if p.Emit == nil {
		return
	}
	pk := &w.pk
	seg := segSpec{
		src: e.In.Dst, dst: e.In.Src, sport: e.In.DPort, dport: e.In.SPort,
		seq: sp.Cookie + 1, ack: sp.ClientISN + 1, flags: conntrack.FlagACK, win: win,
	}
	l3 := 0
	b := w.spBuf[EmitHeadroom:]
	if w.f.link == Ethernet {
		l3 = header.EthernetMinimumSize
		setMACs(b, &e.ClientMAC, &w.f.mac)
		et := header.IPv4ProtocolNumber
		if pk.v6 {
			et = header.IPv6ProtocolNumber
		}
		binary.BigEndian.PutUint16(b[12:], uint16(et))
	}
	n := l3 + writeSeg(b, l3, pk.v6, &seg)
	if p.Emit.Emit(w.spBuf[:], EmitHeadroom, n) == nil {
		countOut(e, n-l3)
		w.c.fwdOut.inc()
	}
}

// synproxyFound handles a segment of a connection the SYN proxy opened:
// the handshake with the real server while it is under way, the
// translation of sequence numbers afterwards. In a dry run (trace.go) it
// rewrites the frame as it would, and records nothing in the table (dry:
// no Track, Update or SynproxyOpen).
func (w *Worker) synproxyFound(p *Packet, b []byte, e *conntrack.Entry, reply bool, s *snapshot, now int64) Verdict {
	pk := &w.pk
	tab := w.f.table
	live := w.dry == nil
	sp := &w.spIns
	open, delta, ok := tab.SynproxyOf(e, sp)
	if !ok {
		return w.drop(DropSynproxyState) // it left the table under us
	}
	tcp := header.TCP(b[pk.l4:pk.ipEnd])
	partial := p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0
	if !reply {
		if !open {
			if pk.flags&conntrack.FlagRST != 0 {
				// The client gives up: the real server's half-open
				// connection goes too (its acknowledgment number cannot
				// be translated yet, and an RST needs none).
				if live {
					tab.Update(e, pk.flags, true, now)
				}
				return w.finish(p, w.natIn(p, b, e), false)
			}
			// The client's ACK again, or its zero-window probe: the SYN
			// or the SYN-ACK was lost. Send the SYN again.
			if live {
				tab.Update(e, conntrack.FlagSYN, true, now)
			}
			return w.finish(p, w.synToServer(p, e, sp), false)
		}
		if live {
			if !tab.Track(e, w.segment(b), true) {
				return w.drop(DropRSTWindow)
			}
			tab.Update(e, pk.flags, true, now)
		}
		if pk.flags&conntrack.FlagACK != 0 {
			if !w.checkVNet(&p.VNet) {
				return w.drop(DropBadVNetHdr)
			}
			addSeq(tcp, header.TCPAckNumOffset, delta, partial)
			if shiftSACK(tcp, delta, partial) {
				fullTCPChecksum(b, pk)
			}
		}
		return w.finish(p, w.natIn(p, b, e), false)
	}

	synAck := pk.flags&(conntrack.FlagSYN|conntrack.FlagACK|conntrack.FlagRST) == conntrack.FlagSYN|conntrack.FlagACK
	if !open {
		switch {
		case synAck && tcp.AckNumber() == sp.ClientISN+1:
			sISN := tcp.SequenceNumber()
			if !live {
				return w.finish(p, w.ackToServer(p, e, sp, sISN), false)
			}
			if !tab.SynproxyOpen(e, sISN-sp.Cookie) {
				// Another reader took the first SYN-ACK: this one is a
				// copy, answered as such.
				return w.finish(p, w.ackToServer(p, e, sp, sISN), false)
			}
			tab.Track(e, w.segment(b), false)
			tab.Update(e, pk.flags, false, now)
			w.windowUpdate(p, e, sp, tcp.WindowSize())
			tab.Update(e, conntrack.FlagACK, true, now)
			r := w.ackToServer(p, e, sp, sISN)
			tab.Track(e, &conntrack.Segment{Flags: conntrack.FlagACK, Seq: sp.ClientISN + 1, Win: sp.Window, WScale: -1}, true)
			return w.finish(p, r, false)
		case pk.flags&conntrack.FlagRST != 0 && pk.flags&conntrack.FlagACK != 0 && tcp.AckNumber() == sp.ClientISN+1:
			// The real server refuses the connection: the client gets
			// the RST, at the sequence number it expects from the
			// director.
			if !w.checkVNet(&p.VNet) {
				return w.drop(DropBadVNetHdr)
			}
			if live {
				tab.Update(e, pk.flags, false, now)
			}
			setSeq(tcp, header.TCPSeqNumOffset, sp.Cookie+1, partial)
			return w.finish(p, w.natOut(p, b, e, s), true)
		}
		return w.drop(DropSynproxyState)
	}
	if synAck {
		// The real server did not get the director's ACK and sends its
		// SYN-ACK again: answered, not forwarded.
		return w.finish(p, w.ackToServer(p, e, sp, tcp.SequenceNumber()), false)
	}
	if live {
		if !tab.Track(e, w.segment(b), false) {
			return w.drop(DropRSTWindow)
		}
		tab.Update(e, pk.flags, false, now)
	}
	if !w.checkVNet(&p.VNet) {
		return w.drop(DropBadVNetHdr)
	}
	addSeq(tcp, header.TCPSeqNumOffset, -delta, partial)
	return w.finish(p, w.natOut(p, b, e, s), true)
}

// addSeq adds d to the 32-bit field at off of tcp (a sequence or an
// acknowledgment number), updating the checksum unless it is partial (the
// field lies in the range the kernel sums later).
func addSeq(tcp header.TCP, off int, d uint32, partial bool) {
	setSeq(tcp, off, binary.BigEndian.Uint32(tcp[off:])+d, partial)
}

// setSeq writes v into the 32-bit field at off (even) of tcp, updating the
// checksum unless it is partial.
func setSeq(tcp header.TCP, off int, v uint32, partial bool) {
	old := binary.BigEndian.Uint32(tcp[off:])
	binary.BigEndian.PutUint32(tcp[off:], v)
	if !partial {
		x := tcp.Checksum()
		x = ^checksumUpdate(^x, uint16(old>>16), uint16(v>>16))
		x = ^checksumUpdate(^x, uint16(old), uint16(v))
		tcp.SetChecksum(x)
	}
}

// synproxyQuote translates the TCP segment quoted by an ICMP error about a
// SYN-proxy connection e into the sequence space of the side the error goes
// to (toClient: an error about the client's segment, from the real
// server's side): the sequence number of a segment the director sent the
// client becomes the real server's, which the real server's stack checks
// against what it sent (a path-MTU error it would otherwise ignore); the
// acknowledgment number of a client's segment becomes the client's again.
// The quoted TCP checksum, when quoted, is updated; the caller recomputes
// the ICMP checksum.
func (w *Worker) synproxyQuote(b []byte, e *conntrack.Entry, q *quoted, toClient bool) {
	var sp conntrack.Synproxy
	open, delta, ok := w.f.table.SynproxyOf(e, &sp)
	if !ok || !open || q.t.Proto != lvs.TCP {
		return
	}
	off := header.TCPSeqNumOffset
	if toClient {
		off, delta = header.TCPAckNumOffset, -delta
	}
	tcp := header.TCP(b[q.l4:q.end])
	if len(tcp) < off+4 {
		return
	}
	// With the checksum quoted, update it; a shorter quote has none.
	if len(tcp) < header.TCPChecksumOffset+2 {
		binary.BigEndian.PutUint32(tcp[off:], binary.BigEndian.Uint32(tcp[off:])+delta)
		return
	}
	addSeq(tcp, off, delta, false)
}
