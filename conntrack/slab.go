package conntrack

// The slab: every shard keeps its entries in fixed-size chunks that never
// move, indexed by a 24-bit number, with a free list. A location (loc) names
// an entry table-wide as shard<<24 | index.

import (
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

const (
	// Entries live in per-shard slabs of fixed-size chunks; a location is
	// shard<<24 | index. Index 0 of each shard is never used, so that 0
	// means "none" in slots and lists.
	chunkLog  = 10
	chunkSize = 1 << chunkLog
	idxBits   = 24
	maxIdx    = 1<<idxBits - 1
)

// rec is one connection as the table stores it: 56 bytes and no pointer,
// kept outside the Go heap (the table's slab arena, mem_unsafe.go), so that ten
// million of them cost the garbage collector nothing to scan and can sit
// in huge pages. The In tuple's destination (the VIP) and protocol are
// those of the entry's binding (one per real server, VIP and protocol), so
// the entry keeps only the client's address and the ports.
//
// src, sport, dport, mac and bind are written when the entry is allocated
// (under its shard's mu, before any index slot refers to it) and read by
// anyone who found it through a slot. word and last are atomics, written
// by the packet path without a lock. next and prev belong to the timer
// wheel and the free list, fnext and fprev to the eviction list: guarded
// by the home shard's mu.
type rec struct {
	src          lvs.Addr // the client's address, as received
	sport, dport uint16   // the client's port and the virtual port
	mac          lvs.MAC  // the client's (or its router's) MAC
	bind         uint32   // the binding (real server, VIP, protocol) index
	// word packs the state (bits 0-7), the word* flags and a
	// generation (bits 15-31) that changes each time the rec is reused.
	word atomic.Uint32
	// last is the table time of the last packet, in milliseconds modulo
	// 2^32.
	last atomic.Uint32
	next uint32 // wheel or free list
	// prev is the previous entry on the wheel list, or wheelHead | the
	// list's wheel slot for the first entry of a list (so that unlink
	// finds the list's head without a field for the tick).
	prev uint32
	// fnext and fprev link the shard's eviction list; fprev has fifoIn set
	// while the entry is on it.
	fnext, fprev uint32
}

// in returns the entry's In tuple; b is its binding.
func (r *rec) in(b *binding) lvs.Tuple {
	return lvs.Tuple{Src: r.src, Dst: b.key.Addr, SPort: r.sport, DPort: r.dport, Proto: b.key.Proto}
}

// isIn reports whether k is the In tuple of the entry, whose binding is b.
func (r *rec) isIn(k *lvs.Tuple, b *binding) bool {
	return r.src == k.Src && r.sport == k.SPort && r.dport == k.DPort && b.key.Addr == k.Dst && b.key.Proto == k.Proto
}

const (
	wordStateMask = 0xff
	wordNoOutput  = 1 << 8  // DR/TUN: the input-only table (IP_VS_CONN_F_NOOUTPUT)
	wordWasEst    = 1 << 9  // has been ESTABLISHED
	wordCtl       = 1 << 10 // has a controller (chunk.ctl), so that lookups read ctl only then
	wordRef       = 1 << 11 // UDP: a packet came since eviction last looked (see victim)
	wordSrc       = 1 << 12 // counted by the per-source limits (see sources)
	wordReplied   = 1 << 13 // NAT: a packet of the real server's came (see failures.go)
	wordSynproxy  = 1 << 14 // opened by lvsd's SYN proxy: see synproxy.go
	wordGenShift  = 15
)

func stateOf(w uint32) State { return State(w & wordStateMask) }
func genOf(w uint32) uint32  { return w >> wordGenShift }

// chunk is a slab chunk's Go half. ctl, allocated on the first controlled
// entry of the chunk, holds the entries' controllers (persistence
// templates); win, allocated on the first NAT TCP entry, their sequence
// windows (window.go); syn, allocated on the first entry of the SYN proxy,
// its state (synproxy.go). The entries themselves are in the shard's recs,
// at the same chunk number.
type chunk struct {
	ctl atomic.Pointer[[chunkSize]Controller]
	win atomic.Pointer[[chunkSize]seqWin]
	syn atomic.Pointer[[chunkSize]synState]
}

// recBlock is a chunk's entries: in the table's slab arena (outside the Go
// heap), or on the heap when the kernel refused a mapping.
type recBlock = [chunkSize]rec

// rec returns the entry at a location. It takes no lock: chunks never move.
func (t *Table) rec(loc uint32) *rec {
	s := &t.shards[loc>>idxBits]
	i := loc & maxIdx
	return &(*s.recs.Load())[i>>chunkLog][i&(chunkSize-1)]
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
	return &(*s.recs.Load())[i>>chunkLog][i&(chunkSize-1)]
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
		recs := *s.recs.Load()
		b := s.slab.allocRecs()
		if b == nil {
			b = new(recBlock)
		}
		grownRecs := append(recs[:len(recs):len(recs)], b)
		grown := append(chunks[:len(chunks):len(chunks)], new(chunk))
		s.recs.Store(&grownRecs)
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
