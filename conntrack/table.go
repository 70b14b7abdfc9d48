package conntrack

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Options configure a Table. Every field is optional; the defaults are:
//
//	Max               DefaultMax (4,194,304 connections)
//	Clock             nanoseconds since New on the monotonic clock
//	TCPTimeout        DefaultTCPTimeout (900 s)
//	TCPFinTimeout     DefaultTCPFinTimeout (120 s)
//	UDPTimeout        DefaultUDPTimeout (300 s)
//	ExpireNodestConn  false (the kernel's default; lvsd's configuration defaults to true)
//	SecureTCP         false
type Options struct {
	// Max is the most connections the table holds. A new connection over it
	// evicts a half-open or closed TCP connection (see Insert) or is refused
	// with ErrFull.
	Max int
	// Clock returns the current time in nanoseconds. Only differences matter,
	// so it must be monotonic, not wall-clock time. Tests inject a fake clock
	// to drive timeouts without waiting.
	Clock func() int64
	// TCPTimeout, TCPFinTimeout and UDPTimeout are the idle timeouts that
	// ipvsadm --set tcp tcpfin udp configures: of an ESTABLISHED TCP
	// connection, of one in FIN_WAIT, of a UDP flow. The other TCP states
	// keep IPVS's fixed timeouts (SYN_RECV 60 s, TIME_WAIT 120 s, CLOSE
	// 10 s, ...).
	TCPTimeout, TCPFinTimeout, UDPTimeout time.Duration
	// Timeouts overrides the timeouts of any other states (lvsd's
	// extension, as Linux 2.4's timeout_* sysctls: TIME_WAIT's 120 s and
	// CLOSE's 10 s are the usual ones to shorten). A zero value keeps the
	// default.
	Timeouts map[State]time.Duration
	// ExpireNodestConn is IPVS's expire_nodest_conn: a client's packet on a
	// connection whose real server was removed (lvs.Dest.Removed) removes
	// the connection, so that the packet (if it is a SYN) and the client's
	// retries are scheduled anew. Without it the connection stays until it
	// times out and its packets are dropped. See Check.
	ExpireNodestConn bool
	// SecureTCP selects IPVS's secure_tcp state table (tcp_states_dos), in
	// which a client's ACK alone does not establish a NAT connection.
	SecureTCP bool
}

// DefaultMax is the default Options.Max.
const DefaultMax = 1 << 22

// MaxConnections is the largest Options.Max: every shard addresses its entries with
// 24 bits.
const MaxConnections = 1 << 30

// ExpireInterval is how often Run expires idle entries; EstimateInterval is
// how often it updates the rate estimates (IPVS's 2 s).
const (
	ExpireInterval   = time.Second
	EstimateInterval = 2 * time.Second
)

// ErrFull is returned by Insert when the table holds Options.Max entries and
// none can be evicted: refuse the new connection and count the drop.
var ErrFull = errors.New("connection table full")

const (
	// numShards is a power of two; the shard is chosen by the top bits of
	// the tuple's hash.
	numShardsLog = 8
	numShards    = 1 << numShardsLog

	// Entries live in per-shard slabs of fixed-size chunks; a location is
	// shard<<24 | index. Index 0 of each shard is never used, so that 0
	// means "none" in slots and lists.
	chunkLog  = 10
	chunkSize = 1 << chunkLog
	idxBits   = 24
	maxIdx    = 1<<idxBits - 1

	// The timer wheel: wheelSize slots of one tick (tickMs). An entry due
	// further out is filed at the wheel's far end and looked at again then.
	tickMs    = 1000
	wheelLog  = 10
	wheelSize = 1 << wheelLog
	wheelMask = wheelSize - 1

	// Eviction when full: entries of a shard's eviction list examined
	// (stale ones unlinked on the way do not count, up to evictStale),
	// and shards with candidates locked, per new connection.
	evictScan   = 64
	evictStale  = 1024
	evictShards = 8
)

