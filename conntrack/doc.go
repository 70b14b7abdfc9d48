// Package conntrack is lvsd's connection table, as IPVS's ip_vs_conn table:
// it remembers, for every flow through a virtual service, the real server the
// scheduler chose, the forwarding method, the client's MAC address, a minimal
// TCP state and when the flow was last seen.
//
// One table holds every connection and is indexed by lvs.Tuple in both
// directions: by the In tuple (client to VIP:vport, as received) and, for NAT
// entries only, by the Out tuple (RIP:rport to client, as the real server's
// reply arrives). Lookup answers either direction with one map access. DR and
// TUN replies never pass through the director, so those entries index only In.
//
// Concurrency: the table is split into shards by a seeded hash of the tuple;
// each shard has its own sync.RWMutex and map. The packet path takes only one
// shard's read lock (Lookup) and otherwise uses atomics on the entry (Update),
// so it neither allocates nor contends on a global lock. Insert takes one or
// two shard write locks, never at the same time. Expire sweeps shard by shard.
//
// Ownership: the table owns its entries. An *Entry returned by Lookup or
// Insert stays valid memory (the garbage collector keeps it) after it expires;
// its immutable fields may be read at any time, its mutable ones only through
// its methods. Tuples passed in are read, never retained.
//
// The table owns no goroutine of its own: Run, started by the caller, expires
// idle entries every second until its context ends.
//
// This is the minimal version. The timer (a sweep over every entry once per
// second) and the TCP state machine (five states) are internals meant to be
// replaced by a timer wheel and IPVS's full tcp_states table without changing
// the API.
package conntrack
