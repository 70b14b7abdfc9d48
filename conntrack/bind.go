package conntrack

// Bindings: the real servers as the table knows them, and the accounting
// of their connection counts.

import (
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// A binding is a real server as the table knows it: the entries refer to
// it by index (rec.bind) instead of by pointer, and the per-worker counters
// are indexed by it too. A destination is expected to belong to one virtual
// service, as an ip_vs_dest does; its binding records the service of its
// first connection. The entries take their VIP and protocol from their
// binding (key.Addr, key.Proto), so a destination reached through two VIPs
// or protocols has a binding for each. Bindings are never removed: the
// table keeps one (about 200 bytes, plus 32 per worker) for every real
// server it has seen.
type binding struct {
	dest *lvs.Dest
	key  lvs.ServiceKey
	// svc is the service counters of the newest connection (a reload
	// makes new ones); the counters are folded into it.
	svc atomic.Pointer[lvs.Stats]
	// conns counts the connections created.
	conns atomic.Uint64
	// expFails counts the handshakes that expired without a reply
	// (Expire); failures is the sum of expFails and the workers'
	// failure counters at the last fold, guarded by Table.st.mu.
	expFails atomic.Uint64
	failures uint64

	// folded are the worker counters already added to dest.Stats and svc;
	// seen are dest.Stats at the last estimate; est its rates. Guarded by
	// Table.st.mu.
	folded [4]uint64
	seen   Counters
	est    estimator
}

// bindKey names a binding: a destination and the VIP and protocol of its
// connections.
type bindKey struct {
	d     *lvs.Dest
	vip   lvs.Addr
	proto lvs.Proto
}

// bindCacheSize is the number of bindings a shard remembers (a
// direct-mapped cache): enough for the real servers of a few busy services;
// a miss takes the table's bindMu. A cache per shard of every binding would
// grow to (real servers × shards) entries: 25 million at 100,000.
const bindCacheSize = 64

// bindCached is one entry of a shard's cache; i 0 is empty.
type bindCached struct {
	k bindKey
	i uint32
}

// binding returns binding i (0 < i < number of bindings).
func (t *Table) binding(i uint32) *binding { return (*t.binds.Load())[i] }

// bindingIn returns the index of d's binding, creating it for a connection
// with tuple in, and notes svc as the service's newest counters.
//
// Preconditions: s.mu is held.
func (t *Table) bindingIn(s *shard, d *lvs.Dest, in *lvs.Tuple, svc *lvs.Stats) uint32 {
	k := bindKey{d, in.Dst, in.Proto}
	c := &s.binds[k.slot()]
	i := c.i
	if c.k != k || i == 0 {
		t.bindMu.Lock()
		var ok bool
		if i, ok = t.bindByDest[k]; !ok {
			b := &binding{dest: d, key: lvs.ServiceKey{Addr: in.Dst, Port: in.DPort, Proto: in.Proto}}
			bs := append(*t.binds.Load(), b)
			i = uint32(len(bs) - 1)
			t.binds.Store(&bs)
			t.bindByDest[k] = i
		}
		t.bindMu.Unlock()
		*c = bindCached{k, i}
	}
	if b := t.binding(i); svc != nil && b.svc.Load() != svc {
		b.svc.Store(svc)
	}
	return i
}

// bindDest counts a new connection of binding bi on d, as IPVS's
// ip_vs_bind_dest: inactive (IPVS binds with IP_VS_CONN_F_INACTIVE), and
// the destination overloaded once its connections reach its upper
// threshold.
func (t *Table) bindDest(bi uint32, d *lvs.Dest) {
	t.binding(bi).conns.Add(1)
	n := d.InactiveConns.Add(1) + d.ActiveConns.Load()
	if u, _ := d.Thresholds(); u > 0 && n >= u {
		d.Overloaded.Store(true)
	}
}

// unbindDest uncounts a connection that left the table in state st, as
// ip_vs_unbind_dest: the overload ends below the lower threshold, or below
// three quarters of the upper one when there is no lower one (and at once
// when there is neither).
func (t *Table) unbindDest(b *binding, d *lvs.Dest, st State) {
	var n int32
	if st.Active() {
		n = d.ActiveConns.Add(-1) + d.InactiveConns.Load()
	} else {
		n = d.InactiveConns.Add(-1) + d.ActiveConns.Load()
	}
	if !d.Overloaded.Load() {
		return
	}
	switch u, l := d.Thresholds(); {
	case l > 0:
		if n < l {
			d.Overloaded.Store(false)
		}
	case u > 0:
		if n*4 < u*3 {
			d.Overloaded.Store(false)
		}
	default:
		d.Overloaded.Store(false)
	}
}

// account moves a connection of d from state from to state to in d's
// ActiveConns and InactiveConns (IPVS's IP_VS_CONN_F_INACTIVE changes in
// set_tcp_state).
func account(d *lvs.Dest, from, to State) {
	switch {
	case d == nil || from.Active() == to.Active():
	case to.Active():
		d.ActiveConns.Add(1)
		d.InactiveConns.Add(-1)
	default:
		d.InactiveConns.Add(1)
		d.ActiveConns.Add(-1)
	}
}
