package conntrack

import (
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// What a dry run of the packet path (a trace of a described packet,
// forward.Forwarder.Explain) needs from the table: the same decisions as
// the packet path's calls, without their effects.

// NewScratchEntry returns an Entry for a dry run. Lookups fill it as they
// fill NewEntry's, but what is counted on it (CountIn, CountOut,
// CountFailure) goes to counters of its own that the table never reads.
// Unlike NewEntry's, the table keeps no reference to it.
func (t *Table) NewScratchEntry() *Entry {
	ws := &workerStats{}
	pages := []*page{}
	ws.pages.Store(&pages)
	return &Entry{t: t, ws: ws, scratch: true}
}

// scratchBind is the binding a scratch Entry counts under once Unlink made
// it stand for a connection not in the table; its counters are discarded.
const scratchBind = 1

// Unlink makes e stand for a connection that is not in the table (the one
// a dry run would create): State returns StateNone, Update, Track and
// Remove change nothing. A scratch Entry (NewScratchEntry) still counts
// into its discarded counters; any other counts into the destination's
// lvs.Stats, as an Entry filled by hand does.
func (e *Entry) Unlink() {
	e.loc, e.gen, e.bind = 0, 0, 0
	if e.scratch {
		e.bind = scratchBind
	}
}

// AdmitDry is Admit without counting the connection in the second's rate:
// the error Admit would return now.
func (t *Table) AdmitDry(src *lvs.Addr, now int64) error {
	l := t.src.lim.Load()
	sk := t.src.sk.Load()
	if l == nil || sk == nil || l.Conns <= 0 && l.NewPerSec <= 0 {
		return nil
	}
	a, b := t.src.slots(src, sk)
	if l.Conns > 0 && min(sk.conns[0][a].Load(), sk.conns[1][b].Load()) >= int32(l.Conns) {
		return ErrSourceLimit
	}
	if l.NewPerSec > 0 {
		sec := uint64(t.ms(now) / 1000)
		if n := min(peek1(&sk.rate[0][a], sec), peek1(&sk.rate[1][b], sec)) + 1; n > uint64(l.NewPerSec) {
			return ErrSourceRate
		}
	}
	return nil
}

// peek1 is the count of second sec in c (see bump1), without adding one.
func peek1(c *atomic.Uint64, sec uint64) uint64 {
	if v := c.Load(); v>>32 == sec&(1<<32-1) {
		return v & (1<<32 - 1)
	}
	return 0
}
