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
// most 2^39 (lvs.Dest.Conns) and a weight at most 2^16 (ipvsadm's limit), so
// the products cannot overflow.

// leastConn is ip_vs_lc: the usable destination with the fewest connections,
// counted as active*256 + inactive (ip_vs_dest_conn_overhead). Weights other
// than 0 do not matter.
type leastConn struct {
	dests []*lvs.Dest // immutable
}

var _ Scheduler = (*leastConn)(nil)

func newLeastConn(dests []*lvs.Dest, _ *config) (Scheduler, error) {
	return &leastConn{dests: dests}, nil
}

func (s *leastConn) Schedule(*lvs.Tuple) *lvs.Dest {
	var least *lvs.Dest
	var loh int64
	for _, d := range s.dests {
		if !d.Usable() {
			continue
		}
		if doh := d.Conns(); least == nil || doh < loh {
			least, loh = d, doh
		}
	}
	return least
}

// weightedLeastConn is ip_vs_wlc, IPVS's default: the usable destination with
// the least overhead/weight.
type weightedLeastConn struct {
	dests []*lvs.Dest // immutable
}

var _ Scheduler = (*weightedLeastConn)(nil)

func newWeightedLeastConn(dests []*lvs.Dest, _ *config) (Scheduler, error) {
	return &weightedLeastConn{dests: dests}, nil
}

func (s *weightedLeastConn) Schedule(*lvs.Tuple) *lvs.Dest {
	return weightedLeast(s.dests)
}

// weightedLeast returns the usable destination of dests with the least
// overhead/weight, the first one on ties, or nil. lblc and lblcr use it too.
func weightedLeast(dests []*lvs.Dest) *lvs.Dest {
	var least *lvs.Dest
	var loh, lw int64
	for _, d := range dests {
		dw, ok := usableWeight(d)
		if !ok {
			continue
		}
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
	dests []*lvs.Dest // immutable
}

var _ Scheduler = (*shortestExpectedDelay)(nil)

func newShortestExpectedDelay(dests []*lvs.Dest, _ *config) (Scheduler, error) {
	return &shortestExpectedDelay{dests: dests}, nil
}

func (s *shortestExpectedDelay) Schedule(*lvs.Tuple) *lvs.Dest {
	var least *lvs.Dest
	var loh, lw int64
	for _, d := range s.dests {
		dw, ok := usableWeight(d)
		if !ok {
			continue
		}
		if doh := int64(d.ActiveConns.Load()) + 1; least == nil || loh*dw > doh*lw {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}

// neverQueue is ip_vs_nq: the first usable destination without an active
// connection, or else as sed.
type neverQueue struct {
	dests []*lvs.Dest // immutable
}

var _ Scheduler = (*neverQueue)(nil)

func newNeverQueue(dests []*lvs.Dest, _ *config) (Scheduler, error) {
	return &neverQueue{dests: dests}, nil
}

func (s *neverQueue) Schedule(*lvs.Tuple) *lvs.Dest {
	var least *lvs.Dest
	var loh, lw int64
	for _, d := range s.dests {
		dw, ok := usableWeight(d)
		if !ok {
			continue
		}
		active := int64(d.ActiveConns.Load())
		if active == 0 {
			return d
		}
		if doh := active + 1; least == nil || loh*dw > doh*lw {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}
