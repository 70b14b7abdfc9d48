package sched

import (
	"slices"
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// picker is the constraint of rebuilt's type parameters: PP is a pointer to
// the Picker P.
type picker[P any] interface {
	*P
	Picker
}

// rebuilt is the Scheduler of a Picker P: each change builds a new P over the
// new list and publishes both with one atomic store, so that Schedule sees
// the list and its tables change together and never takes a lock.
//
// The published state holds the Picker by value, so that Schedule reaches
// its table with one load past the atomic pointer. rebuilt's own Schedule
// calls P's through the generic dictionary, an indirect call; the hashing
// schedulers, whose whole choice costs a few nanoseconds, embed rebuilt in a
// type of their own (dhSched, shSched, mhSched, maglevSched) whose Schedule
// calls P's directly: a static call, which the compiler inlines where P's
// Schedule is small (dh, sh).
type rebuilt[P any, PP picker[P]] struct {
	build func(dests []*lvs.Dest, c *config) (PP, error) // immutable
	c     *config                                        // immutable
	// cur is the published Picker and its list. Stored only by the control
	// plane's (serialized) changes.
	cur atomic.Pointer[pickerState[P]]
}

type pickerState[P any] struct {
	p    P           // immutable
	list []*lvs.Dest // immutable
}

var _ Scheduler = (*rebuilt[leastConn, *leastConn])(nil)

// rebuild returns the builder of the Scheduler that rebuilds the Picker
// build makes on every change.
func rebuild[P any, PP picker[P]](build func([]*lvs.Dest, *config) (PP, error)) builder {
	return direct[rebuilt[P, PP]](build)
}

func (r *rebuilt[P, PP]) Schedule(t *lvs.Tuple) *lvs.Dest {
	return PP(&r.cur.Load().p).Schedule(t)
}

// install builds the Picker over list and publishes both. list becomes
// immutable.
func (r *rebuilt[P, PP]) install(list []*lvs.Dest) error {
	p, err := r.build(list, r.c)
	if err != nil {
		return err
	}
	r.cur.Store(&pickerState[P]{p: *p, list: list})
	return nil
}

func (r *rebuilt[P, PP]) AddDest(d *lvs.Dest) error {
	list, err := withHead(r.cur.Load().list, d)
	if err != nil {
		return err
	}
	return r.install(list)
}

func (r *rebuilt[P, PP]) DelDest(d *lvs.Dest) error {
	list, _, err := without(r.cur.Load().list, d)
	if err != nil {
		return err
	}
	return r.install(list)
}

// UpdDest rebuilds too: sh, dh and mh rebuild their tables on upd_dest (a
// weight decides the buckets of sh and the slots of mh); for the others a
// rebuild changes nothing they keep.
func (r *rebuilt[P, PP]) UpdDest(d *lvs.Dest) error {
	cur := r.cur.Load()
	if !contains(cur.list, d) {
		return ErrDestNotFound
	}
	return r.install(cur.list)
}

func (r *rebuilt[P, PP]) Dests() []*lvs.Dest { return slices.Clone(r.cur.Load().list) }

// inner returns the Picker in force (a PP); tests read its tables.
func (r *rebuilt[P, PP]) inner() Picker { return PP(&r.cur.Load().p) }

// The hashing schedulers: rebuilt with a Schedule that calls the Picker's
// directly (see rebuilt).
type (
	dhSched struct {
		rebuilt[destinationHash, *destinationHash]
	}
	shSched struct {
		rebuilt[sourceHash, *sourceHash]
	}
	mhSched struct {
		rebuilt[maglevIPVS, *maglevIPVS]
	}
	maglevSched struct{ rebuilt[maglev, *maglev] }
)

var (
	_ Scheduler = (*dhSched)(nil)
	_ Scheduler = (*shSched)(nil)
	_ Scheduler = (*mhSched)(nil)
	_ Scheduler = (*maglevSched)(nil)
)

func (s *dhSched) Schedule(t *lvs.Tuple) *lvs.Dest     { return s.cur.Load().p.Schedule(t) }
func (s *shSched) Schedule(t *lvs.Tuple) *lvs.Dest     { return s.cur.Load().p.Schedule(t) }
func (s *mhSched) Schedule(t *lvs.Tuple) *lvs.Dest     { return s.cur.Load().p.Schedule(t) }
func (s *maglevSched) Schedule(t *lvs.Tuple) *lvs.Dest { return s.cur.Load().p.Schedule(t) }

// direct returns the builder of the Scheduler S that is or embeds
// rebuilt[P, PP] (base returns it) and rebuilds the Picker build makes.
func direct[S any, P any, PP picker[P], PS interface {
	*S
	Scheduler
	base() *rebuilt[P, PP]
}](build func([]*lvs.Dest, *config) (PP, error)) builder {
	return func(list []*lvs.Dest, c *config) (Scheduler, error) {
		s := PS(new(S))
		r := s.base()
		r.build, r.c = build, c
		if err := r.install(list); err != nil {
			return nil, err
		}
		return s, nil
	}
}

// base returns r itself; the hashing schedulers inherit it, so that direct
// can reach the rebuilt they embed.
func (r *rebuilt[P, PP]) base() *rebuilt[P, PP] { return r }
