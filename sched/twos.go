package sched

import (
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// twoChoices is ip_vs_twos, weighted power of two choices: two destinations
// drawn at random with probability by weight, and the one with the lesser
// overhead/weight of the two.
//
// Draws come from a SplitMix64 sequence whose counter advances atomically, so
// concurrent calls draw different numbers without a lock or an allocation.
// The sequence starts at a fixed seed: a scheduler's draws are reproducible.
//
// Slow start: while some destination ramps, every weight (in the draws and in
// the comparison) is multiplied by its ramp; otherwise the weights are used
// as they are, so that the draws are exactly the kernel's.
type twoChoices struct {
	dests []*lvs.Dest  // immutable
	clock func() int64 // immutable
	// seq is the SplitMix64 counter; each call adds splitmixGamma. It is
	// the config's, shared with the pickers that later changes build.
	seq *atomic.Uint64
}

var _ Picker = (*twoChoices)(nil)

func newTwoChoices(dests []*lvs.Dest, c *config) (*twoChoices, error) {
	return &twoChoices{dests: dests, clock: c.clock, seq: c.twosSeq}, nil
}

func (s *twoChoices) Schedule(*lvs.Tuple) *lvs.Dest {
	r := splitmix64(s.seq.Add(splitmixGamma))
	return s.pick(uint32(r), uint32(r>>32))
}

// pick chooses with the random numbers r1 and r2 as the kernel does with its
// two prandom_u32 draws. Each draw is reduced modulo the total weight plus
// one and walks down the list subtracting weights until it is at most 0, so
// the first usable destination's share is (weight+1)/(total+1).
func (s *twoChoices) pick(r1, r2 uint32) *lvs.Dest {
	rc := rampClock{clock: s.clock}
	var total, rampedTotal int64
	var last *lvs.Dest
	ramping := false
	for _, d := range s.dests {
		if w, ok := usableWeight(d); ok {
			r := rc.ramp(d)
			total += w
			rampedTotal += w * r
			ramping = ramping || r < lvs.RampSteps
			last = d
		}
	}
	if last == nil {
		return nil
	}
	if ramping {
		total = rampedTotal
	}
	total++
	rw1, rw2 := int64(r1)%total, int64(r2)%total

	var c1, c2 *lvs.Dest
	var w1, w2, oh1, oh2 int64
	for _, d := range s.dests {
		w, ok := usableWeight(d)
		if !ok {
			continue
		}
		if ramping {
			w *= rc.ramp(d)
		}
		rw1 -= w
		rw2 -= w
		if rw1 <= 0 && c1 == nil {
			c1, w1, oh1 = d, w, d.Conns()
		}
		if rw2 <= 0 && c2 == nil {
			c2, w2, oh2 = d, w, d.Conns()
		}
		if c1 != nil && c2 != nil {
			break
		}
	}
	switch {
	case c1 == nil && c2 == nil:
		// Weights fell between the two walks; the kernel keeps the last
		// destination of the first walk.
		return last
	case c1 == nil:
		return c2
	case c2 != nil && w2*oh1 > w1*oh2:
		return c2
	}
	return c1
}

// SplitMix64 (Steele, Lea, Flood 2014): the counter advances by the golden
// gamma and each output is a mix of the counter.
const splitmixGamma = 0x9e3779b97f4a7c15

func splitmix64(x uint64) uint64 {
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
