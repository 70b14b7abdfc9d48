package sched

import (
	"github.com/lvsd/lvsd/lvs"
)

// Slow start (lvsd's own; IPVS has none): a destination that is new in a
// running service, back from a health-check failure or back from weight 0
// takes a growing share of its weight for lvs.Dest.SlowStart (see
// lvs.Dest.Ramp). The weighted schedulers (wrr, wlc, sed, nq, twos, and the
// wlc choices of lblc and lblcr) multiply each weight by the destination's
// ramp, 1..lvs.RampSteps; lc, which has no weights, treats the ramp as a
// weight. A destination that is not ramping has the ramp lvs.RampSteps, so
// when nothing ramps every weight is scaled by the same factor and the
// choices are exactly the kernel's. rr, fo, ovf and the hashing schedulers
// (dh, sh, mh, maglev) ignore slow start: rr and fo have no notion of a
// share, ovf's capacity is its weight in connections, and a hashing
// scheduler's share is its table, which only a rebuild changes.

// rampClock reads the scheduler's clock for one Schedule call: at most once,
// and only if some destination has slow start configured, so that services
// without slow start never read the clock. Use it by value on the stack.
type rampClock struct {
	clock func() int64
	now   int64
	read  bool
}

// ramp returns d's ramp (1..lvs.RampSteps) at the call's time. Small enough
// to be inlined in the schedulers' scans: a destination without slow start
// costs one atomic load.
func (c *rampClock) ramp(d *lvs.Dest) int64 {
	if d.SlowStart.Load() <= 0 {
		return lvs.RampSteps
	}
	return c.slowRamp(d)
}

// slowRamp is ramp for a destination with slow start configured.
func (c *rampClock) slowRamp(d *lvs.Dest) int64 {
	if !c.read {
		c.now, c.read = c.clock(), true
	}
	return d.Ramp(c.now)
}

// ramping reports whether d is in slow start at the call's time.
func (c *rampClock) ramping(d *lvs.Dest) bool { return c.ramp(d) < lvs.RampSteps }
