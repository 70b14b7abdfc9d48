package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Options configure a Table. Every field is optional; the defaults are:
//
//	Max            DefaultMax (4,194,304 connections)
//	Clock          nanoseconds since New on the monotonic clock
//	TCPTimeout     DefaultTCPTimeout (900 s)
//	TCPFinTimeout  DefaultTCPFinTimeout (120 s)
//	UDPTimeout     DefaultUDPTimeout (300 s)
type Options struct {
	// Max is the most connections the table holds; Insert refuses more with
	// ErrFull.
	Max int
	// Clock returns the current time in nanoseconds. Only differences matter,
	// so it must be monotonic, not wall-clock time. Tests inject a fake clock
	// to drive timeouts without waiting.
	Clock func() int64
	// TCPTimeout, TCPFinTimeout and UDPTimeout are the idle timeouts that
	// ipvsadm --set tcp tcpfin udp configures: of an ESTABLISHED TCP
	// connection, of a TCP connection after a FIN, of a UDP connection. The
	// SYN_RECV (60 s) and CLOSE (10 s) timeouts are fixed, as in IPVS.
	TCPTimeout, TCPFinTimeout, UDPTimeout time.Duration
}

// DefaultMax is the default Options.Max.
const DefaultMax = 1 << 22

// ExpireInterval is how often Run expires idle entries.
const ExpireInterval = time.Second

// ErrFull is returned by Insert when the table holds Options.Max entries:
// refuse the new connection and count the drop.
var ErrFull = errors.New("connection table full")

const (
	// numShards is a power of two; the shard is chosen by the top bits of the
	// tuple's hash.
	numShardsLog = 8
	numShards    = 1 << numShardsLog

	// touchGranularity: Update stores the last-seen time only when it moved
	// by at least this much, so that readers on several CPUs do not bounce
	// the entry's cache line for every packet.
	touchGranularity = int64(time.Millisecond)
)

// Entry is one connection. The exported fields are set by Insert and
// immutable afterwards; the state and last-seen time are atomics read through
// methods.
type Entry struct {
	// In is the tuple of the client's packets as received: client to
	// VIP:vport.
	In lvs.Tuple
	// Out is the tuple of the real server's replies, RIP:rport to client;
	// zero unless Method is lvs.NAT.
	Out lvs.Tuple
	// Dest is the real server. The table keeps its ActiveConns and
	// InactiveConns.
	Dest *lvs.Dest
	// Svc is the virtual service's counters (may be nil), for the forwarder.
	Svc *lvs.Stats
	// ClientMAC is the source MAC of the frame that created the connection
	// (the client's, or its router's), to address NAT replies. Zero on links
	// without MAC addresses.
	ClientMAC lvs.MAC
	// Method is Dest.Method, copied for locality.
	Method lvs.Method

	state atomic.Uint32 // a State
	last  atomic.Int64  // Clock time of the last Update
}

// State returns the connection's current state.
func (e *Entry) State() State { return State(e.state.Load()) }

// LastSeen returns the Clock time of the last packet, within 1 ms.
func (e *Entry) LastSeen() int64 { return e.last.Load() }

// slot is a map value: the entry and which of its tuples the key is.
type slot struct {
	e     *Entry
	reply bool // the key is e.Out
}

type shard struct {
	mu sync.RWMutex
	// m maps In tuples (reply false) and NAT Out tuples (reply true) to their
	// entries. Guarded by mu.
	m map[lvs.Tuple]slot

	// Keeps the locks of neighbouring shards out of one cache line.
	_ [64]byte
}

// Table is the connection table. Its methods are safe for concurrent use.
type Table struct {
	shards [numShards]shard
	seed   uint64
	max    int64
	clock  func() int64

	// n counts entries (In tuples), including ones being inserted.
	n atomic.Int64

	expireMu sync.Mutex
	// timeouts by state. Guarded by expireMu.
	timeouts timeouts
	// expired is Expire's reusable list of candidates. Guarded by expireMu.
	expired []*Entry
}

// New returns an empty table.
func New(opts Options) *Table {
	t := &Table{
		seed:     rand.Uint64(),
		max:      int64(opts.Max),
		clock:    opts.Clock,
		timeouts: defaultTimeouts(),
	}
	t.timeouts.set(opts.TCPTimeout, opts.TCPFinTimeout, opts.UDPTimeout)
	if t.max <= 0 {
		t.max = DefaultMax
	}
	if t.clock == nil {
		start := time.Now()
		t.clock = func() int64 { return int64(time.Since(start)) }
	}
	for i := range t.shards {
		t.shards[i].m = make(map[lvs.Tuple]slot)
	}
	return t
}