// rec is one connection as the table stores it: 76 bytes and no pointer, so
// that ten million of them cost the garbage collector nothing to scan.
//
// in, mac and bind are written when the entry is allocated (under its
// shard's mu, before any index slot refers to it) and read by anyone who
// found it through a slot. word and last are atomics, written by the packet
// path without a lock. due, next and prev belong to the timer wheel and the
// free list, fnext and fprev to the eviction list: guarded by the home
// shard's mu.
type rec struct {
	in   lvs.Tuple // client to VIP:vport, as received
	mac  lvs.MAC   // the client's (or its router's) MAC
	bind uint32    // the binding (real server) index
	// word packs the state (bits 0-7), wordNoOutput, wordWasEst and a
	// generation (bits 12-31) that changes each time the rec is reused.
	word atomic.Uint32
	// last is the table time of the last packet, in milliseconds modulo
	// 2^32.
	last atomic.Uint32
	due  uint32 // the wheel tick the entry is filed at
	next uint32 // wheel or free list
	prev uint32 // wheel
	// fnext and fprev link the shard's eviction list; fprev has fifoIn set
	// while the entry is on it.
	fnext, fprev uint32
}

const fifoIn = 1 << 31

const (
	wordStateMask = 0xff
	wordNoOutput  = 1 << 8  // DR/TUN: the input-only table (IP_VS_CONN_F_NOOUTPUT)
	wordWasEst    = 1 << 9  // has been ESTABLISHED
	wordCtl       = 1 << 10 // has a controller (chunk.ctl), so that lookups read ctl only then
	wordGenShift  = 12
)

func stateOf(w uint32) State { return State(w & wordStateMask) }
func genOf(w uint32) uint32  { return w >> wordGenShift }

// chunk is a slab chunk. ctl, allocated on the first controlled entry of
// the chunk, holds the entries' controllers (persistence templates); it is
// the only pointer, and the first field, so that the collector scans one
// word per chunk.
type chunk struct {
	ctl  atomic.Pointer[[chunkSize]Controller]
	recs [chunkSize]rec
}

type shard struct {
	mu sync.RWMutex
	// idx maps tuples to locations. Guarded by mu.
	idx index
	// chunks is the slab. It grows (a new slice with one more chunk) under
	// mu and is read without it: chunks never move or go away, so a
	// location stays valid memory for the table's life.
	chunks atomic.Pointer[[]*chunk]
	// used is the next never-used index; free heads the free list (linked
	// by rec.next); n counts live entries. Guarded by mu.
	used, free uint32
	n          int
	// wheel heads the lists of entries by due tick (modulo wheelSize);
	// lastTick is the last tick expired. Every entry filed is due in
	// (lastTick, lastTick+wheelSize]. Guarded by mu.
	wheel    [wheelSize]uint32
	lastTick uint32
	// fifoHead and fifoTail are the eviction list: TCP entries in the order
	// they became evictable (half-open at insert, closed at TIME_WAIT or
	// CLOSE). Entries that stopped being evictable (established) stay on it
	// until eviction meets and unlinks them. fifoLen is its length, read
	// without the lock to skip shards with nothing to evict. Guarded by mu.
	fifoHead, fifoTail uint32
	fifoLen            atomic.Int32
	// binds caches the binding index of each destination, so that Insert
	// takes no table-wide lock. Guarded by mu.
	binds map[*lvs.Dest]uint32
	id    uint32

	// Keeps the locks of neighbouring shards out of one cache line.
	_ [64]byte
}

// Table is the connection table. Its methods are safe for concurrent use.
type Table struct {
	shards [numShards]shard
	seed   hashSeed
	clock  func() int64
	base   int64 // clock time of New: table times count from it

	max          atomic.Int64
	n            atomic.Int64 // live entries, including ones being inserted
	to           atomic.Pointer[timeouts]
	secure       atomic.Bool
	expireNodest atomic.Bool

	evicted, refused, nodest, reused atomic.Uint64

	bindMu sync.Mutex
	// bindByDest indexes binds. Guarded by bindMu.
	bindByDest map[*lvs.Dest]uint32
	// binds holds every binding by index (0 unused). Appended under bindMu
	// and published whole; read without a lock.
	binds atomic.Pointer[[]*binding]

	expireMu sync.Mutex
	// victims is Expire's reusable list of removed entries. Guarded by
	// expireMu.
	victims []uint32

	st stats
}

