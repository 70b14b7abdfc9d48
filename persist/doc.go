// Package persist is lvsd's table of persistence templates, IPVS's
// connection templates (IP_VS_CONN_F_TEMPLATE) of persistent services
// (ipvsadm -p and -M).
//
// A template binds a client network (the client's address masked with the
// service's netmask) to the real server that the scheduler chose for the
// client's first connection, for the persistence timeout: every later
// connection of that network to the service goes to the same real server
// without asking the scheduler. The semantics are IPVS's
// (ip_vs_sched_persist, ip_vs_check_template, ip_vs_conn_expire):
//
//   - The key is (protocol, client network, virtual address, virtual port),
//     with port 0 for a service over several ports (port = 0 or a ports
//     list), so that all its ports share the client's template, as IPVS's
//     port-zero and firewall-mark services do.
//   - Each new connection made through a template restarts its timer, and
//     the template counts the connections it controls until they leave the
//     connection table (Template.Release, IPVS's n_control). When the
//     timer runs out while the template still controls connections, it is
//     restarted; the template expires at the first timeout without any.
//   - A template whose real server is unavailable (out of its service's
//     list: removed, or taken out by a health edge) is invalidated when it is next looked
//     up, and the client is scheduled again. A template whose real server is
//     quiescent (weight 0) stays valid, so that persistent clients keep
//     their server while it drains, unless expire_quiescent_template is set
//     (SetExpireQuiescent). An overloaded server keeps its templates too.
//
// # Concurrency and cost
//
// The table is split into shards by a seeded hash of the key, each with its
// own sync.RWMutex and map. Get, the lookup on the path of every new
// connection of a persistent service, takes one shard read lock, does not
// allocate and updates the template with atomics. Create allocates the
// template and takes one write lock. Expire sweeps shard by shard.
//
// Times are nanoseconds of Options.Clock, which must be the clock of the
// connection table that the templates' connections live in.
//
// # Ownership
//
// The table owns its templates. A *Template returned by Get or Create stays
// valid memory after it leaves the table (the connections it controls keep
// it), and each one must be released exactly once (Release) by the
// connection that acquired it. The table never writes a lvs.Dest except its
// PersistConns counter. It owns no goroutine: Run, started by the caller,
// expires templates every second until its context ends.
package persist
