package forward

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
	"github.com/lvsd/lvsd/sched"
)

// LastDrop returns the reason of the last frame this Worker dropped, for a
// tracer that runs on the Worker's reader goroutine right after Process
// returned Drop. Like the Worker, it is not safe for concurrent use.
func (w *Worker) LastDrop() DropReason { return w.lastDrop }

// A dry run (Explain) is Process itself, in a Worker of its own whose dry
// field is set. Process and newConn take the same decisions as for any
// frame, through the same code, and at each point where a real packet
// changes shared state the dry run asks the read-only twin instead:
//
//   - conntrack.Table.CheckDry for Check (no connection removed);
//   - conntrack.Table.AdmitDry for Admit (nothing counted in the second's
//     rate);
//   - persist.Table.Peek for Get (no template acquired, no timer restarted)
//     and no Create;
//   - sched.Preview for Schedule (no scheduler position, table or draw
//     moved);
//   - no InsertInto and no Update or Track of a connection: the entry the
//     packet would create is the Worker's scratch entry, out of the table
//     (conntrack.Entry.Unlink);
//   - the counters: the Worker is not in the Forwarder's list and its entry
//     is a scratch one (conntrack.Table.NewScratchEntry), so what it counts
//     is never read; drops are not logged.
//
// The frame itself is a copy that Process rewrites as it would the real
// one. Fragments and ICMP are not explained: their paths share the
// reassembler and the passive health counters.
//
// On the packet path this costs a nil test of w.dry at each such point, in
// the branches of new connections, and one per packet after the lookup.

// Explanation is what a dry run of Process decided for one frame.
type Explanation struct {
	// Tuple is the frame's flow, as parsed.
	Tuple lvs.Tuple
	// Verdict is Process's; Drop the reason of a drop (also set when the
	// packet was answered with an ICMP error: DropTooBig, DropTTLExceeded).
	Verdict Verdict
	Drop    DropReason
	// Unsupported is set for a frame a dry run does not process (an IP
	// fragment, ICMP): Verdict is then Drop with DropUnsupported.
	Unsupported bool
	// Service is the virtual service of the flow (of the connection for a
	// NAT reply), or nil.
	Service *Service

	// Found is set when the frame belongs to a connection of the table;
	// Reply when it is that connection's reply (a NAT real server's
	// packet). Conn is the connection then (a copy: its State reads the
	// live one), ConnState its state and ConnLeft its time left when it
	// was looked up.
	Found, Reply bool
	Conn         conntrack.Entry
	ConnState    conntrack.State
	ConnLeft     time.Duration
	// Check is what the table's check of a client's packet on a found
	// connection decided (conntrack.Use, Reschedule, DropPacket).
	Check conntrack.CheckResult

	// Template is the client's valid persistence template, which the
	// connection would be made through, or nil; NewTemplate is set when the
	// scheduler's choice would be bound in a new one.
	Template    *persist.Template
	NewTemplate bool
	// Scheduled is set when the scheduler was asked; Choice is its answer
	// (nil: no usable real server). NoPreview is set when the service's
	// scheduler has no dry run (sched.Previewer): the packet is then
	// reported as without destination, the scheduler not being called.
	Scheduled bool
	Choice    *lvs.Dest
	NoPreview bool
	// NewConn is set when the packet would create a connection;
	// OnePacket when it would be forwarded without one (ipvsadm -o).
	NewConn, OnePacket bool

	// Before is the frame as given; After the frame Process would write
	// (Verdict Transmit): the rewritten packet, or the ICMP error that
	// answers it.
	Before, After []byte
}

// lookedUp records the connection lookup.
func (x *Explanation) lookedUp(e *conntrack.Entry, found, reply bool, now int64) {
	x.Found, x.Reply = found, reply
	if found {
		x.Conn = *e
		x.ConnState = e.State()
		x.ConnLeft = e.Expires(now)
	}
}

