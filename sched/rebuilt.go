package sched

import (
	"slices"
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// rebuilt is the list of a Scheduler whose choice is a function of the list
// alone, with the table T it builds from it: each change builds a new T over
// the new list and publishes both with one atomic store, so that Schedule
// sees the list and its table change together and never takes a lock.
//
// The published state holds T by value: a Schedule reaches the table with
// one load past the atomic pointer. rebuilt has no Schedule of its own. The
// hashing schedulers (sh, dh, mh, maglev), whose whole choice costs a few
// nanoseconds, embed rebuilt and read their table in their own Schedule, as
// a plain method call from the packet path; the others are Pickers over
// the list, wrapped in rebuiltPicker.
type rebuilt[T any] struct {
	build func(dests []*lvs.Dest, c *config) (*T, error) // immutable
	c     *config                                        // immutable
	// cur is the published table and its list. Stored only by the control
	// plane's (serialized) changes.
	cur atomic.Pointer[built[T]]
}

type built[T any] struct {
	p    T           // immutable
	list []*lvs.Dest // immutable
}

// base returns r itself; a Scheduler that embeds rebuilt inherits it, so
// that direct can reach the rebuilt it embeds.
func (r *rebuilt[T]) base() *rebuilt[T] { return r }

// install builds the table over list and publishes both. list becomes
// immutable.
func (r *rebuilt[T]) install(list []*lvs.Dest) error {
	p, err := r.build(list, r.c)
	if err != nil {
		return err
	}
	r.cur.Store(&built[T]{p: *p, list: list})
	return nil
}

func (r *rebuilt[T]) AddDest(d *lvs.Dest) error {
	list, err := withHead(r.cur.Load().list, d)
	if err != nil {
		return err
	}
	return r.install(list)
}

func (r *rebuilt[T]) DelDest(d *lvs.Dest) error {
	list, _, err := without(r.cur.Load().list, d)
	if err != nil {
		return err
	}
	return r.install(list)
}

// UpdDest rebuilds too: sh, dh and mh rebuild their tables on upd_dest (a
// weight decides the buckets of sh and the slots of mh); for the others a
// rebuild changes nothing they keep.
func (r *rebuilt[T]) UpdDest(d *lvs.Dest) error {
	cur := r.cur.Load()
	if !contains(cur.list, d) {
		return ErrDestNotFound
	}
	return r.install(cur.list)
}

func (r *rebuilt[T]) Dests() []*lvs.Dest { return slices.Clone(r.cur.Load().list) }

// picker is the constraint of rebuiltPicker: PP is a pointer to the Picker
// P.
type picker[P any] interface {
	*P
	Picker
}

// rebuiltPicker is the Scheduler of a Picker P that a change rebuilds (the
// least-connection family, fo, ovf, twos): its Schedule calls P's through
// the generic dictionary, an indirect call, which is small beside their
// scans of the list.
type rebuiltPicker[P any, PP picker[P]] struct{ rebuilt[P] }

var _ Scheduler = (*rebuiltPicker[leastConn, *leastConn])(nil)

func (r *rebuiltPicker[P, PP]) Schedule(t *lvs.Tuple) *lvs.Dest {
	return PP(&r.cur.Load().p).Schedule(t)
}

// rebuild returns the builder of the rebuiltPicker of the Picker that build
// makes.
func rebuild[P any, PP picker[P]](build func([]*lvs.Dest, *config) (*P, error)) builder {
	return direct[rebuiltPicker[P, PP]](build)
}

// direct returns the builder of the Scheduler S that embeds rebuilt[T]
// (base returns it), with the table that build makes.
func direct[S any, T any, PS interface {
	*S
	Scheduler
	base() *rebuilt[T]
}](build func([]*lvs.Dest, *config) (*T, error)) builder {
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
