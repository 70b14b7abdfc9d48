package director

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
	"github.com/lvsd/lvsd/sched"
)

// The steps of one change of the running table (see change in running.go).
// Each configuration key takes effect in exactly one of them:
//
//   - buildServices reads the virtual servers and real servers, decides
//     which destinations are linked, unlinked, edited or added, and builds
//     the schedulers of new services (and of services whose scheduler
//     changed). It changes nothing that runs, so a failure leaves all as
//     it was.
//   - addVIPs adds the new VIPs to the netstack (undone on failure).
//   - commitWeights stores weights, thresholds and slow start in the
//     destinations.
//   - publish tells each scheduler what changed (del_dest, upd_dest,
//     add_dest, in that order) and swaps every interface's snapshot.
//   - retire removes the VIPs, destinations and neighbours no longer used.
//   - tableOptions applies [timeouts], [sysctl] and [connections].
//
// Every step after buildServices runs under Director.mu, in this order,
// and only when buildServices succeeded.

// plan is one change worked out by buildServices.
type plan struct {
	cfg    *config.Config
	health map[RealKey]realState
	now    int64
	svcs   []*svcPlan
	// dests holds the destination of every configured real server, linked
	// or taken out by its health.
	dests    map[destKey]*lvs.Dest
	wantVIPs map[string]map[netip.Addr]bool
	// revived are the destinations taken back from the trash.
	revived map[destKey]bool
}

// svcPlan is one virtual service of a plan.
type svcPlan struct {
	sc   *config.Service
	key  lvs.ServiceKey
	ifc  *iface
	prev *runService // nil for a new service
	// sched is the scheduler to publish: prev's, to be told del, upd and
	// add; or, for a new service or a changed scheduler, the one build
	// makes in publish (over the final list, so no events follow).
	sched      sched.Scheduler
	build      func() (sched.Scheduler, error)
	del        []*lvs.Dest // unlinked (ipvsadm -d)
	upd        []*lvs.Dest // linked before and after, weight or thresholds changed
	add        []*lvs.Dest // linked now, in the order of the configuration (ipvsadm -a)
	reals      []realPlan
	persist    *persist.Policy
	stats      *lvs.Stats
	schedOpts  sched.Options
	unlinkOnly []*lvs.Dest // unlinked with a new scheduler: marked, not told
	kept       bool        // untouched by a run of health edges: prev as it is
}

// realPlan is one configured real server of a service.
type realPlan struct {
	rc     *config.Real
	dk     destKey
	dst    *lvs.Dest
	fresh  bool  // a new object: needs its neighbour slot
	linked bool  // in the service's list after the change
	weight int32 // effective weight (health, runtime weight, configuration)
	ramp   bool  // joins a running service: slow start from now
}

// runService is a virtual service in force.
type runService struct {
	conf  *config.Service
	svc   *forward.Service // the object in the snapshots
	sched sched.Scheduler
}

func sameScheduler(a, b *config.Service) bool {
	return a.Scheduler == b.Scheduler && slices.Equal(a.SchedFlags, b.SchedFlags) &&
		a.MaglevTableSize == b.MaglevTableSize
}

