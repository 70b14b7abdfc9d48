package conntrack

// The table's operations on connections: lookup, insertion, the per-packet
// state update, the checks of a client's packet, and removal.

import "github.com/lvsd/lvsd/lvs"

// Lookup finds the connection of a packet with tuple k in either direction:
// reply is true when k is the Out tuple of a NAT connection (a real server's
// reply). It returns a nil entry on a miss. It allocates the Entry it
// returns; the packet path uses LookupInto.
func (t *Table) Lookup(k *lvs.Tuple) (e *Entry, reply bool) {
	e = new(Entry)
	found, reply := t.LookupInto(k, e)
	if !found {
		return nil, false
	}
	return e, reply
}

// LookupInto is Lookup into e: on a hit it fills e (keeping e's counters)
// and returns found true. It takes one shard's read lock and allocates
// nothing.
func (t *Table) LookupInto(k *lvs.Tuple, e *Entry) (found, reply bool) {
	h := hashTuple(k, t.seed)
	s := &t.shards[shardOfHash(h)]
	tag := tagOfHash(h)
	s.mu.RLock()
	x := &s.idx
	for i := x.home(tag); ; i = x.next(i) {
		v := x.slots[i]
		if v == 0 {
			break
		}
		if slotTag(v) != tag {
			continue
		}
		loc := slotLoc(v)
		r := t.rec(loc)
		reply = v&slotReply != 0
		if !t.matches(r, k, reply) {
			continue
		}
		w := r.word.Load()
		if stateOf(w) == stateDead {
			// A reply slot of a connection being removed.
			break
		}
		t.fill(e, r, loc, w)
		s.mu.RUnlock()
		return true, reply
	}
	s.mu.RUnlock()
	return false, false
}

// matches reports whether k is the entry's In tuple (reply false) or its Out
// tuple (reply true).
func (t *Table) matches(r *rec, k *lvs.Tuple, reply bool) bool {
	b := t.binding(r.bind)
	if !reply {
		return r.isIn(k, b)
	}
	in := r.in(b)
	return outTuple(&in, b.dest) == *k
}

// find returns the slot index of key k with hash h in s (reply telling
// which kind of slot), or -1.
//
// Preconditions: s.mu is held.
func (t *Table) find(s *shard, k *lvs.Tuple, tag uint32) (int, bool) {
	x := &s.idx
	for i := x.home(tag); ; i = x.next(i) {
		v := x.slots[i]
		if v == 0 {
			return -1, false
		}
		if slotTag(v) == tag {
			reply := v&slotReply != 0
			if t.matches(t.rec(slotLoc(v)), k, reply) {
				return i, reply
			}
		}
	}
}

// findLoc returns the slot index in s that refers to loc with the given
// reply flag under tag, or -1.
//
// Preconditions: s.mu is held.
func findLoc(s *shard, tag, loc uint32, reply bool) int {
	x := &s.idx
	want := uint64(tag)<<tagShift | uint64(loc)
	if reply {
		want |= slotReply
	}
	for i := x.home(tag); ; i = x.next(i) {
		switch x.slots[i] {
		case 0:
			return -1
		case want:
			return i
		}
	}
}

// InsertInto adds the connection of a first packet with tuple in (client to
// VIP:vport), bound to the real server d, fills e with it (keeping e's
// counters) and returns created true. If the tuple is already in the table
// (another reader inserted it first), InsertInto fills e with that entry
// and returns created false. now is the time of the packet; the caller then
// passes the packet to Update like any other.
//
// NAT connections are indexed by their Out tuple too. Should that tuple
// already be indexed (two virtual services mapping one client port to one
// real server port, which IPVS cannot tell apart either), the newest
// connection receives the replies; an In tuple always takes precedence over
// an Out tuple.
//
// When the table holds Options.Max connections, InsertInto first evicts
// one, as IPVS's drop_entry defence does under memory pressure: a TCP
// connection that never completed its handshake (NONE, SYN_RECV, SYN_SENT,
// SYNACK), the one due to expire soonest, else a closed one (TIME_WAIT,
// CLOSE). An ESTABLISHED, half-closed or UDP connection is never evicted:
// with none evictable InsertInto returns ErrFull. Under a SYN flood the
// flood's own entries are thus recycled while established connections
// stay.
//
// ctl (which may be nil) is the persistence template the connection is
// made through: it becomes the entry's Control. When the entry is not
// created (created false, or an error), ctl is not kept and the caller
// releases it.
//
// d must not be nil. In the steady state (the slab and index grown to the
// table's working size) InsertInto allocates nothing.
func (t *Table) InsertInto(e *Entry, in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64, ctl Controller) (created bool, err error) {
	return t.insert(e, in, d, svc, clientMAC, now, ctl, nil)
}

