package conntrack

// The timer wheel: each shard files its entries by the tick (1 s) their
// deadline falls in, so that expiry looks only at the entries whose time
// came. The packet path refreshes an entry's last-seen time without a lock;
// an entry refreshed since it was filed is filed again when its old
// deadline comes (a lazy wheel).

const (
	// The timer wheel: wheelSize slots of one tick (tickMs). An entry due
	// further out is filed at the wheel's far end and looked at again then.
	tickMs    = 1000
	wheelLog  = 10
	wheelSize = 1 << wheelLog
	wheelMask = wheelSize - 1
)

// file puts entry i on the wheel at the tick its deadline (milliseconds)
// falls in, clamped to the wheel's span.
//
// Preconditions: s.mu is held; the entry is on no list.
func (s *shard) file(i uint32, deadlineMs int64) {
	due := uint32(deadlineMs/tickMs) + 1
	due = min(max(due, s.lastTick+1), s.lastTick+wheelSize)
	s.push(i, due)
}

// wheelHead marks rec.prev of the first entry of a wheel list; the low
// bits are the list's slot. Entry indexes are below 1<<idxBits.
const wheelHead = 1 << 31

// push links entry i at the head of the list of tick due.
//
// Preconditions: s.mu is held; the entry is on no list.
func (s *shard) push(i, due uint32) {
	r := s.rec(i)
	h := &s.wheel[due&wheelMask]
	r.next, r.prev = *h, wheelHead|due&wheelMask
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
	if r.prev&wheelHead != 0 {
		s.wheel[r.prev&wheelMask] = r.next
	} else {
		s.rec(r.prev).next = r.next
	}
	if r.next != 0 {
		s.rec(r.next).prev = r.prev
	}
	r.next, r.prev = 0, 0
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
			t.countExpiredHandshake(s, v&maxIdx, State(v>>idxBits))
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
func (t *Table) expireSlot(s *shard, slot uint32, nowMs int64, nowTick uint32, to *stateMs, victims []uint32) []uint32 {
	i := s.wheel[slot]
	s.wheel[slot] = 0
	for i != 0 {
		r := s.rec(i)
		next := r.next
		// An entry filed again earlier in this call (a catch-up over
		// several ticks) for a later turn of the wheel may be met here
		// once more: it is not expired, and is filed again below.
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
