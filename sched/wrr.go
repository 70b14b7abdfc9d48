package sched

import (
	"slices"
	"sync"

	"github.com/lvsd/lvsd/lvs"
)

// weightedRoundRobin is ip_vs_wrr. It walks the list in passes: a pass takes
// every destination whose weight is at least the current weight cw; after each
// pass cw drops by di, the gcd of the weights, from mw down to at most di, and
// then starts again at mw. Real servers A, B, C added in that order with
// weights 4, 3, 2 make the list C, B, A, which gives A B A C B A C B A,
// repeating.
//
// mw is the maximum weight less (di - 1), so that the last pass is for weight
// 1 and still finds a destination whose weight fell below di while the cycle
// ran; this is the kernel's guard for weights changed in parallel.
//
// AddDest, DelDest and UpdDest are the kernel's ip_vs_wrr_dest_changed: the
// position goes back to the list head, di and mw are computed again from
// the list at once, and cw is kept where it is valid for them. Besides, the
// scheduler keeps the effective weight it last saw of each destination and
// compares it with the current one whenever the walk visits that
// destination: a difference replays the same update before the walk goes
// on. That catches what has no callback: a slow-start ramp stepping (below),
// and a weight stored before its UpdDest arrives.
//
// Slow start: while some destination ramps, every effective weight is the
// weight times its ramp (scale lvs.RampSteps); otherwise the weights are
// used as they are (scale 1), so that the cycle is exactly the kernel's. A
// ramp starting, stepping or ending changes an effective weight, which the
// walk notices like any other change; a ramp has lvs.RampSteps steps, so a
// destination's slow start restarts the cycle at most that many times.
type weightedRoundRobin struct {
	clock func() int64 // immutable

	mu sync.Mutex
	// dests is the list; replaced whole by a change. Guarded by mu.
	dests []*lvs.Dest
	// scale is 1, or lvs.RampSteps while a destination ramps. Guarded by
	// mu.
	scale int32
	// seen[i] is the effective weight of dests[i] that di and mw were
	// computed from. Guarded by mu.
	seen []int32
	// pos is the index of the destination chosen last, or -1 for the list
	// head. Guarded by mu.
	pos int
	// cw is the current weight, mw the maximum weight less (di - 1), and di
	// the gcd of the positive weights (1 when there are none). Guarded by mu.
	cw, mw, di int32
}

var _ Scheduler = (*weightedRoundRobin)(nil)

func newWeightedRoundRobin(dests []*lvs.Dest, c *config) (Scheduler, error) {
	s := &weightedRoundRobin{dests: dests, clock: c.clock, pos: -1}
	s.recompute(&rampClock{clock: c.clock})
	s.cw = s.mw
	return s, nil
}

// maxRampedWeight caps a weight that slow start multiplies, so that the
// product fits an int32 (weights are at most 65535 from the configuration).
const maxRampedWeight = 1<<31/lvs.RampSteps - 1

// effectiveWeight is d's weight as wrr counts it: 0 while d is unavailable,
// times d's ramp at scale lvs.RampSteps. At scale 1 a ramping destination
// gives -1, which no seen weight equals, so that the walk recomputes (and
// recompute switches the scale).
//
// Preconditions: s.mu is held, or s is not yet shared.
func (s *weightedRoundRobin) effectiveWeight(d *lvs.Dest, rc *rampClock) int32 {
	if !d.Available.Load() {
		return 0
	}
	w := max(d.Weight.Load(), 0)
	if w == 0 {
		return 0
	}
	r := rc.ramp(d)
	if s.scale == 1 {
		if r < lvs.RampSteps {
			return -1
		}
		return w
	}
	return min(w, maxRampedWeight) * int32(r)
}

