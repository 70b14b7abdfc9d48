// Package sched chooses a destination (real server) for each new connection
// of a virtual service, with IPVS's schedulers and their exact semantics.
//
// A Scheduler is built for one service's destination list and is called
// concurrently by every packet reader, only for the first packet of a new
// connection (later packets follow the connection table). Schedule must not
// allocate. Schedulers that keep a position (rr, wrr) guard it with their own
// mutex, as IPVS guards it with the service's sched_lock; this is a
// per-service lock on new connections only, never a per-packet lock.
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