// checked records the table's check and returns it.
func (x *Explanation) checked(r conntrack.CheckResult) conntrack.CheckResult {
	x.Check = r
	return r
}

// choose is newConn's choice of a real server in a dry run: the client's
// valid template, or else the scheduler's preview.
func (x *Explanation) choose(svc *Service, t *lvs.Tuple, now int64) *lvs.Dest {
	if pp := svc.Persist; pp != nil {
		key := pp.Key(t)
		if tp := pp.Table.Peek(&key, now); tp != nil {
			x.Template = tp
			return tp.Dest
		}
	}
	x.Scheduled = true
	d, ok := sched.Preview(svc.Sched, t)
	x.NoPreview = !ok
	x.Choice = d
	x.NewTemplate = d != nil && svc.Persist != nil
	return d
}

// dryEntry is newConn's connection in a dry run: the worker's scratch entry
// filled as InsertInto would fill it, and out of the table.
func (w *Worker) dryEntry(d *lvs.Dest, svc *Service) *conntrack.Entry {
	pk := &w.pk
	e := w.ent
	e.In = pk.t
	e.Out = lvs.Tuple{}
	if d.Method == lvs.NAT {
		rport := d.Port
		if rport == 0 {
			rport = pk.t.DPort
		}
		e.Out = lvs.Tuple{Src: d.Addr, Dst: pk.t.Src, SPort: rport, DPort: pk.t.SPort, Proto: pk.t.Proto}
	}
	e.Dest, e.Svc, e.ClientMAC, e.Method, e.Control = d, svc.Stats, pk.srcMAC, d.Method, nil
	e.Unlink()
	w.dry.OnePacket = svc.OnePacket && pk.t.Proto == lvs.UDP && d.Method != lvs.NAT
	w.dry.NewConn = !w.dry.OnePacket
	return e
}

// explainHeadroom is the headroom of a dry run's copy of the frame: room
// for the outer header of either tunnel.
const explainHeadroom = 64

// Explain runs Process on a copy of frame (as read from this Forwarder's
// link) in a dry run and returns what it decided: which service, which
// connection or template, the scheduler's choice, the rewritten frame or the
// drop. It changes no connection, template, scheduler or counter (see the
// comment above Explanation), and may run concurrently with the Workers. It
// allocates; it is for a tracer, not for the packet path.
func (f *Forwarder) Explain(frame []byte) *Explanation {
	x := &Explanation{Before: slices.Clone(frame)}
	w := &Worker{f: f, ent: f.table.NewScratchEntry(), dry: x}
	// Room after the frame too: the SYN proxy's SYN-ACK or SYN may be
	// longer than the segment it rewrites (synproxy.go).
	buf := make([]byte, explainHeadroom+len(frame)+synproxyOptLen)
	copy(buf[explainHeadroom:], frame)
	p := Packet{Buf: buf, Off: explainHeadroom, Len: len(frame)}
	s := f.snap.Load()
	switch res, _ := w.parse(p.Frame(), s); res {
	case parsedFrag, parsedICMP:
		x.Tuple = w.pk.t
		x.Verdict, x.Drop, x.Unsupported = Drop, DropUnsupported, true
		return x
	}
	x.Verdict = w.Process(&p)
	x.Drop = w.lastDrop
	x.Tuple = w.pk.t
	if x.Verdict == Transmit || x.Verdict == AwaitNeighbor {
		x.After = slices.Clone(p.Frame())
	}
	k := lvs.ServiceKey{Addr: x.Tuple.Dst, Port: x.Tuple.DPort, Proto: x.Tuple.Proto}
	if x.Found && x.Reply {
		k = lvs.ServiceKey{Addr: x.Conn.In.Dst, Port: x.Conn.In.DPort, Proto: x.Conn.In.Proto}
	}
	x.Service = s.service(k)
	return x
}