// insert is InsertInto; sp, when not nil, is the state of a connection of
// the SYN proxy (InsertSynproxy), recorded before the entry can be found.
func (t *Table) insert(e *Entry, in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64, ctl Controller, sp *Synproxy) (created bool, err error) {
	h := hashTuple(in, t.seed)
	si := shardOfHash(h)
	s := &t.shards[si]
	tag := tagOfHash(h)
	// Both counts include the new entry from here on, so that racing
	// inserts see each other; every path that creates nothing takes it
	// back.
	mx := t.max.Load()
	over := t.n.Add(1) > mx
	if (over || t.soft.Add(1) > t.softMax(mx)) && !t.evict(si, !over) {
		t.n.Add(-1)
		if !over {
			t.soft.Add(-1)
		}
		t.refused.Add(1)
		return false, ErrFull
	}
	if over {
		t.soft.Add(1)
	}
	nowMs := t.ms(now)

	s.mu.Lock()
	pos, reply := t.find(s, in, tag)
	if pos >= 0 && !reply {
		v := s.idx.slots[pos]
		r := t.rec(slotLoc(v))
		t.fill(e, r, slotLoc(v), r.word.Load())
		s.mu.Unlock()
		t.n.Add(-1)
		t.soft.Add(-1)
		return false, nil
	}
	i := s.alloc()
	if i == 0 {
		s.mu.Unlock()
		t.n.Add(-1)
		t.soft.Add(-1)
		t.refused.Add(1)
		return false, ErrFull
	}
	bi := t.bindingIn(s, d, in, svc)
	loc := s.loc(i)
	r := s.rec(i)
	r.src, r.sport, r.dport = in.Src, in.SPort, in.DPort
	r.mac = clientMAC
	r.bind = bi
	st := StateUDP
	if in.Proto == lvs.TCP {
		st = StateNone
	}
	w := uint32(st) | (genOf(r.word.Load())+1)<<wordGenShift
	if d.Method != lvs.NAT {
		w |= wordNoOutput
	}
	if ctl != nil {
		w |= wordCtl
	}
	if sp != nil {
		w |= wordSynproxy
		s.setSynproxy(i, sp)
	}
	if t.countSource(&in.Src) {
		w |= wordSrc
	}
	r.word.Store(w)
	r.last.Store(uint32(nowMs))
	if ctl != nil {
		s.setController(i, ctl)
	}
	if d.Method == lvs.NAT && in.Proto == lvs.TCP {
		s.resetWin(i)
	}
	// Counted before the entry can be found, so that a racing Update never
	// accounts a state change of an uncounted entry.
	t.bindDest(bi, d)
	if pos >= 0 {
		// The tuple was another connection's Out tuple: In wins.
		s.idx.slots[pos] = uint64(tag)<<tagShift | uint64(loc)
	} else {
		s.idx.add(tag, loc, false)
	}
	s.n++
	s.file(i, nowMs+int64(t.to.Load()[st]))
	// Every new entry is evictable until it establishes (TCP) or for its
	// life (UDP).
	s.fifoPush(i)
	t.fill(e, r, loc, w)
	s.mu.Unlock()

	if d.Method == lvs.NAT {
		t.indexOut(e, r, loc, w)
	}
	return true, nil
}

// indexOut adds the Out slot of a new NAT connection, unless the connection
// was evicted in the meantime (its Out slot would then outlive it).
func (t *Table) indexOut(e *Entry, r *rec, loc, w uint32) {
	h := hashTuple(&e.Out, t.seed)
	so := &t.shards[shardOfHash(h)]
	tag := tagOfHash(h)
	so.mu.Lock()
	if cur := r.word.Load(); genOf(cur) == genOf(w) && stateOf(cur) != stateDead {
		switch pos, reply := t.find(so, &e.Out, tag); {
		case pos < 0:
			so.idx.add(tag, loc, true)
		case reply:
			// Another connection's Out tuple: the newest gets the replies.
			so.idx.slots[pos] = uint64(tag)<<tagShift | slotReply | uint64(loc)
		}
	}
	so.mu.Unlock()
}

