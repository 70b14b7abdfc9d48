package sched

import (
	"slices"
	"sync"

	"github.com/lvsd/lvsd/lvs"
)

// roundRobin is ip_vs_rr: each new connection goes to the next usable
// destination after the one chosen last, in list order, wrapping around.
//
// The kernel's cursor is a pointer into the list; here it is an index, which
// the changes keep pointing at the same destination: AddDest (no callback in
// the kernel) links at the head, before the cursor, and DelDest is the
// kernel's ip_vs_rr_del_dest: a cursor on the deleted destination moves back
// to the one before it (or to the head), so that the walk goes on where it
// was.
type roundRobin struct {
	mu sync.Mutex
	// dests is the list; replaced whole by a change. Guarded by mu.
	dests []*lvs.Dest
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
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.dests)
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

func (s *roundRobin) AddDest(d *lvs.Dest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, err := withHead(s.dests, d)
	if err != nil {
		return err
	}
	s.dests = list
	if s.last >= 0 {
		s.last++ // the same destination, one further down
	}
	return nil
}

func (s *roundRobin) DelDest(d *lvs.Dest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, i, err := without(s.dests, d)
	if err != nil {
		return err
	}
	s.dests = list
	if s.last >= i {
		// On d: back to its predecessor (the head for the first). After
		// d: the same destination, one further up.
		s.last--
	}
	return nil
}

func (s *roundRobin) UpdDest(d *lvs.Dest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !contains(s.dests, d) {
		return ErrDestNotFound
	}
	return nil
}

func (s *roundRobin) Dests() []*lvs.Dest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dests)
}
