package conntrack

// Test-only API: allocating conveniences over the packet path's
// zero-allocation methods, and accessors the tests read entries with.

import (
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Live reports whether the connection is still in the table.
func (e *Entry) Live() bool { return e.loc != 0 && e.State() != stateDead }

// Same reports whether e and o are copies of the same connection.
func (e *Entry) Same(o *Entry) bool {
	return e.t == o.t && e.loc == o.loc && e.gen == o.gen && (e.loc != 0 || e == o)
}

// LastSeen returns the table time (milliseconds since the table was made)
// of the connection's last packet.
func (e *Entry) LastSeen() time.Duration {
	if e.loc == 0 {
		return 0
	}
	return time.Duration(e.t.rec(e.loc).last.Load()) * time.Millisecond
}

// Insert is InsertInto without a controller, into an Entry it allocates.
func (t *Table) Insert(in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64) (e *Entry, created bool, err error) {
	return t.InsertControlled(in, d, svc, clientMAC, now, nil)
}

// InsertControlled is InsertInto into an Entry it allocates.
func (t *Table) InsertControlled(in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64, ctl Controller) (e *Entry, created bool, err error) {
	e = new(Entry)
	created, err = t.InsertInto(e, in, d, svc, clientMAC, now, ctl)
	if err != nil {
		return nil, false, err
	}
	return e, created, nil
}
