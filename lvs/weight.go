package lvs

import "math"

// Weights, quiescence and slow start.
//
// Times are nanoseconds of one monotonic clock shared by the whole control
// plane and the schedulers (the director uses the connection table's); the
// package never reads a clock itself, so that tests drive it.

// RampSteps is the resolution of slow start: a ramping destination takes
// 1/RampSteps, 2/RampSteps, ... of its weight. Schedulers multiply weights by
// Ramp, which is RampSteps outside slow start, so that every weight is scaled
// by the same factor and comparisons between destinations that are not
// ramping are exactly IPVS's.
const RampSteps = 64

// notRamping is rampStart of a destination that never ramped: far enough in
// the past for any slow start to be over, far enough from the minimum that
// now - notRamping cannot overflow.
const notRamping = math.MinInt64 / 2

// SetWeight changes the weight as the control plane does on a reload
// (ipvsadm -e). A non-zero weight is remembered in LastWeight. A weight
// rising from 0 (a quiescent destination put back to work) starts slow start
// at now.
func (d *Dest) SetWeight(w int32, now int64) {
	old := d.Weight.Swap(w)
	if w != 0 {
		d.LastWeight.Store(w)
	}
	if old <= 0 && w > 0 {
		d.StartRamp(now)
	}
}

// SetAvailable sets Available; a destination coming back (false to true)
// starts slow start at now. The director alone changes a destination's
// membership: health checks report to director.SetRealHealth, which unlinks
// or re-adds the destination as ipvsadm would.
func (d *Dest) SetAvailable(up bool, now int64) {
	if old := d.Available.Swap(up); up && !old {
		d.StartRamp(now)
	}
}

// StartRamp starts slow start at now: for SlowStart nanoseconds the
// destination's effective weight ramps up from 1/RampSteps of its weight.
// Without SlowStart it changes nothing.
func (d *Dest) StartRamp(now int64) { d.rampStart.Store(now) }

// Ramp returns the share of its weight that the destination takes at time
// now, in units of 1/RampSteps: RampSteps outside slow start; during it, a
// linear ramp from 1 at StartRamp to RampSteps at SlowStart later. It costs
// one atomic load when SlowStart is 0.
func (d *Dest) Ramp(now int64) int64 {
	dur := d.SlowStart.Load()
	if dur <= 0 {
		return RampSteps
	}
	el := now - d.rampStart.Load()
	switch {
	case el >= dur:
		return RampSteps
	case el <= 0:
		return 1
	}
	// el < dur, so the product stays below (RampSteps-1)*dur: no overflow
	// for any slow start below 2^57 ns (4.5 years).
	return 1 + (RampSteps-1)*el/dur
}

// Ramping reports whether the destination is in slow start at now.
func (d *Dest) Ramping(now int64) bool { return d.Ramp(now) < RampSteps }