// SetTimeouts changes the idle timeouts of TCP ESTABLISHED, TCP after a FIN
// and UDP connections, as ipvsadm --set: a zero (or negative) value keeps the
// current timeout. It applies at the next expiry sweep, to existing
// connections too.
func (t *Table) SetTimeouts(tcp, tcpFin, udp time.Duration) {
	t.expireMu.Lock()
	t.timeouts.set(tcp, tcpFin, udp)
	t.expireMu.Unlock()
}

// Now returns the table's clock, the time to pass to Insert, Update and
// Expire.
func (t *Table) Now() int64 { return t.clock() }

// Len returns the number of connections.
func (t *Table) Len() int { return int(t.n.Load()) }

// hashTuple is a cheap seeded mix of the tuple's fields (not a map hash: the
// maps hash again; this only spreads tuples over shards).
func hashTuple(k *lvs.Tuple, seed uint64) uint64 {
	const m1, m2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9
	h := seed ^ (uint64(k.SPort)<<32 | uint64(k.DPort)<<16 | uint64(k.Proto))
	h = (h ^ binary.LittleEndian.Uint64(k.Src[0:8])) * m1
	h = (h ^ binary.LittleEndian.Uint64(k.Src[8:16])) * m2
	h ^= h >> 31
	h = (h ^ binary.LittleEndian.Uint64(k.Dst[0:8])) * m1
	h = (h ^ binary.LittleEndian.Uint64(k.Dst[8:16])) * m2
	h ^= h >> 29
	return h
}

func (t *Table) shardOf(k *lvs.Tuple) *shard {
	return &t.shards[hashTuple(k, t.seed)>>(64-numShardsLog)]
}

// Lookup finds the connection of a packet with tuple k in either direction:
// reply is true when k is the Out tuple of a NAT connection (a real server's
// reply). It returns a nil entry on a miss. It takes one shard read lock and
// does not allocate.
func (t *Table) Lookup(k *lvs.Tuple) (e *Entry, reply bool) {
	s := t.shardOf(k)
	s.mu.RLock()
	v := s.m[*k]
	s.mu.RUnlock()
	return v.e, v.reply
}

// Insert adds the connection of a first packet with tuple in (client to
// VIP:vport), bound to the real server d, and returns it with created true.
// If the tuple is already in the table (another reader inserted it first),
// Insert returns that entry with created false. Over Options.Max it returns
// ErrFull. now is the time of the packet; the caller then passes the packet
// to Update like any other.
//
// NAT connections are indexed by their Out tuple too. Should that tuple
// already be indexed (two virtual services mapping one client port to one
// real server port, which IPVS cannot tell apart either), the newest
// connection receives the replies; an In tuple always takes precedence over
// an Out tuple.
//
// d must not be nil. Insert allocates the entry and may grow a shard's map.
func (t *Table) Insert(in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64) (e *Entry, created bool, err error) {
	if t.n.Add(1) > t.max {
		t.n.Add(-1)
		return nil, false, ErrFull
	}
	e = &Entry{In: *in, Dest: d, Svc: svc, ClientMAC: clientMAC, Method: d.Method}
	if d.Method == lvs.NAT {
		e.Out = lvs.Tuple{Src: d.Addr, Dst: in.Src, SPort: d.Port, DPort: in.SPort, Proto: in.Proto}
	}
	st := StateUDP
	if in.Proto == lvs.TCP {
		st = StateNone
	}
	e.state.Store(uint32(st))
	e.last.Store(now)

	// Counted before the entry can be found, so that a racing Update never
	// accounts a state change of an uncounted entry.
	t.account(d, stateDead, st)
	s := t.shardOf(in)
	s.mu.Lock()
	if old, ok := s.m[*in]; ok && !old.reply {
		s.mu.Unlock()
		t.account(d, st, stateDead)
		t.n.Add(-1)
		return old.e, false, nil
	}
	s.m[*in] = slot{e: e}
	s.mu.Unlock()

	if d.Method == lvs.NAT {
		so := t.shardOf(&e.Out)
		so.mu.Lock()
		if old, ok := so.m[e.Out]; !ok || old.reply {
			so.m[e.Out] = slot{e: e, reply: true}
		}
		so.mu.Unlock()
	}
	return e, true, nil
}

