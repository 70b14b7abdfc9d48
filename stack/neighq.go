package stack

import (
	"time"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// Frames that wait for a neighbour's MAC.
//
// The kernel's IPVS hands a packet for a real server to the neighbour
// layer, which queues it on a neighbour still being resolved (INCOMPLETE),
// sends the queue once ARP or NDP answers, and drops it when the
// resolution fails. lvsd does the same on the fast path's rare path: a
// frame forwarded to a real server (or tunnel endpoint) whose slot holds no
// MAC comes back from Process as forward.AwaitNeighbor, rewritten but for
// its destination MAC; the reader copies it (with its virtio-net header)
// into the slot's bounded queue (lvs.Neighbor.Hold: the kernel's
// unres_qlen_bytes, oldest dropped first), and makes sure the neighbour is
// being resolved. When the netstack reports it resolved (publish), the
// queued frames get the MAC and go out in order on the device queue each
// came from, before any later frame can use the MAC; when it reports the
// resolution failed (Unreachable: gVisor gives up after 3 probes 1 s
// apart, as the kernel's mcast_probes 3 and retrans_time 1 s), they are
// dropped and counted as no-neighbor.

// holdMaxAge bounds how long a frame may wait: the netstack's resolution
// reports success or failure within MaxMulticastProbes × RetransmitTimer
// (3 s by default), so a frame older than this missed its outcome (its
// neighbour was forgotten meanwhile, say) and is dropped by Run's sweep
// rather than sent much later.
const holdMaxAge = 4 * time.Second

// monoStart is the origin of monoNow.
var monoStart = time.Now()

// monoNow is a monotonic clock in nanoseconds, the time frames are held at.
func monoNow() int64 { return int64(time.Since(monoStart)) }

// linkOwner is the NIC a Link is attached to, for resolving the neighbours
// its frames wait for.
type linkOwner struct {
	st  *Stack
	nic NICID
}

// hold queues the frame of p (Process's AwaitNeighbor verdict) on its
// neighbour, read by the reader of device queue qi. Rare path: it may take
// the neighbour's lock and the Stack's.
func (l *Link) hold(p *forward.Packet, qi int, tx *txBatch) {
	start := p.Off - l.vh
	if l.vh != 0 {
		p.VNet.Encode(p.Buf[start:p.Off])
	}
	f := p.Buf[start : p.Off+p.Len]
	r := p.Neigh.Hold(f, l.vh, qi, monoNow())
	l.stats.NeighOverflow.Add(uint64(r.Dropped))
	switch {
	case r.Known:
		// Resolved since Process looked: send it as the others.
		copy(f[l.vh:l.vh+6], r.MAC[:])
		l.tap.Load().frame(true, f[l.vh:])
		tx.add(f)
		return
	case !r.Queued:
		return
	}
	l.stats.NeighHeld.Add(1)
	if !r.First {
		return // the first frame saw to the resolution
	}
	o := l.owner.Load()
	if o == nil || !o.st.resolveSlot(o.nic, p.Neigh) {
		// No NIC, or a slot no real server needs any more: nothing
		// will resolve it.
		l.stats.NeighDropped.Add(uint64(p.Neigh.Fail()))
	}
}

// sendHeld writes a held frame (virtio-net header included) that its
// neighbour's resolution released, on device queue qi (the first one if
// the device has fewer queues now).
func (l *Link) sendHeld(f []byte, qi int) {
	devs := *l.devs.Load()
	if len(devs) == 0 {
		l.stats.NeighDropped.Add(1)
		return
	}
	if qi >= len(devs) {
		qi = 0
	}
	l.tap.Load().frame(true, f[l.vh:])
	if _, err := devs[qi].Write(f); err != nil {
		l.stats.TxErrors.Add(1)
		l.logLimited("write failed", "err", err)
		return
	}
	l.stats.NeighSent.Add(1)
	if qi < len(l.queues) {
		l.queues[qi].tx.Add(1)
	}
}

// resolveSlot starts resolving the neighbour of slot n on NIC nic (if it
// is not under way already), and reports false when n is no slot of the
// NIC any more.
func (st *Stack) resolveSlot(nic NICID, n *lvs.Neighbor) bool {
	st.mu.Lock()
	var k neighKey
	found := false
	for kk, nn := range st.neigh {
		if nn == n && kk.nic == nic {
			k, found = kk, true
			break
		}
	}
	st.mu.Unlock()
	if found {
		st.resolve(k)
	}
	return found
}

// failHeldLocked drops the frames waiting on slot n of NIC nic (its
// resolution failed, or it is forgotten), counted as the NIC's link's
// no-neighbor drops.
//
// Preconditions: st.mu held.
func (st *Stack) failHeldLocked(nic NICID, n *lvs.Neighbor) {
	d := n.Fail()
	if ni := st.nics[nic]; d > 0 && ni != nil {
		ni.link.stats.NeighDropped.Add(uint64(d))
	}
}

// expireHeldLocked drops the frames that waited on slot n of NIC nic for
// holdMaxAge, counted as no-neighbor.
//
// Preconditions: st.mu held.
func (st *Stack) expireHeldLocked(nic NICID, n *lvs.Neighbor, now int64) {
	d := n.Expire(now - int64(holdMaxAge))
	if ni := st.nics[nic]; d > 0 && ni != nil {
		ni.link.stats.NeighDropped.Add(uint64(d))
	}
}