// New returns an empty table.
func New(opts Options) *Table {
	t := &Table{
		seed:       hashSeed{rand.Uint64(), rand.Uint64()},
		clock:      opts.Clock,
		bindByDest: make(map[*lvs.Dest]uint32),
	}
	if t.clock == nil {
		start := time.Now()
		t.clock = func() int64 { return int64(time.Since(start)) }
	}
	t.base = t.clock()
	to := defaultTimeouts().with(opts.TCPTimeout, opts.TCPFinTimeout, opts.UDPTimeout)
	for st, d := range opts.Timeouts {
		if st < stateDead && d > 0 {
			to[st] = msOf(d)
		}
	}
	t.to.Store(&to)
	t.SetMax(opts.Max)
	t.secure.Store(opts.SecureTCP)
	t.expireNodest.Store(opts.ExpireNodestConn)
	binds := []*binding{nil}
	t.binds.Store(&binds)
	for i := range t.shards {
		s := &t.shards[i]
		s.id = uint32(i)
		s.idx.init()
		s.used = 1
		s.binds = make(map[*lvs.Dest]uint32)
		chunks := []*chunk{}
		s.chunks.Store(&chunks)
	}
	t.st.init()
	return t
}

// SetTimeouts changes the idle timeouts of TCP ESTABLISHED, TCP FIN_WAIT and
// UDP connections, as ipvsadm --set: a zero (or negative) value keeps the
// current timeout. A connection's timeout is looked up when its timer
// fires, so existing connections get the new value too, at the latest when
// their old one would have ended.
func (t *Table) SetTimeouts(tcp, tcpFin, udp time.Duration) {
	for {
		old := t.to.Load()
		to := old.with(tcp, tcpFin, udp)
		if t.to.CompareAndSwap(old, &to) {
			return
		}
	}
}

// SetTimeout changes the timeout of state s (see Options.Timeouts); 0 or
// less keeps it. It applies as SetTimeouts does.
func (t *Table) SetTimeout(s State, d time.Duration) {
	if s >= stateDead || d <= 0 {
		return
	}
	for {
		old := t.to.Load()
		to := *old
		to[s] = msOf(d)
		if t.to.CompareAndSwap(old, &to) {
			return
		}
	}
}

// SetMax changes Options.Max (0 or less: DefaultMax). Lowering it removes
// nothing: until expiry brings the table under the new limit, every new
// connection must evict one or is refused.
func (t *Table) SetMax(n int) {
	if n <= 0 {
		n = DefaultMax
	}
	t.max.Store(int64(min(n, MaxConnections)))
}

// SetExpireNodestConn changes Options.ExpireNodestConn.
func (t *Table) SetExpireNodestConn(on bool) { t.expireNodest.Store(on) }

// SetSecureTCP changes Options.SecureTCP; it applies from the next segment
// of every connection.
func (t *Table) SetSecureTCP(on bool) { t.secure.Store(on) }

// Now returns the table's clock, the time to pass to Insert, Update and
// Expire.
func (t *Table) Now() int64 { return t.clock() }

// Len returns the number of connections.
func (t *Table) Len() int { return int(t.n.Load()) }

// Max returns the current Options.Max.
func (t *Table) Max() int { return int(t.max.Load()) }

// ms returns clock time now in table milliseconds (since New).
func (t *Table) ms(now int64) int64 { return max(now-t.base, 0) / int64(time.Millisecond) }

// rec returns the entry at a location. It takes no lock: chunks never move.
func (t *Table) rec(loc uint32) *rec {
	s := &t.shards[loc>>idxBits]
	i := loc & maxIdx
	return &(*s.chunks.Load())[i>>chunkLog].recs[i&(chunkSize-1)]
}

// controller returns the controller of the entry at loc, or nil. The
// caller found the entry through a slot, under that slot's shard lock.
func (t *Table) controller(loc uint32) Controller {
	s := &t.shards[loc>>idxBits]
	i := loc & maxIdx
	c := (*s.chunks.Load())[i>>chunkLog]
	if a := c.ctl.Load(); a != nil {
		return a[i&(chunkSize-1)]
	}
	return nil
}

// rec returns the entry at index i of s.
func (s *shard) rec(i uint32) *rec {
	return &(*s.chunks.Load())[i>>chunkLog].recs[i&(chunkSize-1)]
}

func (s *shard) loc(i uint32) uint32 { return s.id<<idxBits | i }

