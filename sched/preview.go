package sched

import (
	"slices"

	"github.com/lvsd/lvsd/lvs"
)

// Previewer is implemented by every scheduler and every Picker of this
// package: a dry run of Schedule, for `lvsd trace` of a described packet.
//
// Preview(t) returns the destination that Schedule(t) would return if it
// were called now instead, and changes nothing: not rr's or wrr's position
// (nor wrr's view of the weights), not the lblc and lblcr tables (no entry
// added, no last-use time moved, no set member added or dropped), not twos's
// draw counter. So any number of Previews leaves the sequence of Schedule's
// choices as it was. A Preview and a Schedule running at the same time on
// different goroutines may of course see each other's effect (Preview then
// tells what the Schedule after that one returns).
//
// Preview is not on the packet path: it may allocate (wrr copies its state)
// and takes the scheduler's mutex where Schedule does.
type Previewer interface {
	Preview(t *lvs.Tuple) *lvs.Dest
}

// Preview is p's dry-run choice for t (see Previewer). Every Picker of this
// package implements Previewer; a Picker from elsewhere that does not gives
// ok false, and the caller must not call its Schedule in its stead.
func Preview(p Picker, t *lvs.Tuple) (d *lvs.Dest, ok bool) {
	pv, ok := p.(Previewer)
	if !ok {
		return nil, false
	}
	return pv.Preview(t), true
}

var (
	_ Previewer = (*rebuiltPicker[leastConn, *leastConn])(nil)
	_ Previewer = (*roundRobin)(nil)
	_ Previewer = (*weightedRoundRobin)(nil)
	_ Previewer = (*lblc)(nil)
	_ Previewer = (*lblcr)(nil)
	_ Previewer = (*leastConn)(nil)
	_ Previewer = (*weightedLeastConn)(nil)
	_ Previewer = (*shortestExpectedDelay)(nil)
	_ Previewer = (*neverQueue)(nil)
	_ Previewer = (*failover)(nil)
	_ Previewer = (*overflow)(nil)
	_ Previewer = (*sourceHash)(nil)
	_ Previewer = (*destinationHash)(nil)
	_ Previewer = (*maglevIPVS)(nil)
	_ Previewer = (*maglev)(nil)
	_ Previewer = (*twoChoices)(nil)
)

// Preview asks the Picker in force.
func (r *rebuiltPicker[P, PP]) Preview(t *lvs.Tuple) *lvs.Dest {
	d, _ := Preview(PP(&r.cur.Load().p), t)
	return d
}

// The schedulers without state of their own: Schedule reads the list, the
// destinations and immutable tables only, so it is its own preview.

func (s *leastConn) Preview(t *lvs.Tuple) *lvs.Dest             { return s.Schedule(t) }
func (s *weightedLeastConn) Preview(t *lvs.Tuple) *lvs.Dest     { return s.Schedule(t) }
func (s *shortestExpectedDelay) Preview(t *lvs.Tuple) *lvs.Dest { return s.Schedule(t) }
func (s *neverQueue) Preview(t *lvs.Tuple) *lvs.Dest            { return s.Schedule(t) }
func (s *failover) Preview(t *lvs.Tuple) *lvs.Dest              { return s.Schedule(t) }
func (s *overflow) Preview(t *lvs.Tuple) *lvs.Dest              { return s.Schedule(t) }
func (s *sourceHash) Preview(t *lvs.Tuple) *lvs.Dest            { return s.Schedule(t) }
func (s *destinationHash) Preview(t *lvs.Tuple) *lvs.Dest       { return s.Schedule(t) }
func (s *maglevIPVS) Preview(t *lvs.Tuple) *lvs.Dest            { return s.Schedule(t) }
func (s *maglev) Preview(t *lvs.Tuple) *lvs.Dest                { return s.Schedule(t) }

// Preview draws the numbers the next Schedule will draw (the counter's next
// value) without taking them.
func (s *twoChoices) Preview(*lvs.Tuple) *lvs.Dest {
	r := splitmix64(s.seq.Load() + splitmixGamma)
	return s.pick(uint32(r), uint32(r>>32))
}

// Preview runs Schedule's walk on a copy of the position.
func (s *roundRobin) Preview(t *lvs.Tuple) *lvs.Dest {
	s.mu.Lock()
	c := roundRobin{dests: s.dests, last: s.last}
	s.mu.Unlock()
	return c.Schedule(t)
}

// Preview runs Schedule, the walk and the update of a changed weight
// included, on a copy of the scheduler's state.
func (s *weightedRoundRobin) Preview(t *lvs.Tuple) *lvs.Dest {
	s.mu.Lock()
	c := weightedRoundRobin{
		clock: s.clock, dests: s.dests, scale: s.scale, seen: slices.Clone(s.seen),
		pos: s.pos, cw: s.cw, mw: s.mw, di: s.di,
	}
	s.mu.Unlock()
	return c.Schedule(t)
}

// Preview is Schedule's decision without its writes: the cached server if
// it still serves, else the wlc choice (which Schedule would then cache).
func (s *lblc) Preview(t *lvs.Tuple) *lvs.Dest {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if en := s.tab.get(&t.Dst); en != nil {
		if d := en.v; d.Weight.Load() > 0 && d.Available.Load() && !localityOverloaded(d, s.dests) {
			return d
		}
	}
	return weightedLeast(s.dests, &rampClock{now: now, read: true})
}

// Preview is Schedule's decision without its writes: the least loaded
// member of the address's set if it is not overloaded, else the wlc choice
// (which Schedule would add to the set). The member Schedule may drop from
// an old set is chosen after the decision and does not change it.
func (s *lblcr) Preview(t *lvs.Tuple) *lvs.Dest {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := rampClock{now: now, read: true}
	if en := s.tab.get(&t.Dst); en != nil {
		if d := weightedLeast(en.v.members, &rc); d != nil && !localityOverloaded(d, s.dests) {
			return d
		}
	}
	return weightedLeast(s.dests, &rc)
}
