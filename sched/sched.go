package sched

import (
	"errors"

	"github.com/lvsd/lvsd/lvs"
)

// Scheduler picks the destination for a new connection and holds the
// service's destination list, in the kernel's list order, across changes.
//
// Schedule is called concurrently by the packet readers. AddDest, DelDest
// and UpdDest are the kernel's add_dest, del_dest and upd_dest callbacks
// combined with the list change they follow: the new list and the
// scheduler's reaction to it become visible to Schedule together. The
// control plane serializes them (at most one change runs at a time); each may
// run concurrently with Schedule.
type Scheduler interface {
	Picker
	// AddDest links d at the head of the list, as ipvsadm -a does
	// (list_add_rcu), and tells the scheduler. d must not be in the list.
	AddDest(d *lvs.Dest) error
	// DelDest unlinks d, as ipvsadm -d does, and tells the scheduler.
	DelDest(d *lvs.Dest) error
	// UpdDest tells the scheduler that d's weight or thresholds changed
	// (ipvsadm -e); the caller has stored the new values in d first.
	UpdDest(d *lvs.Dest) error
	// Dests returns the list in the kernel's order (the head first). The
	// caller owns the returned slice, not the destinations.
	Dests() []*lvs.Dest
}

// Ticker is implemented by the schedulers that have a periodic timer of
// their own in the kernel (lblc and lblcr expire their tables on it). The
// control plane calls Tick every TickInterval with the scheduler's clock.
type Ticker interface {
	Tick(now int64)
}

// TickInterval is the period of the kernel's lblc and lblcr check timers
// (CHECK_EXPIRE_INTERVAL, 60 s), in nanoseconds.
const TickInterval = localityCheckInterval

// Errors of AddDest and DelDest; the control plane's list and the
// scheduler's disagree when they happen, which is a bug in the caller.
var (
	ErrDestExists   = errors.New("destination already in the list")
	ErrDestNotFound = errors.New("destination not in the list")
)

// Picker is the part of a Scheduler the packet path calls (the type of
// forward.Service.Sched). Within this package it is also what the builders
// of the least-connection family, fo, ovf and twos return; the hashing
// schedulers build a table instead. A change builds a new Picker or table
// over the new list and publishes both atomically (see rebuilt); the
// kernel's callbacks of these schedulers either do nothing (lc, wlc, sed,
// nq, fo, ovf, twos) or rebuild their tables from the whole list (sh, dh,
// mh), which is what a rebuild does.
type Picker interface {
	// Schedule returns the destination for the flow t (client to virtual
	// service), or nil when no destination may take a new connection.
	// It does not allocate.
	Schedule(t *lvs.Tuple) *lvs.Dest
}

// withHead returns a copy of list with d at its head.
func withHead(list []*lvs.Dest, d *lvs.Dest) ([]*lvs.Dest, error) {
	for _, x := range list {
		if x == d {
			return nil, ErrDestExists
		}
	}
	n := make([]*lvs.Dest, 0, len(list)+1)
	return append(append(n, d), list...), nil
}

// without returns a copy of list without d, and d's index in list.
func without(list []*lvs.Dest, d *lvs.Dest) ([]*lvs.Dest, int, error) {
	for i, x := range list {
		if x == d {
			n := make([]*lvs.Dest, 0, len(list)-1)
			return append(append(n, list[:i]...), list[i+1:]...), i, nil
		}
	}
	return nil, -1, ErrDestNotFound
}

func contains(list []*lvs.Dest, d *lvs.Dest) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}
