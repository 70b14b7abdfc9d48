package sched

import (
	"slices"
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// rebuilt is the Scheduler of a Picker: each change builds a new Picker over
// the new list and publishes both with one atomic store, so that Schedule
// sees the list and its tables change together and never takes a lock.
type rebuilt struct {
	build builder
	c     *config
	// cur is the published Picker and its list. Stored only by the control
	// plane's (serialized) changes.
	cur atomic.Pointer[pickerState]
}

type pickerState struct {
	p    Picker
	list []*lvs.Dest // immutable
}

var _ Scheduler = (*rebuilt)(nil)

func (r *rebuilt) Schedule(t *lvs.Tuple) *lvs.Dest { return r.cur.Load().p.Schedule(t) }

func (r *rebuilt) install(list []*lvs.Dest) error {
	p, err := r.build(list, r.c)
	if err != nil {
		return err
	}
	r.cur.Store(&pickerState{p: p, list: list})
	return nil
}

func (r *rebuilt) AddDest(d *lvs.Dest) error {
	list, err := withHead(r.cur.Load().list, d)
	if err != nil {
		return err
	}
	return r.install(list)
}

func (r *rebuilt) DelDest(d *lvs.Dest) error {
	list, _, err := without(r.cur.Load().list, d)
	if err != nil {
		return err
	}
	return r.install(list)
}

// UpdDest rebuilds too: sh, dh and mh rebuild their tables on upd_dest (a
// weight decides the buckets of sh and the slots of mh); for the others a
// rebuild changes nothing they keep.
func (r *rebuilt) UpdDest(d *lvs.Dest) error {
	cur := r.cur.Load()
	if !contains(cur.list, d) {
		return ErrDestNotFound
	}
	return r.install(cur.list)
}

func (r *rebuilt) Dests() []*lvs.Dest { return slices.Clone(r.cur.Load().list) }

// inner returns the Picker in force; tests read its tables.
func (r *rebuilt) inner() Picker { return r.cur.Load().p }