// account moves a connection of d from state from to state to in d's
// ActiveConns and InactiveConns. stateDead stands for "not in the table".
func (t *Table) account(d *lvs.Dest, from, to State) {
	if d == nil || from == to {
		return
	}
	counter := func(s State) *atomic.Int32 {
		switch {
		case s == stateDead:
			return nil
		case s.Active():
			return &d.ActiveConns
		default:
			return &d.InactiveConns
		}
	}
	cf, ct := counter(from), counter(to)
	if cf == ct {
		return
	}
	if ct != nil {
		ct.Add(1)
	}
	if cf != nil {
		cf.Add(-1)
	}
}

// Update accounts one packet of e: it refreshes the last-seen time (only when
// it moved by at least 1 ms) and, for TCP, moves the state according to the
// segment's flags (FlagSYN, ...) and direction, keeping the destination's
// active/inactive counters. It takes no lock and does not allocate.
func (t *Table) Update(e *Entry, tcpFlags uint8, fromClient bool, now int64) {
	if now-e.last.Load() >= touchGranularity {
		e.last.Store(now)
	}
	if e.In.Proto != lvs.TCP {
		return
	}
	for {
		old := State(e.state.Load())
		if old == stateDead {
			return
		}
		n := nextTCP(old, tcpFlags, fromClient)
		if n == old {
			return
		}
		if e.state.CompareAndSwap(uint32(old), uint32(n)) {
			t.account(e.Dest, old, n)
			return
		}
	}
}

// isExpired reports whether e in state st has been idle past its timeout.
//
// Preconditions: t.expireMu is held.
func (t *Table) isExpired(e *Entry, st State, now int64) bool {
	return st != stateDead && now-e.last.Load() > t.timeouts[st]
}

// Expire removes the connections idle past their state's timeout at time now,
// decrements their destinations' counters and returns how many it removed.
//
// It sweeps every shard: a read-locked pass collects candidates, then each is
// removed under its shard's write lock, so that readers wait only for the
// removals. The sweep is linear in the table size (a timer wheel will replace
// it). A packet racing with the expiry of its connection may find it gone, as
// with IPVS's timers.
func (t *Table) Expire(now int64) int {
	t.expireMu.Lock()
	defer t.expireMu.Unlock()
	removed := 0
	for i := range t.shards {
		s := &t.shards[i]
		cand := t.expired[:0]
		s.mu.RLock()
		for _, v := range s.m {
			if !v.reply && t.isExpired(v.e, v.e.State(), now) {
				cand = append(cand, v.e)
			}
		}
		s.mu.RUnlock()
		for _, e := range cand {
			if t.remove(s, e, now) {
				removed++
			}
		}
		clear(cand)
		t.expired = cand[:0]
	}
	return removed
}

// remove deletes e, whose In tuple lives in shard s, if it is still expired.
//
// Preconditions: t.expireMu is held; s.mu is not.
func (t *Table) remove(s *shard, e *Entry, now int64) bool {
	s.mu.Lock()
	st := e.State()
	if !t.isExpired(e, st, now) || !e.state.CompareAndSwap(uint32(st), uint32(stateDead)) {
		// Refreshed, or its state moved: look again at the next sweep.
		s.mu.Unlock()
		return false
	}
	if s.m[e.In].e == e {
		delete(s.m, e.In)
	}
	s.mu.Unlock()

	if e.Method == lvs.NAT {
		so := t.shardOf(&e.Out)
		so.mu.Lock()
		if v := so.m[e.Out]; v.e == e {
			delete(so.m, e.Out)
		}
		so.mu.Unlock()
	}
	t.account(e.Dest, st, stateDead)
	t.n.Add(-1)
	return true
}

// Range calls fn for every connection until fn returns false, for a control
// plane listing. It holds no lock while fn runs, so fn may call any method of
// the table; connections inserted or removed during Range may or may not be
// seen. It allocates (a copy of one shard at a time).
func (t *Table) Range(fn func(e *Entry) bool) {
	var buf []*Entry
	for i := range t.shards {
		s := &t.shards[i]
		buf = buf[:0]
		s.mu.RLock()
		for _, v := range s.m {
			if !v.reply {
				buf = append(buf, v.e)
			}
		}
		s.mu.RUnlock()
		for _, e := range buf {
			if !fn(e) {
				return
			}
		}
	}
}

// Run expires idle connections every ExpireInterval until ctx is done. The
// caller owns the goroutine that runs it.
func (t *Table) Run(ctx context.Context) {
	tick := time.NewTicker(ExpireInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Expire(t.clock())
		}
	}
}