// Update accounts one packet of e: it refreshes the last-seen time and, for
// TCP, moves the state by IPVS's tables according to the segment's flags
// (FlagSYN, ...) and direction (fromClient false: a NAT reply), keeping the
// destination's active and inactive counts. It takes no lock and does not
// allocate, except when the new state has a shorter timeout than the old
// (a FIN or RST: a few times per connection), when it refiles the
// connection's timer under its shard's lock.
func (t *Table) Update(e *Entry, tcpFlags uint8, fromClient bool, now int64) {
	if e.loc == 0 || e.t != t {
		return
	}
	r := t.rec(e.loc)
	w := r.word.Load()
	if genOf(w) != e.gen || stateOf(w) == stateDead {
		return
	}
	if ms := uint32(t.ms(now)); r.last.Load() != ms {
		r.last.Store(ms)
		if w&wordRef == 0 && stateOf(w) == StateUDP {
			// A packet after the first millisecond: the flow is used, and
			// eviction gives it a second chance (see victim). Once set,
			// the mark costs nothing until eviction clears it.
			r.word.CompareAndSwap(w, w|wordRef)
		}
	}
	if e.In.Proto != lvs.TCP {
		return
	}
	secure := t.secure.Load()
	for {
		old := stateOf(w)
		nw := w
		dir := DirInput
		switch {
		case !fromClient:
			// IPVS clears IP_VS_CONN_F_NOOUTPUT on the first reply.
			dir = DirOutput
			nw = nw&^wordNoOutput | wordReplied
		case w&wordNoOutput != 0:
			dir = DirInputOnly
		}
		ns := NextTCP(old, tcpFlags, dir, secure)
		nw = nw&^wordStateMask | uint32(ns)
		if ns == StateEstablished {
			nw |= wordWasEst
		}
		if nw == w {
			return
		}
		if r.word.CompareAndSwap(w, nw) {
			if !fromClient && tcpFlags&FlagRST != 0 && old == StateSynRecv && w&wordReplied == 0 {
				e.CountFailure() // the real server refused the connection
			}
			if nw&wordWasEst != 0 && w&wordWasEst == 0 {
				t.soft.Add(-1)
			}
			if ns != old {
				account(e.Dest, old, ns)
				// The wheel is lazy: a later deadline is noticed when the
				// earlier one fires, but an earlier one must be filed now.
				// Leaving NONE (the first segment, which Insert filed with
				// NONE's 2 s) files the real deadline too, so that the wheel
				// orders half-open connections by age for eviction. A
				// connection that closes joins the eviction list.
				if to := t.to.Load(); to[ns] < to[old] || old == StateNone || ns.closed() && !old.closed() {
					t.refile(e)
				}
			}
			return
		}
		w = r.word.Load()
		if genOf(w) != e.gen || stateOf(w) == stateDead {
			return
		}
	}
}

// CheckResult of Check on a client's packet for a connection found by Lookup.
type CheckResult uint8

const (
	// Use: forward the packet on the connection.
	Use CheckResult = iota
	// Reschedule: the connection has been removed; treat the packet as one
	// without a connection (a SYN is scheduled anew).
	Reschedule
	// DropPacket: the connection's real server was removed and
	// ExpireNodestConn is off: drop the packet and keep the connection until
	// it times out.
	DropPacket
)

// Check decides what a client's packet (tcpFlags: its TCP flags, 0 for
// other protocols) does with the connection e it found, before Update, as
// IPVS's ip_vs_in does:
//
//   - the real server was removed (e.Dest.Removed): with ExpireNodestConn
//     the connection is removed and Reschedule returned, else DropPacket;
//   - a SYN (without ACK or RST) on a TCP connection in TIME_WAIT or CLOSE
//     (the client reuses its port): the old connection is removed and
//     Reschedule returned, so that the SYN is scheduled at once, without
//     IPVS's conn_reuse_mode one-second stall;
//   - otherwise Use.
//
// Connections to a quiescent real server (weight 0) go on (Use).
func (t *Table) Check(e *Entry, tcpFlags uint8) CheckResult {
	r, nodest := t.check(e, tcpFlags)
	if r == Reschedule && t.Remove(e) {
		if nodest {
			t.nodest.Add(1)
		} else {
			t.reused.Add(1)
		}
	}
	return r
}

