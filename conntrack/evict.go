package conntrack

// Eviction when the table is full, as IPVS's drop_entry defence: each shard
// keeps a list of the entries in the order they became evictable (UDP flows
// and TCP handshakes from their start, TCP connections again when they
// close), and a new connection over Options.Max (or over the share that
// Options.Reserve leaves to entries that never established) removes one of
// them.

const (
	// Eviction when full: entries of a shard's eviction list examined
	// (stale ones unlinked on the way do not count, up to evictStale),
	// and shards with candidates locked, per new connection.
	evictScan   = 64
	evictStale  = 1024
	evictShards = 8
)

const fifoIn = 1 << 31

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

// evict makes room for one connection, trying shard si first, then the
// next ones that have candidates; UDP flows in use only when no shard tried
// had another candidate. With softOnly it removes only an entry that never
// established (see Options.Reserve). It reports whether it removed one.
func (t *Table) evict(si int, softOnly bool) bool {
	return t.evictPass(si, softOnly, false) || t.evictPass(si, softOnly, true)
}

func (t *Table) evictPass(si int, softOnly, used bool) bool {
	tried := 0
	for k := 0; k < numShards && tried < evictShards; k++ {
		s := &t.shards[(si+k)%numShards]
		if s.fifoLen.Load() == 0 {
			continue
		}
		s.mu.Lock()
		i, st, seen := t.victim(s, softOnly, used)
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

// victim finds and kills the connection of s that drop_entry would evict:
// from the head of the eviction list (the oldest first), among evictScan
// candidates, the first TCP connection that never completed a handshake or
// UDP flow of one packet, else the first closed TCP connection (with
// softOnly, one that never established), else (with used) the first UDP
// flow in use.
//
// A UDP flow is in use once a packet came after its first millisecond
// (Update sets wordRef): such flows are moved to the tail as they are met,
// so that the list's head holds the one-packet flows of a flood, which go
// first. Entries that are no longer evictable are unlinked on the way. It
// returns 0 when there is none, and how many candidates it examined.
//
// Preconditions: s.mu is held.
func (t *Table) victim(s *shard, softOnly, used bool) (uint32, State, int) {
	var fallback, inUse uint32
	seen, stale := 0, 0
	for i := s.fifoHead; i != 0 && seen < evictScan && stale < evictStale; {
		r := s.rec(i)
		next := r.fnext
		w := r.word.Load()
		switch st := stateOf(w); {
		case st.halfOpen() && w&wordWasEst == 0:
			seen++
			if st, ok := t.kill(s, i, genOf(w), evictHalfOpen); ok {
				return i, st, seen
			}
		case st == StateUDP && w&wordRef != 0:
			seen++
			if inUse == 0 {
				inUse = i
			}
			if i != s.fifoTail {
				s.fifoUnlink(i)
				s.fifoPush(i)
			}
		case st == StateUDP:
			seen++
			if st, ok := t.kill(s, i, genOf(w), evictUDP); ok {
				return i, st, seen
			}
		case st.closed():
			if fallback == 0 && (!softOnly || w&wordWasEst == 0) {
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
		if st, ok := t.kill(s, fallback, genOf(s.rec(fallback).word.Load()), evictClosed); ok {
			return fallback, st, seen
		}
	}
	if used && inUse != 0 {
		if st, ok := t.kill(s, inUse, genOf(s.rec(inUse).word.Load()), evictUsed); ok {
			return inUse, st, seen
		}
	}
	return 0, 0, seen
}

// kill's checks that an entry may still be evicted once the lock-free
// packet path may have changed it.
func evictHalfOpen(st State, w uint32) bool { return st.halfOpen() && w&wordWasEst == 0 }
func evictUDP(st State, w uint32) bool      { return st == StateUDP && w&wordRef == 0 }
func evictClosed(st State, _ uint32) bool   { return st.closed() }
func evictUsed(st State, _ uint32) bool     { return st == StateUDP }
