package sched

import (
	"github.com/lvsd/lvsd/lvs"
)

// Scheduler picks the destination for a new connection.
type Scheduler interface {
	// Schedule returns the destination for the flow t (client to virtual
	// service), or nil when no destination may take a new connection.
	Schedule(t *lvs.Tuple) *lvs.Dest
}