// buildServices works out the change from the running table to cfg with
// the health overlay health.
//
// Preconditions: d.mu is held.
func (d *Director) buildServices(cfg *config.Config, health map[RealKey]realState) (*plan, error) {
	p := &plan{
		cfg: cfg, health: health, now: d.table.Now(),
		dests:    make(map[destKey]*lvs.Dest, len(d.dests)),
		wantVIPs: make(map[string]map[netip.Addr]bool),
		revived:  make(map[destKey]bool),
	}
	// A run of health edges (d.touched set, same configuration) leaves the
	// services it does not touch as they are: their destinations are
	// carried over and their snapshot objects reused.
	keep := func(lvs.ServiceKey) bool { return false }
	if d.touched != nil && cfg == d.cfg {
		keep = func(k lvs.ServiceKey) bool { return !d.touched[k] && d.services[k] != nil }
		for dk, x := range d.dests {
			if keep(dk.svc) {
				p.dests[dk] = x
			}
		}
	}
	for i := range cfg.Services {
		sc := &cfg.Services[i]
		if key := serviceKey(sc); keep(key) {
			prev := d.services[key]
			p.svcs = append(p.svcs, &svcPlan{sc: sc, key: key, ifc: d.ifaces[sc.Interface], prev: prev, sched: prev.sched, kept: true})
			if p.wantVIPs[sc.Interface] == nil {
				p.wantVIPs[sc.Interface] = make(map[netip.Addr]bool)
			}
			p.wantVIPs[sc.Interface][sc.Addr] = true
			continue
		}
		ifc := d.ifaces[sc.Interface]
		if ifc == nil {
			return nil, fmt.Errorf("virtual server %s: interface %q is not running", sc.Addr, sc.Interface)
		}
		// A service over a list of ports is known by its first port; its
		// real servers have port 0.
		key := serviceKey(sc)
		sp := &svcPlan{sc: sc, key: key, ifc: ifc, prev: d.services[key]}
		sp.schedOpts = sched.Options{Flags: sc.SchedFlags, Clock: d.table.Now, MaglevSize: sc.MaglevTableSize}
		if sp.prev != nil {
			sp.stats = sp.prev.svc.Stats // counters survive reloads
		} else {
			sp.stats = new(lvs.Stats)
		}
		if pc := sc.Persistence; pc.Timeout > 0 {
			// Templates are keyed by the service's key port: the ports of
			// a list, like all ports of a port-zero service, share them.
			sp.persist = &persist.Policy{Table: d.persist, Timeout: int64(pc.Timeout),
				Mask: persist.Mask(pc.Netmask, sc.Addr.Is4()), Port: key.Port}
		}
		// Sized up front: a table of thousands of real servers is
		// rebuilt at every health edge of its service.
		sp.reals = make([]realPlan, 0, len(sc.Reals)+1)
		linkedNow := make(map[*lvs.Dest]bool, len(sc.Reals))
		if sp.prev != nil {
			for _, x := range sp.prev.sched.Dests() {
				linkedNow[x] = true
			}
		}
		linkedNext := make(map[*lvs.Dest]bool, len(sc.Reals))
		var order map[*lvs.Dest]int // edge positions (d.seq) by destination
		if d.seq != nil {
			order = make(map[*lvs.Dest]int)
		}
		for j := range sc.Reals {
			rc := &sc.Reals[j]
			dk := destKey{svc: key, addr: rc.Addr, port: rc.Port, method: rc.Method, tun: rc.Tunnel}
			rp := realPlan{rc: rc, dk: dk}
			rp.dst, rp.fresh = d.destFor(p, dk, rc)
			hs := health[KeyOf(sc, rc)]
			rp.linked = !hs.down || hs.inhibit
			rp.weight = rc.Weight
			if hs.dynamic {
				rp.weight = hs.weight
			}
			if hs.down && hs.inhibit {
				rp.weight = 0
			}
			was := linkedNow[rp.dst]
			if rp.linked {
				linkedNext[rp.dst] = true
				switch {
				case !was:
					sp.add = append(sp.add, rp.dst)
					// A server joining a running service ramps up; the
					// servers of a new service do not: nothing is loaded.
					rp.ramp = sp.prev != nil
				case rp.dst.Weight.Load() != rp.weight || !sameThresholds(rp.dst, rc):
					sp.upd = append(sp.upd, rp.dst)
				}
			}
			p.dests[dk] = rp.dst
			sp.reals = append(sp.reals, rp)
			if n, ok := d.seq[KeyOf(sc, rc)]; ok {
				order[rp.dst] = n
			}
		}
		// keepalived's sorry_server, while no real server is up.
		d.planSorry(p, sp, health, linkedNow, linkedNext)
		if sp.prev != nil {
			for _, x := range sp.prev.sched.Dests() {
				if !linkedNext[x] {
					sp.del = append(sp.del, x)
				}
			}
		}
		if order != nil {
			// A run of health edges: the scheduler is told in the
			// order the edges happened, as separate commands would.
			orderBySeq(sp.del, order)
			orderBySeq(sp.upd, order)
			orderBySeq(sp.add, order)
		}
		// New and the changes below fail only on a bad name, option or
		// size: check now, before anything is committed. The new
		// schedulers are built in publish, once the weights they read
		// are in place.
		if err := sched.Check(sc.Scheduler, len(linkedNext), sp.schedOpts); err != nil {
			return nil, fmt.Errorf("virtual server %s: %w", sc.Addr, err)
		}
		switch {
		case sp.prev == nil:
			// ipvsadm -A, then -a for each real server in the file's
			// order.
			adds := sp.add
			sp.build = func() (sched.Scheduler, error) {
				return sched.NewFromAdds(sc.Scheduler, adds, sp.schedOpts)
			}
			sp.add = nil
		case !sameScheduler(sp.prev.conf, sc):
			// ipvsadm -E with another scheduler: init_service over the
			// list the change leaves (the survivors in their order, the
			// added ones at the head, the last added first).
			var list []*lvs.Dest
			for _, x := range slices.Backward(sp.add) {
				list = append(list, x)
			}
			for _, x := range sp.prev.sched.Dests() {
				if linkedNext[x] {
					list = append(list, x)
				}
			}
			sp.build = func() (sched.Scheduler, error) { return sched.New(sc.Scheduler, list, sp.schedOpts) }
			sp.unlinkOnly, sp.del, sp.upd, sp.add = sp.del, nil, nil, nil
		default:
			sp.sched = sp.prev.sched
		}
		if p.wantVIPs[sc.Interface] == nil {
			p.wantVIPs[sc.Interface] = make(map[netip.Addr]bool)
		}
		p.wantVIPs[sc.Interface][sc.Addr] = true
		p.svcs = append(p.svcs, sp)
	}
	return p, nil
}

