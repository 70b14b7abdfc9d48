// Package sched chooses a destination (real server) for each new connection
// of a virtual service, with IPVS's schedulers and their exact semantics.
//
// A Scheduler holds one service's destination list, in the kernel's list
// order, for the life of the service. It is built once (New, or NewFromAdds
// for a service read as a sequence of `ipvsadm -a` commands) and then told
// what changes, as the kernel tells its schedulers: AddDest links a
// destination at the head of the list (list_add_rcu in
// __ip_vs_update_dest) and runs the scheduler's add_dest, DelDest unlinks
// one and runs del_dest, UpdDest runs upd_dest after a weight or threshold
// change. So state lives on across changes as in the kernel: rr's cursor
// (moved back by del_dest), wrr's current weight (kept by
// ip_vs_wrr_dest_changed, which also recomputes the gcd and maximum at
// once), the lblc and lblcr tables (no callbacks). sh, dh and mh rebuild
// their tables on every callback, as the kernel does.
//
// Schedule is called concurrently by every packet reader, only for the first
// packet of a new connection (later packets follow the connection table). It
// must not allocate. Schedulers that keep a position (rr, wrr) or a cache
// (lblc, lblcr) guard it and their list with their own mutex, as IPVS
// guards them with the service's sched_lock; this is a per-service lock on
// new connections only, never a per-packet lock. The others (the
// least-connection family lc, wlc, sed, nq; fo, ovf, twos; the hashing
// schedulers sh, dh, mh, maglev) take no lock: a change builds a new
// immutable table (for the hashing schedulers) or Picker over the new list
// and publishes both with one atomic store (see rebuilt), so Schedule sees
// the list and the table change together. Changes are serialized by the caller (the director's lock).
//
// # Ownership
//
// New and the changes copy slices of destinations, never the destinations:
// a *lvs.Dest is shared with the control plane, the health checker and the
// connection table. This package only reads a Dest (weight, flags and
// counters, all atomically) and never writes one. A scheduler owns no
// goroutine: lblc and lblcr implement Ticker, and their owner calls Tick
// every TickInterval, as the kernel's per-service timer fires.
//
// # How the kernel's model maps onto lvs.Dest
//
//   - Weight 0 is a quiescent destination, as in IPVS: never chosen for a new
//     connection.
//   - Overloaded is IP_VS_DEST_F_OVERLOAD: every scheduler skips it, except
//     lblc for the server cached for an address (the kernel tests only its
//     own overload rule there).
//   - A destination removed from the service (ipvsadm -d, or a health check
//     without inhibit) is unlinked with DelDest, as the kernel unlinks it;
//     the control plane also clears Available (IP_VS_DEST_F_AVAILABLE), so
//     that an lblc or lblcr entry still pointing at it is not used.
//   - The tables of sh and dh are built from the list and its weights at
//     each change, and mh's from the last non-zero weights
//     (lvs.Dest.LastWeight), as the kernel builds them; maglev (lvsd's own)
//     from the weights, sorted by address so the list order does not matter.
//   - Slow start (lvs.Dest.SlowStart, lvsd's own) multiplies the weights of
//     wrr, wlc, sed, nq, twos and the wlc choices of lblc and lblcr by each
//     destination's ramp; lc counts connections divided by it. Outside slow
//     start every ramp is the same, so the choices are the kernel's. The
//     clock (Options.Clock) must be the one the control plane passes to
//     lvs.Dest.SetWeight, SetAvailable and StartRamp. See slowstart.go.
package sched
