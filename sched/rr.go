package sched

import (
	"sync"

	"github.com/lvsd/lvsd/lvs"
)

// roundRobin is ip_vs_rr: each new connection goes to the next usable
// destination after the one chosen last, in list order, wrapping around.
type roundRobin struct {
	dests []*lvs.Dest // immutable

	mu sync.Mutex
	// last is the index of the destination chosen last, or -1 (the kernel's
	// list head) before the first choice. Guarded by mu.
	last int
}

var _ Scheduler = (*roundRobin)(nil)

func newRoundRobin(dests []*lvs.Dest, _ *config) (Scheduler, error) {
	return &roundRobin{dests: dests, last: -1}, nil
}

// Schedule checks each destination at most once, starting after the last
// choice and ending with it, as the kernel's two-pass walk does.
func (s *roundRobin) Schedule(*lvs.Tuple) *lvs.Dest {
	n := len(s.dests)
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.last
	for range n {
		i++
		if i == n {
			i = 0
		}
		if d := s.dests[i]; d.Usable() {
			s.last = i
			return d
		}
	}
	return nil
}
