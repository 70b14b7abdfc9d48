package conntrack

import "time"

// TimeLeft returns how long the connection e (a copy from Lookup or
// LookupInto) has left at time now unless a packet comes: its state's
// timeout after its last packet, as ipvsadm -Lc's "expire"; 0 once it has
// left the table. For tracing and listings; it reads atomics only.
func (e *Entry) TimeLeft(now int64) time.Duration {
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
