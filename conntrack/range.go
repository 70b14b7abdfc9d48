package conntrack

import "time"

// Range calls fn for every connection until fn returns false, for a control
// plane listing (ipvsadm -Lc). e is a copy valid only during the call. Range
// holds no lock while fn runs, so fn may call any method of the table;
// connections inserted or removed during Range may or may not be seen. It
// allocates a buffer of copies; it is not for the packet path.
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