// addVIPs adds the VIPs the plan needs. VIPs go first, so that ARP for a
// new VIP is answered when its snapshot goes live; stale VIPs go in retire.
// If one cannot be added, the ones added here are removed again: a failed
// change changes nothing.
//
// Preconditions: d.mu is held.
func (d *Director) addVIPs(p *plan) error {
	type addedVIP struct {
		ifc *iface
		vip netip.Addr
	}
	var added []addedVIP
	for name, ifc := range d.ifaces {
		for vip := range p.wantVIPs[name] {
			if ifc.vips[vip] {
				continue
			}
			if err := d.st.AddVIP(ifc.nic, vip); err != nil {
				for _, a := range added {
					d.st.RemoveVIP(a.ifc.nic, a.vip)
					delete(a.ifc.vips, a.vip)
				}
				return fmt.Errorf("interface %q: %w", name, err)
			}
			ifc.vips[vip] = true
			added = append(added, addedVIP{ifc, vip})
		}
	}
	return nil
}

// commitWeights stores each real server's weight, thresholds and slow start
// in its destination, and readies the destinations that join a list: a
// neighbour slot for a new one (only now: a change that fails must not
// leave neighbours being resolved for nothing), available and no longer
// removed for a revived one, as __ip_vs_update_dest sets
// IP_VS_DEST_F_AVAILABLE.
//
// Preconditions: d.mu is held.
func (d *Director) commitWeights(p *plan) {
	for _, sp := range p.svcs {
		for _, rp := range sp.reals {
			dst, rc := rp.dst, rp.rc
			if rp.fresh {
				dst.Neigh = d.st.Neighbor(sp.ifc.nic, rc.Addr)
			}
			dst.SlowStart.Store(int64(rc.SlowStart))
			// As __ip_vs_update_dest: an upper threshold removed or
			// raised ends the overload at once (the connection table
			// sets it again at the next connection if still due).
			if u, old := rc.UpperThreshold, upper(dst); u == 0 || u > old {
				dst.Overloaded.Store(false)
			}
			dst.SetThresholds(rc.UpperThreshold, rc.LowerThreshold)
			if !rp.linked {
				continue // weight kept; it is out of the list
			}
			dst.SetWeight(rp.weight, p.now)
			if dst.Removed.Load() || !dst.Available.Load() {
				dst.Removed.Store(false)
				dst.Available.Store(true)
			}
			if rp.ramp {
				dst.StartRamp(p.now)
			}
		}
	}
}

