package director

import (
	"errors"
	"math"
	"slices"
	"sync"

	"github.com/lvsd/lvsd/lvs"
)

// Health edges are coalesced. The checks deliver their edges one at a time
// (health.Manager serializes its calls to the sink), so the sink must not
// wait for the change an edge causes, or nothing would ever coalesce: it
// queues the edge (edgeQueue) and returns, and one drainer goroutine,
// started when the queue goes from idle to busy and ending when it is
// empty, applies under d.mu every edge queued by the time it takes them.
// While one change runs, the edges that arrive meanwhile wait and are
// applied by the next change in one go: 500 servers timing out together
// cost a few changes of the running table, not 500. Nothing waits on a
// timer: an edge alone is applied at once.
//
// A batch keeps the kernel's semantics of the separate commands it stands
// for (ipvsadm -d, -a, -e -w 0 in the order the edges happened): it is
// cut into runs that one change can apply exactly. A change tells each
// scheduler del_dest, then upd_dest, then add_dest; a run therefore holds
// edges whose kinds (unlink, update, link; see edgeKind) never go back in
// that order, and no real server twice, and within a kind the scheduler is
// told in the order of the edges (Director.seq), so that the list and the
// schedulers' state end as separate commands would leave them. Each run
// is one change, which rebuilds only the services its edges touch and
// leaves the checks alone (a health edge changes no configuration).

// healthEdge is one edge waiting to be applied: edit changes the overlay of
// real server k.
type healthEdge struct {
	k      RealKey
	origin string
	edit   func(*realState)
}

// edgeQueue holds the edges not applied yet, in arrival order. mu guards
// pending and busy; it is taken after Director.mu when both are, and never
// held across a change.
type edgeQueue struct {
	mu      sync.Mutex
	pending []healthEdge
	busy    bool // a drainer runs
	// idle is signalled (on mu) when a drainer ends.
	idle *sync.Cond
}

// Edge kinds, in the order a change tells them to a scheduler.
const (
	edgeUnlink = iota // leaves the list (ipvsadm -d)
	edgeUpdate        // stays in or out of the list; weight may change
	edgeLink          // joins the list (ipvsadm -a)
)

// linkedState reports whether a real server in state s is in its
// service's list.
func linkedState(s realState) bool { return !s.down || s.inhibit }

func edgeKind(old, s realState) int {
	switch was, is := linkedState(old), linkedState(s); {
	case was && !is:
		return edgeUnlink
	case !was && is:
		return edgeLink
	}
	return edgeUpdate
}

// queueEdge queues one edge to be applied, with whatever else is queued,
// by the drainer (started here if none runs). It does not wait.
func (d *Director) queueEdge(e healthEdge) {
	d.edges.mu.Lock()
	d.edges.pending = append(d.edges.pending, e)
	start := !d.edges.busy
	d.edges.busy = true
	d.edges.mu.Unlock()
	if start {
		go d.drainEdges()
	}
}

// drainEdges applies queued edges until the queue is empty.
func (d *Director) drainEdges() {
	for {
		d.mu.Lock()
		d.edges.mu.Lock()
		batch := d.edges.pending
		d.edges.pending = nil
		if len(batch) == 0 {
			d.edges.busy = false
			if d.edges.idle != nil {
				d.edges.idle.Broadcast()
			}
			d.edges.mu.Unlock()
			d.mu.Unlock()
			return
		}
		d.edges.mu.Unlock()
		d.applyEdges(batch)
		d.mu.Unlock()
	}
}

// waitEdges returns once no drainer runs: the edges queued before it was
// called are applied (or refused). Callers must not hold d.mu.
func (d *Director) waitEdges() {
	d.edges.mu.Lock()
	defer d.edges.mu.Unlock()
	if d.edges.idle == nil {
		d.edges.idle = sync.NewCond(&d.edges.mu)
	}
	for d.edges.busy {
		d.edges.idle.Wait()
	}
}

// applyEdges applies a batch of edges in order, in as few changes as the
// kernel's semantics allow (see above). Edges of real servers that are not
// configured (a reload removed them) are dropped, as SetRealHealth's
// ErrUnknownReal.
//
// Preconditions: d.mu is held.
func (d *Director) applyEdges(batch []healthEdge) {
	var (
		health  map[RealKey]realState // the run's overlay; nil while the run is empty
		seq     map[RealKey]int
		touched map[lvs.ServiceKey]bool
		last    int
		origin  string
	)
	flush := func() {
		if health == nil {
			return
		}
		d.seq, d.touched = seq, touched
		err := d.change(d.cfg, health, origin)
		d.seq, d.touched = nil, nil
		if err != nil && !errors.Is(err, ErrStopping) {
			d.log.Warn("health edges not applied", "edges", len(seq), "origin", origin, "err", err)
		}
		health, seq, touched = nil, nil, nil
	}
	for i, e := range batch {
		if !d.configured(e.k) {
			continue
		}
		cur := health
		if cur == nil {
			cur = d.health
		}
		old := cur[e.k]
		s := old
		e.edit(&s)
		if s == old {
			continue
		}
		kind := edgeKind(old, s)
		if _, again := seq[e.k]; health != nil && (again || kind < last) {
			flush()
		}
		if health == nil {
			health = make(map[RealKey]realState, len(d.health)+1)
			for hk, hs := range d.health {
				health[hk] = hs
			}
			seq, touched = make(map[RealKey]int), make(map[lvs.ServiceKey]bool)
			origin = e.origin
		}
		if s == (realState{}) {
			delete(health, e.k)
		} else {
			health[e.k] = s
		}
		seq[e.k], touched[e.k.Service], last = i, true, kind
	}
	flush()
}

// orderBySeq sorts the destinations a change tells a scheduler about in
// the order of the edges that moved them (order), those no edge moved (a
// sorry server) last, in the order they had.
func orderBySeq(xs []*lvs.Dest, order map[*lvs.Dest]int) {
	if len(xs) < 2 {
		return
	}
	rank := func(x *lvs.Dest) int {
		if r, ok := order[x]; ok {
			return r
		}
		return math.MaxInt
	}
	slices.SortStableFunc(xs, func(a, b *lvs.Dest) int { return rank(a) - rank(b) })
}
