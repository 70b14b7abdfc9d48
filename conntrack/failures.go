package conntrack

// Handshake failures, for passive health detection (health.Passive): the
// table counts, per real server, the NAT TCP connections whose handshake
// the real server failed:
//   - its first packet on the connection is an RST while the connection is
//     in SYN_RECV (the client's SYN was forwarded and the server refused
//     it: nothing listens on the port). Update counts it;
//   - the connection expires in SYN_RECV without any packet of the real
//     server's (the SYN got no answer within the SYN_RECV timeout).
//     Expire counts it; eviction, which makes room under a flood, does not;
//   - an ICMP destination unreachable from the real server about the
//     connection: the forwarder calls CountFailure.
//
// The packet path counts in the worker's own cells (no locked
// instruction, no allocation); the expiry, off the packet path, in an
// atomic counter of the binding. Both are summed by the fold, every
// EstimateInterval and on Stats and Failures.

import "github.com/lvsd/lvsd/lvs"

// CountFailure counts one handshake failure of the connection's real
// server, in the Entry's worker counters (from NewEntry); for an Entry
// without them, in its binding's atomic counter; for an Entry outside a
// table, nowhere. It does not allocate.
func (e *Entry) CountFailure() {
	switch {
	case e.ws != nil && e.bind != 0:
		bump(&e.ws.cell(e.bind).fails, 1)
	case e.t != nil && e.bind != 0:
		e.t.binding(e.bind).expFails.Add(1)
	}
}

// countExpiredHandshake counts entry i of s, which Expire killed in state
// st, as a failure of its real server if it is a NAT TCP connection that
// expired in SYN_RECV without a packet of the real server's. kill leaves
// the word's flags, so they are read after it.
//
// Preconditions: no shard lock is held; finish has not run yet.
func (t *Table) countExpiredHandshake(s *shard, i uint32, st State) {
	if st != StateSynRecv {
		return
	}
	r := s.rec(i)
	b := t.binding(r.bind)
	if r.word.Load()&wordReplied != 0 || b.key.Proto != lvs.TCP {
		return
	}
	if b.dest.Method == lvs.NAT {
		b.expFails.Add(1)
	}
}

// Failures calls fn with the handshake failures counted for each real
// server the table has seen, since it first saw it (DestStats.Failures),
// after folding the workers' counters. It takes the statistics lock, never
// a shard's; fn must not call the table.
func (t *Table) Failures(fn func(d *lvs.Dest, failures uint64)) {
	t.st.mu.Lock()
	defer t.st.mu.Unlock()
	for _, b := range t.fold()[1:] {
		fn(b.dest, b.failures)
	}
}