// publish tells every scheduler what changed and swaps the snapshots. A
// destination leaving a list is made unavailable and removed first, as
// __ip_vs_unlink_dest clears IP_VS_DEST_F_AVAILABLE before del_dest: its
// persistence templates are invalidated at their next use and its
// connections end as expire_nodest_conn says.
//
// Preconditions: d.mu is held.
func (d *Director) publish(p *plan) map[lvs.ServiceKey]*runService {
	snaps := make(map[string]*forward.Config, len(d.ifaces))
	for name, ifc := range d.ifaces {
		snaps[name] = &forward.Config{Services: make(map[lvs.ServiceKey]*forward.Service), Source: sourceFrom(ifc.cfg), SloppyTCP: p.cfg.Sysctl.SloppyTCP}
	}
	services := make(map[lvs.ServiceKey]*runService, len(p.svcs))
	for _, sp := range p.svcs {
		if sp.kept {
			services[sp.key] = sp.prev
			d.snapService(snaps, sp.prev.conf, sp.key, sp.prev.svc)
			continue
		}
		if sp.build != nil {
			s, err := sp.build()
			if err != nil {
				// sched.Check passed in buildServices: only a bug gets
				// here. The service runs with an empty list rather
				// than not at all.
				d.log.Error("scheduler build failed", "vip", sp.sc.Addr, "err", err)
				s, _ = sched.New("", nil, sched.Options{Clock: d.table.Now})
			}
			sp.sched = s
		}
		for _, x := range append(slices.Clone(sp.del), sp.unlinkOnly...) {
			unlink(x)
		}
		for _, x := range sp.del {
			d.tell(sp, "del_dest", x, sp.sched.DelDest(x))
		}
		for _, x := range sp.upd {
			d.tell(sp, "upd_dest", x, sp.sched.UpdDest(x))
		}
		for _, x := range sp.add {
			d.tell(sp, "add_dest", x, sp.sched.AddDest(x))
		}
		sc := sp.sc
		svc := &forward.Service{Key: sp.key, Ports: sc.Ports,
			OnePacket: sc.OnePacket, Synproxy: sc.Synproxy, Sched: sp.sched, Dests: sp.sched.Dests(), Stats: sp.stats, Persist: sp.persist}
		services[sp.key] = &runService{conf: sc, svc: svc, sched: sp.sched}
		d.snapService(snaps, sc, sp.key, svc)
	}
	for name, ifc := range d.ifaces {
		ifc.fw.SetConfig(snaps[name])
	}
	return services
}

// snapService puts svc, the service of sc known by key, in its
// interface's snapshot under each of its ports.
func (d *Director) snapService(snaps map[string]*forward.Config, sc *config.Service, key lvs.ServiceKey, svc *forward.Service) {
	if sc.Ports == nil {
		snaps[sc.Interface].Services[key] = svc
	}
	for _, port := range sc.Ports {
		pk := key
		pk.Port = port
		snaps[sc.Interface].Services[pk] = svc
	}
}

// tell logs a scheduler callback that failed: the director's list and the
// scheduler's disagree, which is a bug; the scheduler keeps its list.
func (d *Director) tell(sp *svcPlan, op string, x *lvs.Dest, err error) {
	if err != nil {
		d.log.Error("scheduler refused a change", "vip", sp.sc.Addr, "op", op, "real", x.String(), "err", err)
	}
}

// unlink marks a destination that leaves its service's list.
func unlink(x *lvs.Dest) {
	x.Available.Store(false)
	x.Removed.Store(true)
}

// destTrashPeriod is IP_VS_DEST_TRASH_PERIOD: a removed destination without
// connections is forgotten this long after its removal (ns).
const destTrashPeriod = int64(120e9)

// trashed is a destination removed from the configuration, kept so that
// re-adding it revives it with its counters (ip_vs_trash_get_dest).
type trashed struct {
	dst   *lvs.Dest
	since int64
}

// expired reports whether the kernel's trash timer would have freed t by
// now: removed for IP_VS_DEST_TRASH_PERIOD and without connections or
// templates.
func (t *trashed) expired(now int64) bool {
	x := t.dst
	return now-t.since >= destTrashPeriod && x.ActiveConns.Load() == 0 &&
		x.InactiveConns.Load() == 0 && x.PersistConns.Load() == 0
}

