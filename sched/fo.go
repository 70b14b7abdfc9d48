package sched

import (
	"github.com/lvsd/lvsd/lvs"
)

// failover is ip_vs_fo, weighted failover: every new connection goes to the
// usable destination of highest weight, the first of equals, so traffic
// moves to the next weight down only while the higher ones are unusable.
type failover struct {
	dests []*lvs.Dest // immutable
}

var _ Picker = (*failover)(nil)

func newFailover(dests []*lvs.Dest, _ *config) (*failover, error) {
	return &failover{dests: dests}, nil
}

func (s *failover) Schedule(*lvs.Tuple) *lvs.Dest {
	var best *lvs.Dest
	var hw int64
	for _, d := range s.dests {
		if w, ok := usableWeight(d); ok && w > hw {
			best, hw = d, w
		}
	}
	return best
}

// overflow is ip_vs_ovf: the usable destination of highest weight (the first
// of equals) whose active connections do not exceed its weight, so a
// destination takes connections until it has weight+1 active ones and then
// overflows to the next. Only active connections count, so it suits TCP
// rather than UDP.
type overflow struct {
	dests []*lvs.Dest // immutable
}

var _ Picker = (*overflow)(nil)

func newOverflow(dests []*lvs.Dest, _ *config) (*overflow, error) {
	return &overflow{dests: dests}, nil
}

func (s *overflow) Schedule(*lvs.Tuple) *lvs.Dest {
	var best *lvs.Dest
	var hw int64
	for _, d := range s.dests {
		w, ok := usableWeight(d)
		if !ok || int64(d.ActiveConns.Load()) > w {
			continue
		}
		if best == nil || w > hw {
			best, hw = d, w
		}
	}
	return best
}