// recompute samples every weight into seen and derives di and mw from them.
//
// Preconditions: s.mu is held, or s is not yet shared.
func (s *weightedRoundRobin) recompute(rc *rampClock) {
	if len(s.seen) != len(s.dests) {
		s.seen = make([]int32, len(s.dests)) // on a change only
	}
	s.scale = 1
	for _, d := range s.dests {
		if d.Available.Load() && d.Weight.Load() > 0 && rc.ramping(d) {
			s.scale = lvs.RampSteps
			break
		}
	}
	var g, maxw int32
	for i, d := range s.dests {
		w := s.effectiveWeight(d, rc)
		s.seen[i] = w
		if w > 0 {
			g = gcd(g, w)
			maxw = max(maxw, w)
		}
	}
	if g == 0 {
		g = 1
	}
	s.di = g
	s.mw = maxw - (g - 1)
}

// changed is the kernel's update on a changed destination: restart from the
// head with new di and mw, keeping cw where it is valid for them.
//
// Preconditions: s.mu is held.
func (s *weightedRoundRobin) changed(rc *rampClock) {
	s.pos = -1
	s.recompute(rc)
	switch {
	case s.cw > s.mw || s.cw == 0:
		s.cw = s.mw
	case s.di > 1:
		s.cw = (s.cw/s.di)*s.di + 1
	}
}

// stale reports whether any weight differs from seen.
//
// Preconditions: s.mu is held.
func (s *weightedRoundRobin) stale(rc *rampClock) bool {
	for i, d := range s.dests {
		if s.effectiveWeight(d, rc) != s.seen[i] {
			return true
		}
	}
	return false
}

func (s *weightedRoundRobin) Schedule(*lvs.Tuple) *lvs.Dest {
	rc := rampClock{clock: s.clock}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		d, stale := s.next(&rc)
		if !stale {
			return d
		}
		s.changed(&rc)
	}
}

// next runs one kernel walk. It returns stale true, having chosen nothing,
// when it meets a destination whose weight differs from seen.
//
// Preconditions: s.mu is held.
func (s *weightedRoundRobin) next(rc *rampClock) (d *lvs.Dest, stale bool) {
	if s.mw == 0 {
		// No positive weight when last computed; the walk would not visit
		// anything, so look for a raised weight here.
		return nil, s.stale(rc)
	}
	const none = -2 // matches no index and not the head
	n := len(s.dests)
	last, stop := s.pos, none
	lastPass, restarted := false, false
	i := s.pos
	for {
		for i++; i < n; i++ {
			d := s.dests[i]
			w := s.effectiveWeight(d, rc)
			if w != s.seen[i] {
				return nil, true
			}
			if !d.Overloaded.Load() && w >= s.cw {
				s.pos = i
				return d, false
			}
			if i == stop {
				// Every destination was checked for weight >= 1.
				s.pos = i
				return nil, false
			}
		}
		i = -1 // at the head; the next pass starts with the first
		s.cw -= s.di
		if s.cw <= 0 {
			s.cw = s.mw
			// Stop when the pass for weight >= 1 has covered everything:
			// either it ran after a restart from the head, or the walk
			// started at the head and so covered the whole list already.
			if lastPass || last == -1 {
				s.pos = -1
				return nil, false
			}
			restarted = true
		}
		lastPass = s.cw <= s.di
		if lastPass && restarted && last != -1 {
			// The first partial pass went from last to the end only; the
			// final one needs to run up to last.
			stop = last
		}
	}
}

func (s *weightedRoundRobin) AddDest(d *lvs.Dest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, err := withHead(s.dests, d)
	if err != nil {
		return err
	}
	s.dests = list
	s.changed(&rampClock{clock: s.clock})
	return nil
}

func (s *weightedRoundRobin) DelDest(d *lvs.Dest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, _, err := without(s.dests, d)
	if err != nil {
		return err
	}
	s.dests = list
	s.changed(&rampClock{clock: s.clock})
	return nil
}

func (s *weightedRoundRobin) UpdDest(d *lvs.Dest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !contains(s.dests, d) {
		return ErrDestNotFound
	}
	s.changed(&rampClock{clock: s.clock})
	return nil
}

func (s *weightedRoundRobin) Dests() []*lvs.Dest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dests)
}

// gcd returns the greatest common divisor of a and b (b > 0; gcd(0, b) = b).
func gcd(a, b int32) int32 {
	for a != 0 {
		a, b = b%a, a
	}
	return b
}