// CheckDry is Check without its effect, for a dry run (a trace of a
// described packet): it returns what Check would, and removes nothing.
func (t *Table) CheckDry(e *Entry, tcpFlags uint8) CheckResult {
	r, _ := t.check(e, tcpFlags)
	return r
}

// check is Check's decision; nodest tells a removed real server from a
// reused port.
func (t *Table) check(e *Entry, tcpFlags uint8) (r CheckResult, nodest bool) {
	if e.Dest != nil && e.Dest.Removed.Load() {
		if !t.expireNodest.Load() {
			return DropPacket, true
		}
		return Reschedule, true
	}
	if e.In.Proto == lvs.TCP && tcpFlags&(FlagSYN|FlagACK|FlagRST) == FlagSYN && e.State().closed() {
		return Reschedule, false
	}
	return Use, false
}

// Remove takes the connection e out of the table now (expire_nodest_conn,
// port reuse, a control plane's request). It returns false if the
// connection had already left. The caller's Entry keeps its copy.
func (t *Table) Remove(e *Entry) bool {
	if e.loc == 0 || e.t != t {
		return false
	}
	s := &t.shards[e.loc>>idxBits]
	i := e.loc & maxIdx
	s.mu.Lock()
	st, ok := t.kill(s, i, e.gen, nil)
	if ok {
		s.unlink(i)
	}
	s.mu.Unlock()
	if ok {
		t.finish(s, i, st)
	}
	return ok
}

// kill marks entry i of s dead if it still has generation gen and, when
// allow is not nil, if allow accepts its state; it removes the In slot. It
// returns the state the entry died in. The entry stays on its wheel list
// (the caller unlinks it or has detached the list) and allocated until
// finish.
//
// Preconditions: s.mu is held.
func (t *Table) kill(s *shard, i, gen uint32, allow func(State, uint32) bool) (State, bool) {
	r := s.rec(i)
	for {
		w := r.word.Load()
		st := stateOf(w)
		if genOf(w) != gen || st == stateDead || allow != nil && !allow(st, w) {
			return st, false
		}
		if r.word.CompareAndSwap(w, w&^wordStateMask|uint32(stateDead)) {
			in := r.in(t.binding(r.bind))
			h := hashTuple(&in, t.seed)
			if pos := findLoc(s, tagOfHash(h), s.loc(i), false); pos >= 0 {
				s.idx.del(pos)
			}
			s.n--
			s.fifoUnlink(i)
			return st, true
		}
	}
}

// finish completes the removal of entry i of s, killed in state st: it
// removes the Out slot, frees the entry, releases its controller and
// accounts the connection's end.
//
// Preconditions: no shard lock is held.
func (t *Table) finish(s *shard, i uint32, st State) {
	r := s.rec(i)
	loc := s.loc(i)
	// The entry is dead, so that only this call reads or writes it until
	// release gives it back.
	w := r.word.Load()
	src := r.src
	b := t.binding(r.bind)
	d := b.dest
	if d.Method == lvs.NAT {
		in := r.in(b)
		out := outTuple(&in, d)
		h := hashTuple(&out, t.seed)
		so := &t.shards[shardOfHash(h)]
		so.mu.Lock()
		if pos := findLoc(so, tagOfHash(h), loc, true); pos >= 0 {
			so.idx.del(pos)
		}
		so.mu.Unlock()
	}
	s.mu.Lock()
	ctl := s.release(i)
	s.mu.Unlock()
	t.unbindDest(b, d, st)
	t.n.Add(-1)
	if w&wordWasEst == 0 {
		t.soft.Add(-1)
	}
	if w&wordSrc != 0 {
		t.uncountSource(&src)
	}
	if ctl != nil {
		ctl.Release()
	}
}
