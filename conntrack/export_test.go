package conntrack

// Test-only API: allocating conveniences over the packet path's
// zero-allocation methods, and accessors the tests read entries with.

import (
	"time"

	"github.com/lvsd/lvsd/lvs"
)

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

// Insert is InsertInto without a controller, into an Entry it allocates.
func (t *Table) Insert(in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64) (e *Entry, created bool, err error) {
	return t.InsertControlled(in, d, svc, clientMAC, now, nil)
}

// InsertControlled is InsertInto into an Entry it allocates.
func (t *Table) InsertControlled(in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64, ctl Controller) (e *Entry, created bool, err error) {
	e = new(Entry)
	created, err = t.InsertInto(e, in, d, svc, clientMAC, now, ctl)
	if err != nil {
		return nil, false, err
	}
	return e, created, nil
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
