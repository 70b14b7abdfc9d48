// Package sched chooses a destination (real server) for each new connection
// of a virtual service, with IPVS's schedulers and their exact semantics.
//
// A Scheduler is built by New for one service's destination list and is
// called concurrently by every packet reader, only for the first packet of a
// new connection (later packets follow the connection table). Schedule must
// not allocate. Schedulers that keep a position (rr, wrr) or a cache (lblc,
// lblcr) guard it with their own mutex, as IPVS guards it with the service's
// sched_lock; this is a per-service lock on new connections only, never a
// per-packet lock. The least-connection family (lc, wlc, sed, nq), fo, ovf and
// twos scan without a lock; the hashing schedulers (sh, dh, mh, maglev) read
// tables that are immutable after New.
//
// # Ownership
//
// New copies the slice of destinations, never the destinations: a *lvs.Dest
// is shared with the director (which applies the configuration, runtime
// changes and health edges to it) and the connection table. This package
// only reads a Dest (weight, flags and counters, all atomically) and never
// writes one. A scheduler owns no goroutine: the
// periodic garbage collection of lblc and lblcr runs inline, under their lock,
// from the Schedule call that finds it due.
//
// # How the kernel's model maps onto lvs.Dest
//
//   - Weight 0 is a quiescent destination, as in IPVS: never chosen for a new
//     connection.
//   - Overloaded is IP_VS_DEST_F_OVERLOAD: every scheduler skips it.
//   - Available false (the destination left its service's list: removed, or
//     taken out by a health edge) stands for the kernel's removal of the
//     destination from the service list: never chosen. wrr recomputes its
//     cycle as the kernel does when a destination is deleted. The hashing
//     tables keep the slot of such a destination, so without a fallback flag
//     its flows get no destination (sh, dh, mh) or, with sh-fallback,
//     mh-fallback and always for maglev, are spread over the others.
//   - The tables of sh, dh and maglev are built from the weights at New, and
//     mh's from the last non-zero weights (lvs.Dest.LastWeight), as the
//     kernel builds them when a destination is added or edited. The control
//     plane rebuilds the scheduler on reload; between rebuilds only a weight
//     falling to 0 (or any other unusable state) is seen, at lookup.
//   - Slow start (lvs.Dest.SlowStart, lvsd's own) multiplies the weights of
//     wrr, wlc, sed, nq, twos and the wlc choices of lblc and lblcr by each
//     destination's ramp; lc counts connections divided by it. Outside slow
//     start every ramp is the same, so the choices are the kernel's. The
//     clock (Options.Clock) must be the one the control plane passes to
//     lvs.Dest.SetWeight and StartRamp. See slowstart.go.
package sched