// Described is a packet an operator describes (lvsd trace -packet), for
// BuildFrame.
type Described struct {
	// Proto is lvs.TCP or lvs.UDP.
	Proto lvs.Proto
	// Src and Dst are the addresses and ports, of one family.
	Src, Dst netip.AddrPort
	// Flags are the TCP flags (conntrack.FlagSYN, ...); 0 for UDP.
	Flags uint8
	// SrcMAC is the frame's source on an Ethernet link: the client's, or
	// its router's. Zero: DescribedMAC.
	SrcMAC lvs.MAC
}

// DescribedMAC is the source MAC of a described frame that names none: a
// locally administered address.
var DescribedMAC = lvs.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}

// describedTTL is the TTL (hop limit) of a described packet.
const describedTTL = 64

// ErrDescribed is wrapped by BuildFrame's errors: the description cannot
// be a packet (the caller should name what the operator got wrong).
var ErrDescribed = errors.New("packet cannot be built")

// BuildFrame builds the frame of d as this Forwarder's link would carry
// it: an Ethernet header to the director's MAC on an Ethernet link, then
// the IP header (TTL 64, IPv4 header checksum), and the TCP header (no
// options, sequence 1, window 64240) or UDP header, without payload and
// with correct checksums.
func (f *Forwarder) BuildFrame(d *Described) ([]byte, error) {
	src, dst := d.Src.Addr().Unmap(), d.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, errors.Join(ErrDescribed, errors.New("source and destination must be addresses of one family"))
	}
	var l4len int
	switch d.Proto {
	case lvs.TCP:
		l4len = header.TCPMinimumSize
	case lvs.UDP:
		l4len = header.UDPMinimumSize
	default:
		return nil, errors.Join(ErrDescribed, errors.New("protocol must be tcp or udp"))
	}
	l3 := 0
	if f.link == Ethernet {
		l3 = header.EthernetMinimumSize
	}
	iplen := header.IPv4MinimumSize
	if src.Is6() {
		iplen = header.IPv6MinimumSize
	}
	b := make([]byte, l3+iplen+l4len)
	if f.link == Ethernet {
		smac := d.SrcMAC
		if smac == (lvs.MAC{}) {
			smac = DescribedMAC
		}
		setMACs(b, &f.mac, &smac)
		et := header.IPv4ProtocolNumber
		if src.Is6() {
			et = header.IPv6ProtocolNumber
		}
		b[12], b[13] = byte(et>>8), byte(et)
	}
	sa, da := tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice())
	tp := header.TCPProtocolNumber
	if d.Proto == lvs.UDP {
		tp = header.UDPProtocolNumber
	}
	if src.Is4() {
		ip := header.IPv4(b[l3:])
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(iplen + l4len), TTL: describedTTL, Protocol: uint8(tp),
			SrcAddr: sa, DstAddr: da,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(b[l3:]).Encode(&header.IPv6Fields{
			PayloadLength: uint16(l4len), TransportProtocol: tp, HopLimit: describedTTL,
			SrcAddr: sa, DstAddr: da,
		})
	}
	l4 := b[l3+iplen:]
	xsum := header.PseudoHeaderChecksum(tp, sa, da, uint16(l4len))
	switch d.Proto {
	case lvs.TCP:
		tcp := header.TCP(l4)
		tcp.Encode(&header.TCPFields{
			SrcPort: d.Src.Port(), DstPort: d.Dst.Port(), SeqNum: 1, DataOffset: header.TCPMinimumSize,
			Flags: header.TCPFlags(d.Flags), WindowSize: 64240,
		})
		if d.Flags&conntrack.FlagACK != 0 {
			tcp.SetAckNumber(1)
		}
		tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
	case lvs.UDP:
		udp := header.UDP(l4)
		udp.Encode(&header.UDPFields{SrcPort: d.Src.Port(), DstPort: d.Dst.Port(), Length: uint16(l4len)})
		c := ^checksum.Checksum(udp, xsum)
		if c == 0 {
			c = 0xffff
		}
		udp.SetChecksum(c)
	}
	return b, nil
}