// alloc returns a free entry index, growing the slab by a chunk when the
// free list is empty. It returns 0 when the shard has no index left.
//
// Preconditions: s.mu is held.
func (s *shard) alloc() uint32 {
	if i := s.free; i != 0 {
		s.free = s.rec(i).next
		return i
	}
	if s.used > maxIdx {
		return 0
	}
	i := s.used
	chunks := *s.chunks.Load()
	if int(i>>chunkLog) == len(chunks) {
		grown := append(chunks[:len(chunks):len(chunks)], new(chunk))
		s.chunks.Store(&grown)
	}
	s.used++
	return i
}

// release puts index i back on the free list and returns its controller,
// which the caller releases once it holds no lock.
//
// Preconditions: s.mu is held; the entry is dead and no slot refers to it.
func (s *shard) release(i uint32) Controller {
	r := s.rec(i)
	r.next = s.free
	s.free = i
	if r.word.Load()&wordCtl == 0 {
		return nil
	}
	c := (*s.chunks.Load())[i>>chunkLog]
	if a := c.ctl.Load(); a != nil {
		ctl := a[i&(chunkSize-1)]
		a[i&(chunkSize-1)] = nil
		return ctl
	}
	return nil
}

// setController records the controller of entry i.
//
// Preconditions: s.mu is held; no slot refers to the entry yet.
func (s *shard) setController(i uint32, ctl Controller) {
	c := (*s.chunks.Load())[i>>chunkLog]
	a := c.ctl.Load()
	if a == nil {
		a = new([chunkSize]Controller)
		c.ctl.Store(a)
	}
	a[i&(chunkSize-1)] = ctl
}

// file puts entry i on the wheel at the tick its deadline (milliseconds)
// falls in, clamped to the wheel's span.
//
// Preconditions: s.mu is held; the entry is on no list.
func (s *shard) file(i uint32, deadlineMs int64) {
	due := uint32(deadlineMs/tickMs) + 1
	due = min(max(due, s.lastTick+1), s.lastTick+wheelSize)
	s.push(i, due)
}

// push links entry i at the head of the list of tick due.
//
// Preconditions: s.mu is held; the entry is on no list.
func (s *shard) push(i, due uint32) {
	r := s.rec(i)
	r.due = due
	h := &s.wheel[due&wheelMask]
	r.next, r.prev = *h, 0
	if *h != 0 {
		s.rec(*h).prev = i
	}
	*h = i
}

// unlink removes entry i from its wheel list.
//
// Preconditions: s.mu is held; the entry is on the wheel.
func (s *shard) unlink(i uint32) {
	r := s.rec(i)
	if r.prev != 0 {
		s.rec(r.prev).next = r.next
	} else {
		s.wheel[r.due&wheelMask] = r.next
	}
	if r.next != 0 {
		s.rec(r.next).prev = r.prev
	}
	r.next, r.prev = 0, 0
}

// fifoPush appends entry i to the eviction list unless it is on it.
//
// Preconditions: s.mu is held.
func (s *shard) fifoPush(i uint32) {
	r := s.rec(i)
	if r.fprev&fifoIn != 0 {
		return
	}
	r.fnext, r.fprev = 0, s.fifoTail|fifoIn
	if s.fifoTail != 0 {
		s.rec(s.fifoTail).fnext = i
	} else {
		s.fifoHead = i
	}
	s.fifoTail = i
	s.fifoLen.Add(1)
}

// fifoUnlink removes entry i from the eviction list if it is on it.
//
// Preconditions: s.mu is held.
func (s *shard) fifoUnlink(i uint32) {
	r := s.rec(i)
	if r.fprev&fifoIn == 0 {
		return
	}
	prev := r.fprev &^ fifoIn
	if prev != 0 {
		s.rec(prev).fnext = r.fnext
	} else {
		s.fifoHead = r.fnext
	}
	if r.fnext != 0 {
		s.rec(r.fnext).fprev = prev | fifoIn
	} else {
		s.fifoTail = prev
	}
	r.fnext, r.fprev = 0, 0
	s.fifoLen.Add(-1)
}

