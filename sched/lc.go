package sched

import (
	"github.com/lvsd/lvsd/lvs"
)

// The least-connection family scans the list without a lock, as the kernel
// scans it under RCU: counters move while the scan runs, and a choice made
// from a slightly stale count is as good as the kernel's. Every scan keeps the
// first of equally good destinations (strict comparisons), as the kernel does.
//
// Load is compared as overhead/weight through cross-multiplication,
// a.overhead * b.weight > b.overhead * a.weight, in int64: the overhead is at
// most 2^39 (lvs.Dest.Conns) and a weight at most 2^16 (ipvsadm's limit)
// times the slow-start ramp (2^6, see slowstart.go), so the products cannot
// overflow. Every weight is multiplied by its ramp, which is the same for
// all destinations outside slow start: the comparisons are then the kernel's.

// leastConn is ip_vs_lc: the usable destination with the fewest connections,
// counted as active*256 + inactive (ip_vs_dest_conn_overhead). Weights other
// than 0 do not matter; a destination in slow start counts its connections
// divided by its ramp (as wlc with every weight 1).
type leastConn struct {
	dests []*lvs.Dest  // immutable
	clock func() int64 // immutable
}

var _ Picker = (*leastConn)(nil)

func newLeastConn(dests []*lvs.Dest, c *config) (*leastConn, error) {
	return &leastConn{dests: dests, clock: c.clock}, nil
}

func (s *leastConn) Schedule(*lvs.Tuple) *lvs.Dest {
	rc := rampClock{clock: s.clock}
	var least *lvs.Dest
	var loh, lr int64
	for _, d := range s.dests {
		if !d.Usable() {
			continue
		}
		// doh/dr < loh/lr; with equal ramps, the kernel's doh < loh.
		if doh, dr := d.Conns(), rc.ramp(d); least == nil || doh*lr < loh*dr {
			least, loh, lr = d, doh, dr
		}
	}
	return least
}

// weightedLeastConn is ip_vs_wlc, IPVS's default: the usable destination with
// the least overhead/weight.
type weightedLeastConn struct {
	dests []*lvs.Dest  // immutable
	clock func() int64 // immutable
}

var _ Picker = (*weightedLeastConn)(nil)

func newWeightedLeastConn(dests []*lvs.Dest, c *config) (*weightedLeastConn, error) {
	return &weightedLeastConn{dests: dests, clock: c.clock}, nil
}

func (s *weightedLeastConn) Schedule(*lvs.Tuple) *lvs.Dest {
	return weightedLeast(s.dests, &rampClock{clock: s.clock})
}

// weightedLeast returns the usable destination of dests with the least
// overhead/weight (weights ramped by slow start), the first one on ties, or
// nil. lblc and lblcr use it too.
func weightedLeast(dests []*lvs.Dest, rc *rampClock) *lvs.Dest {
	var least *lvs.Dest
	var loh, lw int64
	for _, d := range dests {
		dw, ok := usableWeight(d)
		if !ok {
			continue
		}
		dw *= rc.ramp(d)
		if doh := d.Conns(); least == nil || loh*dw > doh*lw {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}

// shortestExpectedDelay is ip_vs_sed: the usable destination with the least
// (active+1)/weight, the delay a new connection would expect there. Inactive
// connections do not count.
type shortestExpectedDelay struct {
	dests []*lvs.Dest  // immutable
	clock func() int64 // immutable
}

var _ Picker = (*shortestExpectedDelay)(nil)

func newShortestExpectedDelay(dests []*lvs.Dest, c *config) (*shortestExpectedDelay, error) {
	return &shortestExpectedDelay{dests: dests, clock: c.clock}, nil
}

func (s *shortestExpectedDelay) Schedule(*lvs.Tuple) *lvs.Dest {
	rc := rampClock{clock: s.clock}
	var least *lvs.Dest
	var loh, lw int64
	for _, d := range s.dests {
		dw, ok := usableWeight(d)
		if !ok {
			continue
		}
		dw *= rc.ramp(d)
		if doh := int64(d.ActiveConns.Load()) + 1; least == nil || loh*dw > doh*lw {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}

// neverQueue is ip_vs_nq: the first usable destination without an active
// connection, or else as sed. A destination in slow start is never taken
// for being idle (it always is, at first): it competes as in sed, with its
// ramped weight.
type neverQueue struct {
	dests []*lvs.Dest  // immutable
	clock func() int64 // immutable
}

var _ Picker = (*neverQueue)(nil)

func newNeverQueue(dests []*lvs.Dest, c *config) (*neverQueue, error) {
	return &neverQueue{dests: dests, clock: c.clock}, nil
}

func (s *neverQueue) Schedule(*lvs.Tuple) *lvs.Dest {
	rc := rampClock{clock: s.clock}
	var least *lvs.Dest
	var loh, lw int64
	for _, d := range s.dests {
		dw, ok := usableWeight(d)
		if !ok {
			continue
		}
		r := rc.ramp(d)
		active := int64(d.ActiveConns.Load())
		if active == 0 && r == lvs.RampSteps {
			return d
		}
		dw *= r
		if doh := active + 1; least == nil || loh*dw > doh*lw {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}
