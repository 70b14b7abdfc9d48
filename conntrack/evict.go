package conntrack

// Eviction when the table is full, as IPVS's drop_entry defence: each shard
// keeps a list of the TCP entries in the order they became evictable, and a
// new connection over Options.Max removes one of them.

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
