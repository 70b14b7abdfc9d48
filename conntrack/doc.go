// Package conntrack is lvsd's connection table, as IPVS's ip_vs_conn table:
// it remembers, for every flow through a virtual service, the real server the
// scheduler chose, the client's MAC address, the flow's TCP state (IPVS's
// eleven states and transition tables, state.go) and when it was last seen;
// it keeps the real servers' active and inactive counts and overload flags
// as IPVS does, expires idle flows, bounds its size, and counts packets and
// bytes with IPVS's rate estimator.
//
// # Layout: built for ten million connections
//
// The table is split into 256 shards by a seeded hash of the tuple. Each
// shard holds:
//
//   - a slab of 56-byte entries (rec) in fixed chunks that never move, with
//     a free list: an entry holds no pointer (its real server, VIP and
//     protocol are an index into the table's bindings), and the chunks are
//     outside the Go heap (mem_unsafe.go: anonymous mappings, advised for
//     transparent huge pages once the table passes 32 MiB), so the garbage
//     collector neither scans nor counts the table, and a steady state of
//     connections coming and going allocates nothing;
//   - an open-addressing index of 8-byte slots (index.go), in the table's
//     index arena from 64 KiB on (its old slots given back to the kernel
//     when it grows, but kept mapped: Warm reads slots without the lock),
//     from the In tuple (client to VIP:vport) and, for NAT,
//     from the Out tuple (RIP:rport to client) to an entry's location; DR
//     and TUN replies never pass the director, so those entries index only
//     In;
//   - a timer wheel (1 s ticks, 1024 slots) of intrusive lists through the
//     entries: expiry looks only at the entries whose deadline came, never
//     at the whole table. The packet path refreshes a last-seen time
//     without a lock; an entry whose deadline comes after a refresh is
//     filed again (a lazy wheel), so each entry is looked at about once per
//     timeout.
//
// # Files
//
// One file per mechanism: table.go (Options, the Table and its shards, the
// setters, Run), slab.go (entries and their chunks), mem_unsafe.go (the
// arenas outside the Go heap), index.go (the hash index), wheel.go (the
// timer wheel and expiry), evict.go (eviction when full), bind.go (real
// servers and their connection counts), ops.go (lookup, insertion, the
// per-packet update, checks, removal), warm.go (the warm pass of a batch
// of lookups), entry.go (the Entry copies callers
// hold), synproxy.go (the state of connections that forward's SYN proxy
// opened: its cookie, the client's ISN and options, the sequence delta),
// state.go and timeouts.go (IPVS's TCP states
// and their timeouts), stats.go (counters and rates). The tests' own
// conveniences (allocating Insert, Range, ...) are in export_test.go.
//
// # Concurrency
//
// Each shard has a sync.RWMutex guarding its index, free list, wheel and
// the wheel fields of its entries. The packet path takes one shard's read
// lock per lookup (no lock is table-wide) and otherwise uses atomics on the
// entry: its state word (state, flags, generation) and last-seen time.
// Warm (warm.go), a hint before a batch's lookups, takes no lock at all: it
// reads an index through its published view (index.view) and the entries
// as they are, and decides nothing. Insert and removal take one shard's write lock at a time, never two.
// The statistics have their own locks and never take a shard's.
//
// # Ownership and the safety of recycled entries
//
// Entries are reused, so the table never hands out a pointer to one.
// Lookup and InsertInto fill an Entry: a copy of the connection's fields plus a
// handle (location and generation). Every method that reaches the live
// connection through the handle (State, Update, Check, Remove) compares the
// generation first, so an Entry that outlived its connection is inert, and
// its copied fields (real server, tuples, MAC) stay valid for the packet
// being processed. The packet path keeps one Entry per worker (NewEntry)
// and allocates nothing per packet. Tuples passed in are read, never
// retained.
//
// The table also counts each real server's failed NAT handshakes (an RST
// answering a SYN, a SYN_RECV that expires unanswered, ICMP unreachables
// the forwarder reports with CountFailure) for passive health detection:
// failures.go, read with Failures.
//
// The table owns no goroutine of its own: Run, started by the caller,
// expires idle entries every second and estimates rates every two until its
// context ends.
package conntrack
