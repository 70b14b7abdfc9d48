package sched

import (
	"slices"
	"sync"

	"github.com/lvsd/lvsd/lvs"
)

// lblc and lblcr serve cache clusters, where the flow's destination address
// is the origin server the client asked for: they keep the flows for one
// destination address on the same real server(s) while those are not
// overloaded, and fall back to wlc otherwise.
//
// The kernel looks its table up under RCU and takes sched_lock only to
// change it; here one mutex per scheduler covers the lookup, the choice and
// the change, which keeps each call's view consistent. A lookup of a known
// address does not allocate; a new address allocates its entry, and a server
// joining an lblcr set may grow the set. The clock is read before the lock,
// so concurrent calls may apply their times slightly out of order, which
// moves an expiry by no more than that skew.
//
// The kernel's "overloaded" test for a cached server d is its own, not
// IP_VS_DEST_F_OVERLOAD: d has more active connections than its weight and
// some server m of the list has fewer than half its weight in active
// connections (m.active*2 < m.weight). The kernel applies only that test (and
// weight > 0, available) to a cached lblc server, so a cached lblc server
// over its upper threshold (Overloaded) still takes the connections of its
// addresses; lvsd does the same. lblcr's choice within a set skips an
// Overloaded member, as the kernel's ip_vs_dest_set_min does.
//
// Neither has add_dest, del_dest or upd_dest callbacks in the kernel: a
// change only replaces the list (the wlc choices and the overload test read
// it); the tables keep their entries, and an entry whose server was deleted
// holds it until it is chosen again or collected (a deleted server is not
// available, so it is not used; re-added, it is the same lvs.Dest and serves
// its addresses again, as the kernel's revived destination does). Entries
// expire on the kernel's timer, which the control plane drives through Tick
// every TickInterval; a connection never runs a collection.

// localityOverloaded is the kernel's is_overloaded of lblc and lblcr.
func localityOverloaded(d *lvs.Dest, dests []*lvs.Dest) bool {
	if d.ActiveConns.Load() <= d.Weight.Load() {
		return false
	}
	for _, m := range dests {
		if int64(m.ActiveConns.Load())*2 < int64(m.Weight.Load()) {
			return true
		}
	}
	return false
}

// lblc is ip_vs_lblc, locality-based least-connection: a destination address
// keeps the server first chosen for it (by wlc) until that server is
// unusable or overloaded, and then gets a new one.
type lblc struct {
	clock func() int64 // immutable

	localityList
	// tab maps a destination address to the server chosen for it last.
	// Guarded by mu.
	tab localityTable[*lvs.Dest]
}

var _ Scheduler = (*lblc)(nil)

func newLBLC(dests []*lvs.Dest, c *config) (Scheduler, error) {
	s := &lblc{localityList: localityList{dests: dests}, clock: c.clock}
	s.tab.init(c.lblcExpiration)
	return s, nil
}

func (s *lblc) Schedule(t *lvs.Tuple) *lvs.Dest {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	en := s.tab.get(&t.Dst)
	if en != nil {
		en.lastuse = now
		if d := en.v; d.Weight.Load() > 0 && d.Available.Load() && !localityOverloaded(d, s.dests) {
			return d
		}
	}
	d := weightedLeast(s.dests, &rampClock{now: now, read: true})
	if d == nil {
		return nil
	}
	if en == nil {
		en = s.tab.add(&t.Dst, now)
	}
	en.v = d
	return d
}

// lblcr is ip_vs_lblcr, locality-based least-connection with replication: a
// destination address maps to a set of servers. The least loaded usable
// member serves it; when none is usable or the least loaded is overloaded,
// the wlc choice joins the set and serves. A set of more than one member that
// has not changed for the expiration loses its most loaded member.
type lblcr struct {
	clock func() int64 // immutable

	localityList
	// tab maps a destination address to its server set. Guarded by mu, and
	// so are the sets in it.
	tab localityTable[destSet]
}

var _ Scheduler = (*lblcr)(nil)

// destSet is an lblcr server set.
type destSet struct {
	// members, newest first: the kernel adds at the list head, and the
	// order decides ties.
	members []*lvs.Dest
	lastmod int64 // when members last changed (ns)
}

func newLBLCR(dests []*lvs.Dest, c *config) (Scheduler, error) {
	s := &lblcr{localityList: localityList{dests: dests}, clock: c.clock}
	s.tab.init(c.lblcrExpiration)
	return s, nil
}

func (s *lblcr) Schedule(t *lvs.Tuple) *lvs.Dest {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	en := s.tab.get(&t.Dst)
	rc := rampClock{now: now, read: true}
	if en == nil {
		d := weightedLeast(s.dests, &rc)
		if d == nil {
			return nil
		}
		en = s.tab.add(&t.Dst, now)
		en.v.insert(d, now)
		return d
	}
	en.lastuse = now
	set := &en.v
	d := weightedLeast(set.members, &rc)
	if len(set.members) > 1 && now > set.lastmod+s.tab.expiration {
		if m := set.most(); m != nil {
			set.erase(m, now)
		}
	}
	if d != nil && !localityOverloaded(d, s.dests) {
		return d
	}
	if d = weightedLeast(s.dests, &rc); d == nil {
		return nil
	}
	set.insert(d, now)
	return d
}

// insert adds d at the head of the set unless it is a member.
func (s *destSet) insert(d *lvs.Dest, now int64) {
	for _, m := range s.members {
		if m == d {
			return
		}
	}
	s.members = slices.Insert(s.members, 0, d)
	s.lastmod = now
}

// erase removes d from the set.
func (s *destSet) erase(d *lvs.Dest, now int64) {
	for i, m := range s.members {
		if m == d {
			s.members = slices.Delete(s.members, i, i+1) // clears the vacated slot
			s.lastmod = now
			return
		}
	}
}

// most is the kernel's ip_vs_dest_set_max: the member of positive weight with
// the greatest overhead/weight, the first of equals, whatever its flags.
func (s *destSet) most() *lvs.Dest {
	var most *lvs.Dest
	var moh, mw int64
	for _, d := range s.members {
		dw := int64(d.Weight.Load())
		if dw <= 0 {
			continue
		}
		if doh := d.Conns(); most == nil || moh*dw < doh*mw {
			most, moh, mw = d, doh, dw
		}
	}
	return most
}

// localityList is the list of lblc and lblcr, and the mutex that guards
// it and their tables. Its methods are their list changes: the kernel has
// no add_dest, del_dest or upd_dest callback for either, so a change only
// edits the list.
type localityList struct {
	mu sync.Mutex
	// dests is the list; replaced whole by a change. Guarded by mu.
	dests []*lvs.Dest
}

func (l *localityList) AddDest(d *lvs.Dest) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	list, err := withHead(l.dests, d)
	if err == nil {
		l.dests = list
	}
	return err
}

func (l *localityList) DelDest(d *lvs.Dest) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	list, _, err := without(l.dests, d)
	if err == nil {
		l.dests = list
	}
	return err
}

func (l *localityList) UpdDest(d *lvs.Dest) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !contains(l.dests, d) {
		return ErrDestNotFound
	}
	return nil
}

func (l *localityList) Dests() []*lvs.Dest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.dests)
}

// Tick is one run of the kernel's ip_vs_lblc_check_expire timer.
func (s *lblc) Tick(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tab.check(now)
}

// Tick is one run of the kernel's ip_vs_lblcr_check_expire timer.
func (s *lblcr) Tick(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tab.check(now)
}

var (
	_ Ticker = (*lblc)(nil)
	_ Ticker = (*lblcr)(nil)
)