// Entry is a copy of one connection, made by Lookup or Insert: the exported
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

	t    *Table
	ws   *workerStats // the owner's counters, or nil
	loc  uint32       // 0: not in a table
	gen  uint32
	bind uint32
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
	e.In = r.in
	e.ClientMAC = r.mac
	e.Dest = b.dest
	e.Method = b.dest.Method
	e.Svc = b.svc.Load()
	e.Control = nil
	if w&wordCtl != 0 {
		e.Control = t.controller(loc)
	}
	if e.Method == lvs.NAT {
		e.Out = outTuple(&r.in, b.dest)
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

// Live reports whether the connection is still in the table.
func (e *Entry) Live() bool { return e.loc != 0 && e.State() != stateDead }

// Same reports whether e and o are copies of the same connection.
func (e *Entry) Same(o *Entry) bool {
	return e.t == o.t && e.loc == o.loc && e.gen == o.gen && (e.loc != 0 || e == o)
}

// LastSeen returns the table time (milliseconds since the table was made)
// of the connection's last packet.
func (e *Entry) LastSeen() time.Duration {
	if e.loc == 0 {
		return 0
	}
	return time.Duration(e.t.rec(e.loc).last.Load()) * time.Millisecond
}

// Expires returns how long the connection has left at time now unless a
// packet comes: its state's timeout after its last packet (ipvsadm -Lc's
// "expire"); 0 once it has left the table. The wheel removes it within one
// tick (1 s) after that.
func (e *Entry) Expires(now int64) time.Duration {
	if e.loc == 0 {
		return 0
	}
	r := e.t.rec(e.loc)
	w := r.word.Load()
	if genOf(w) != e.gen || stateOf(w) == stateDead {
		return 0
	}
	age := int64(int32(uint32(e.t.ms(now)) - r.last.Load()))
	return time.Duration(int64(e.t.to.Load()[stateOf(w)])-age) * time.Millisecond
}

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
	if !reply {
		return r.in == *k
	}
	d := t.binding(r.bind).dest
	return outTuple(&r.in, d) == *k
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

// Insert adds the connection of a first packet with tuple in (client to
// VIP:vport), bound to the real server d, and returns it with created true.
// If the tuple is already in the table (another reader inserted it first),
// Insert returns that entry with created false. now is the time of the
// packet; the caller then passes the packet to Update like any other.
//
// NAT connections are indexed by their Out tuple too. Should that tuple
// already be indexed (two virtual services mapping one client port to one
// real server port, which IPVS cannot tell apart either), the newest
// connection receives the replies; an In tuple always takes precedence over
// an Out tuple.
//
// When the table holds Options.Max connections, Insert first evicts one, as
// IPVS's drop_entry defence does under memory pressure: a TCP connection
// that never completed its handshake (NONE, SYN_RECV, SYN_SENT, SYNACK),
// the one due to expire soonest, else a closed one (TIME_WAIT, CLOSE). An
// ESTABLISHED, half-closed or UDP connection is never evicted: with none
// evictable Insert returns ErrFull. Under a SYN flood the flood's own
// entries are thus recycled while established connections stay.
//
// d must not be nil. Insert allocates the Entry it returns; the packet path
// uses InsertInto.
func (t *Table) Insert(in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64) (e *Entry, created bool, err error) {
	return t.InsertControlled(in, d, svc, clientMAC, now, nil)
}

// InsertControlled is Insert for a connection made through a persistence
// template: ctl (which may be nil) becomes the entry's Control. When the
// entry is not created (created false, or an error), ctl is not kept and the
// caller releases it.
func (t *Table) InsertControlled(in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64, ctl Controller) (e *Entry, created bool, err error) {
	e = new(Entry)
	created, err = t.InsertInto(e, in, d, svc, clientMAC, now, ctl)
	if err != nil {
		return nil, false, err
	}
	return e, created, nil
}

// InsertInto is InsertControlled into e (which keeps its counters). In the
// steady state (the slab and index grown to the table's working size) it
// allocates nothing.
func (t *Table) InsertInto(e *Entry, in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64, ctl Controller) (created bool, err error) {
	h := hashTuple(in, t.seed)
	si := shardOfHash(h)
	s := &t.shards[si]
	tag := tagOfHash(h)
	if t.n.Add(1) > t.max.Load() && !t.evict(si) {
		t.n.Add(-1)
		t.refused.Add(1)
		return false, ErrFull
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
		return false, nil
	}
	i := s.alloc()
	if i == 0 {
		s.mu.Unlock()
		t.n.Add(-1)
		t.refused.Add(1)
		return false, ErrFull
	}
	bi := t.bindingIn(s, d, in, svc)
	loc := s.loc(i)
	r := s.rec(i)
	r.in = *in
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
	r.word.Store(w)
	r.last.Store(uint32(nowMs))
	if ctl != nil {
		s.setController(i, ctl)
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
	if st == StateNone {
		s.fifoPush(i)
	}
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
			nw &^= wordNoOutput
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

// refile files e's timer at its deadline in its current state.
func (t *Table) refile(e *Entry) {
	s := &t.shards[e.loc>>idxBits]
	i := e.loc & maxIdx
	s.mu.Lock()
	r := s.rec(i)
	w := r.word.Load()
	if genOf(w) == e.gen && stateOf(w) != stateDead {
		nowMs := t.ms(t.clock())
		age := int64(int32(uint32(nowMs) - r.last.Load()))
		deadline := nowMs - max(age, 0) + int64(t.to.Load()[stateOf(w)])
		s.unlink(i)
		s.file(i, deadline)
		if stateOf(w).closed() {
			s.fifoPush(i)
		}
	}
	s.mu.Unlock()
}

// CheckResult is what Check decides for a client's packet of a connection
// found by Lookup.
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
	if e.Dest != nil && e.Dest.Removed.Load() {
		if !t.expireNodest.Load() {
			return DropPacket
		}
		if t.Remove(e) {
			t.nodest.Add(1)
		}
		return Reschedule
	}
	if e.In.Proto == lvs.TCP && tcpFlags&(FlagSYN|FlagACK|FlagRST) == FlagSYN && e.State().closed() {
		if t.Remove(e) {
			t.reused.Add(1)
		}
		return Reschedule
	}
	return Use
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
			h := hashTuple(&r.in, t.seed)
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
	b := t.binding(r.bind)
	d := b.dest
	if d.Method == lvs.NAT {
		out := outTuple(&r.in, d)
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
	if ctl != nil {
		ctl.Release()
	}
}

// evict makes room for one connection, trying shard si first, then the
// next ones that have candidates. It reports whether it removed one.
func (t *Table) evict(si int) bool {
	tried := 0
	for k := 0; k < numShards && tried < evictShards; k++ {
		s := &t.shards[(si+k)%numShards]
		if s.fifoLen.Load() == 0 {
			continue
		}
		s.mu.Lock()
		i, st, seen := t.victim(s)
		if i != 0 {
			s.unlink(i)
		}
		s.mu.Unlock()
		if seen > 0 {
			// Shards whose list held only stale entries (now unlinked:
			// the work is paid once per entry) do not count.
			tried++
		}
		if i != 0 {
			t.finish(s, i, st)
			t.evicted.Add(1)
			return true
		}
	}
	return false
}

// victim finds and kills the TCP connection of s that drop_entry would
// evict: from the head of the eviction list (the oldest first), the first
// that never completed a handshake among evictScan candidates, else the
// first closed one. Entries that are no longer evictable are unlinked on
// the way. It returns 0 when there is none, and how many candidates it
// examined.
//
// Preconditions: s.mu is held.
func (t *Table) victim(s *shard) (uint32, State, int) {
	var fallback uint32
	seen, stale := 0, 0
	for i := s.fifoHead; i != 0 && seen < evictScan && stale < evictStale; {
		r := s.rec(i)
		next := r.fnext
		w := r.word.Load()
		switch st := stateOf(w); {
		case st.halfOpen() && w&wordWasEst == 0:
			seen++
			if st, ok := t.kill(s, i, genOf(w), evictable(true)); ok {
				return i, st, seen
			}
		case st.closed():
			if fallback == 0 {
				fallback = i
			}
			seen++
		default:
			// Established (or on its way to closing): not a candidate
			// until it closes, when it joins the list again.
			s.fifoUnlink(i)
			stale++
		}
		i = next
	}
	if fallback != 0 {
		if st, ok := t.kill(s, fallback, genOf(s.rec(fallback).word.Load()), evictable(false)); ok {
			return fallback, st, seen
		}
	}
	return 0, 0, seen
}

// evictable returns kill's check that a state (and word) may still be
// evicted once the lock-free packet path may have changed it.
func evictable(halfOpen bool) func(State, uint32) bool {
	if halfOpen {
		return func(st State, w uint32) bool { return st.halfOpen() && w&wordWasEst == 0 }
	}
	return func(st State, _ uint32) bool { return st.closed() }
}

// Expire removes the connections idle past their state's timeout at time
// now, decrements their destinations' counters and returns how many it
// removed.
//
// It looks only at the wheel ticks that passed since the last call, shard
// by shard: an entry is examined when its deadline (as of its last filing)
// comes; if a packet refreshed it since, it is filed again at its new
// deadline. Each entry is thus examined about once per timeout (at most
// every wheelSize ticks), whatever the table's size. A packet racing with
// the expiry of its connection may find it gone, as with IPVS's timers.
func (t *Table) Expire(now int64) int {
	t.expireMu.Lock()
	defer t.expireMu.Unlock()
	nowMs := t.ms(now)
	nowTick := uint32(nowMs / tickMs)
	to := t.to.Load()
	removed := 0
	for si := range t.shards {
		s := &t.shards[si]
		victims := t.victims[:0]
		s.mu.Lock()
		if nowTick > s.lastTick {
			from := s.lastTick + 1
			if nowTick-s.lastTick > wheelSize {
				from = nowTick - wheelSize + 1
			}
			s.lastTick = nowTick
			for tick := from; tick <= nowTick; tick++ {
				victims = t.expireSlot(s, tick&wheelMask, nowMs, nowTick, to, victims)
			}
		}
		s.mu.Unlock()
		for _, v := range victims {
			t.finish(s, v&maxIdx, State(v>>idxBits))
		}
		removed += len(victims)
		t.victims = victims[:0]
	}
	return removed
}

// expireSlot examines the entries of one wheel slot at time nowMs (tick
// nowTick): it kills the expired ones, appending index | state<<24 to
// victims, and files the others again.
//
// Preconditions: s.mu is held; s.lastTick is nowTick.
func (t *Table) expireSlot(s *shard, slot uint32, nowMs int64, nowTick uint32, to *timeouts, victims []uint32) []uint32 {
	i := s.wheel[slot]
	s.wheel[slot] = 0
	for i != 0 {
		r := s.rec(i)
		next := r.next
		if r.due > nowTick {
			// Filed for a later turn of the wheel (after a catch-up).
			s.push(i, r.due)
			i = next
			continue
		}
		for {
			w := r.word.Load()
			st := stateOf(w)
			age := int64(int32(uint32(nowMs) - r.last.Load()))
			age = max(age, 0)
			if age <= int64(to[st]) {
				s.file(i, nowMs-age+int64(to[st]))
				break
			}
			if st, ok := t.kill(s, i, genOf(w), func(now State, _ uint32) bool { return now == st }); ok {
				victims = append(victims, i|uint32(st)<<idxBits)
				break
			}
			// The packet path changed the state meanwhile: look again.
		}
		i = next
	}
	return victims
}

// Range calls fn for every connection until fn returns false, for a control
// plane listing. e is a copy valid only during the call. Range holds no
// lock while fn runs, so fn may call any method of the table; connections
// inserted or removed during Range may or may not be seen. It allocates a
// buffer of copies.
func (t *Table) Range(fn func(e *Entry) bool) {
	const batch = 256
	buf := make([]Entry, batch)
	for si := range t.shards {
		s := &t.shards[si]
		for next := uint32(1); ; {
			n := 0
			s.mu.RLock()
			for ; next < s.used && n < batch; next++ {
				r := s.rec(next)
				w := r.word.Load()
				if stateOf(w) == stateDead {
					continue
				}
				t.fill(&buf[n], r, s.loc(next), w)
				n++
			}
			done := next >= s.used
			s.mu.RUnlock()
			for k := range n {
				if !fn(&buf[k]) {
					return
				}
			}
			if done {
				break
			}
		}
	}
}

// Run expires idle connections every ExpireInterval and updates the rate
// estimates every EstimateInterval until ctx is done. The caller owns the
// goroutine that runs it.
func (t *Table) Run(ctx context.Context) {
	tick := time.NewTicker(ExpireInterval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Expire(t.clock())
			if n%int(EstimateInterval/ExpireInterval) == 0 {
				t.Estimate()
			}
		}
	}
}