// destFor returns the destination of a real server (dk, rc) that a plan
// links or keeps: the one in force, else the one in the trash (revived with
// its counters, as ip_vs_trash_get_dest), else a new one (fresh). The
// kernel's trash timer frees idle destinations whether or not anything
// changes, while lvsd collects its trash only at a change: an expired entry
// is therefore not revived here either.
//
// Preconditions: d.mu is held.
func (d *Director) destFor(p *plan, dk destKey, rc *config.Real) (dst *lvs.Dest, fresh bool) {
	if x := d.dests[dk]; x != nil {
		return x, false
	}
	if t := d.trash[dk]; t != nil && !t.expired(p.now) {
		p.revived[dk] = true
		return t.dst, false
	}
	dst = lvs.NewDest(rc.Addr, rc.Port, rc.Method, rc.Weight)
	dst.Tun = rc.Tunnel
	return dst, true
}

// retire removes what the change left unused: VIPs, the destinations of
// removed real servers and services (to the trash), and neighbours.
//
// Preconditions: d.mu is held.
func (d *Director) retire(p *plan, services map[lvs.ServiceKey]*runService) {
	for name, ifc := range d.ifaces {
		for vip := range ifc.vips {
			if !p.wantVIPs[name][vip] {
				if err := d.st.RemoveVIP(ifc.nic, vip); err != nil {
					d.log.Warn("remove vip failed", "interface", name, "vip", vip, "err", err)
				}
				delete(ifc.vips, vip)
			}
		}
	}
	for k, old := range d.dests {
		if p.dests[k] != old {
			// Gone from the configuration (or its service is gone): a
			// service that is deleted has no list to unlink from.
			unlink(old)
			d.trash[k] = &trashed{dst: old, since: p.now}
		}
	}
	for k := range p.revived {
		delete(d.trash, k)
	}
	for k, t := range d.trash {
		if t.expired(p.now) {
			delete(d.trash, k)
		}
	}
	// Neighbours no real server needs any more are no longer resolved. A
	// destination in the trash keeps its slot: revived, it forwards at
	// once, as the kernel's revived destination keeps its cached route.
	keep := make(map[*lvs.Neighbor]bool, len(p.dests))
	for _, dst := range p.dests {
		if dst.Neigh != nil {
			keep[dst.Neigh] = true
		}
	}
	for _, t := range d.trash {
		if t.dst.Neigh != nil {
			keep[t.dst.Neigh] = true
		}
	}
	d.st.KeepNeighbors(keep)
	d.dests = p.dests
	d.services = services
	d.cfg = p.cfg
	d.health = p.health
}

// tableOptions applies [timeouts], [sysctl] and [connections] to the
// connection table and the persistence table. It is the only place these
// keys take effect (New builds the tables with nothing but a clock).
func (d *Director) tableOptions(cfg *config.Config) {
	d.table.SetTimeouts(tableTimeouts(&cfg.Timeouts))
	d.table.SetMax(cfg.Connections.Max)
	d.table.SetReserve(float64(cfg.Connections.ReserveEstablished) / 100)
	d.table.SetSourceLimits(sourceLimits(&cfg.Connections))
	d.table.SetCheckRST(cfg.Connections.CheckRST)
	d.table.SetExpireNodestConn(cfg.Sysctl.ExpireNodestConn)
	d.table.SetSecureTCP(cfg.Sysctl.SecureTCP)
	d.persist.SetExpireQuiescent(cfg.Sysctl.ExpireQuiescentTemplate)
}

// tableTimeouts converts the configuration's timeouts to the table's.
func tableTimeouts(t *config.Timeouts) conntrack.Timeouts {
	return conntrack.Timeouts{TCP: t.TCP, TCPFin: t.TCPFin, UDP: t.UDP, TCPTimeWait: t.TCPTimeWait, TCPClose: t.TCPClose}
}

// sourceLimits converts the configuration's per-source limits to the
// table's.
func sourceLimits(c *config.Connections) conntrack.SourceLimits {
	return conntrack.SourceLimits{Conns: c.PerSource, NewPerSec: c.PerSourceRate, PrefixV4: c.SourcePrefixV4, PrefixV6: c.SourcePrefixV6}
}

// sameThresholds reports whether dst has rc's thresholds.
func sameThresholds(dst *lvs.Dest, rc *config.Real) bool {
	u, l := dst.Thresholds()
	return u == rc.UpperThreshold && l == rc.LowerThreshold
}

// upper returns dst's upper threshold.
func upper(dst *lvs.Dest) int32 {
	u, _ := dst.Thresholds()
	return u
}
