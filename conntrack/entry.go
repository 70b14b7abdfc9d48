package conntrack

import "github.com/lvsd/lvsd/lvs"

// Entry is a copy of one connection, made by Lookup or InsertInto: the exported
// fields describe the connection and stay valid after it expires; State,
// Update and Remove reach the live connection through a handle that a
// generation number protects, so that an Entry that outlived its connection
// (whose memory the table may have given to another) changes nothing.
//
// An Entry belongs to one goroutine. The packet path keeps one per worker
// (NewEntry) and refills it for every packet, allocating nothing. An Entry
// filled by hand (no table behind it) is accepted by Update, State and the
// counters as a connection outside the table.
type Entry struct {
	// In is the tuple of the client's packets as received: client to
	// VIP:vport.
	In lvs.Tuple
	// Out is the tuple of the real server's replies, RIP:rport to client;
	// zero unless Method is lvs.NAT.
	Out lvs.Tuple
	// Dest is the real server. The table keeps its ActiveConns and
	// InactiveConns, and its Overloaded flag against its thresholds.
	Dest *lvs.Dest
	// Svc is the virtual service's counters (may be nil).
	Svc *lvs.Stats
	// ClientMAC is the source MAC of the frame that created the connection
	// (the client's, or its router's), to address NAT replies. Zero on links
	// without MAC addresses.
	ClientMAC lvs.MAC
	// Method is Dest.Method.
	Method lvs.Method
	// Control is the persistence template the connection was made through
	// (IPVS's cp->control), or nil. The table calls its Release once, when
	// the connection leaves the table.
	Control Controller
	// Synproxy is set for a connection that lvsd's SYN proxy opened
	// (InsertSynproxy): its sequence numbers are translated (SynproxyOf).
	Synproxy bool

	t    *Table
	ws   *workerStats // the owner's counters, or nil
	loc  uint32       // 0: not in a table
	gen  uint32
	bind uint32
	// scratch marks an Entry of NewScratchEntry (a dry run's).
	scratch bool
}

// NewEntry returns an Entry for one goroutine of the packet path, with
// counters of its own: CountIn and CountOut on it add to them without
// atomic read-modify-writes, and the table sums every such Entry's counters
// when it reports statistics. Create one per goroutine, not per packet: the
// table keeps them all.
func (t *Table) NewEntry() *Entry {
	return &Entry{t: t, ws: t.st.newWorker()}
}

// fill copies the entry at loc, whose word was w, into e.
//
// Preconditions: the lock of the shard whose slot led to the entry is held.
func (t *Table) fill(e *Entry, r *rec, loc, w uint32) {
	b := t.binding(r.bind)
	e.In = r.in(b)
	e.ClientMAC = r.mac
	e.Dest = b.dest
	e.Method = b.dest.Method
	e.Svc = b.svc.Load()
	e.Control = nil
	if w&wordCtl != 0 {
		e.Control = t.controller(loc)
	}
	e.Synproxy = w&wordSynproxy != 0
	if e.Method == lvs.NAT {
		e.Out = outTuple(&e.In, b.dest)
	} else {
		e.Out = lvs.Tuple{}
	}
	e.t, e.loc, e.gen, e.bind = t, loc, genOf(w), r.bind
}

// outTuple is the tuple of the real server's replies to a NAT connection.
// A destination of port 0 (a service over several ports) answers from the
// port the client addressed.
func outTuple(in *lvs.Tuple, d *lvs.Dest) lvs.Tuple {
	rport := d.Port
	if rport == 0 {
		rport = in.DPort
	}
	return lvs.Tuple{Src: d.Addr, Dst: in.Src, SPort: rport, DPort: in.SPort, Proto: in.Proto}
}

// State returns the connection's current state; stateDead (EXPIRED) once it
// has left the table, StateNone for an Entry outside any table.
func (e *Entry) State() State {
	if e.loc == 0 {
		return StateNone
	}
	w := e.t.rec(e.loc).word.Load()
	if genOf(w) != e.gen {
		return stateDead
	}
	return stateOf(w)
}
