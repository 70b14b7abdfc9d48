package director

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/sched"
)

// The running table.
//
// The director's table of virtual services and real servers is the truth,
// as the kernel's IPVS table is: the file is its start state, and a reload,
// a runtime change (ApplyRunning) or a health edge (SetRealHealth,
// SetRealWeight) changes it. Every change goes through change, which works
// out what differs (buildServices), applies it in the steps of apply.go and
// publishes one new snapshot per interface. Schedulers are told what changed
// (sched.Scheduler's AddDest, DelDest, UpdDest) instead of being rebuilt, so
// their state lives on as in the kernel.
//
// The table has two layers: the administrative configuration (what the
// file, or ipvsadm-like runtime changes, say: Running returns it) and the
// health overlay per real server (what checks say: up or down, inhibited,
// a dynamic weight), which a reload keeps. The effective table is the first
// with the second applied: a real server that health took out is not in its
// service's list whatever a reload says, until health puts it back.

// RealKey names one real server of one virtual service. Service is the
// service's key (its first port for a service over a list of ports); Port is
// the real server's port (0 for a service over several ports).
type RealKey struct {
	Service lvs.ServiceKey
	Addr    netip.Addr
	Port    uint16
}

// KeyOf returns the RealKey of real server rc of virtual server sc (of a
// configuration, e.g. one Running returned).
func KeyOf(sc *config.Service, rc *config.Real) RealKey {
	return RealKey{Service: serviceKey(sc), Addr: rc.Addr, Port: rc.Port}
}

// serviceKey is the key of a virtual server: a service over a list of
// ports is known by its first port.
func serviceKey(sc *config.Service) lvs.ServiceKey {
	return lvs.ServiceKey{Addr: lvs.AddrFromNetip(sc.Addr), Port: sc.Port, Proto: sc.Proto}
}

func (k RealKey) String() string {
	return fmt.Sprintf("%s %s -> %s", k.Service.Proto,
		netip.AddrPortFrom(k.Service.Addr.Netip(), k.Service.Port), netip.AddrPortFrom(k.Addr, k.Port))
}

// realState is the health overlay of one real server. The zero value is a
// server in service with its configured weight.
type realState struct {
	down    bool  // health took it out
	inhibit bool  // with down: weight 0 (ipvsadm -e -w 0) instead of removal (ipvsadm -d)
	dynamic bool  // weight replaces the configured weight
	weight  int32 // valid iff dynamic
}

// ErrStopping is returned for a change (reload, runtime change, health
// edge) that arrives after Run began to close the devices.
var ErrStopping = errors.New("lvsd is stopping")

// ErrUnknownReal is returned for a RealKey that names no configured real
// server; the caller should drop its state for that key (a reload removed it).
var ErrUnknownReal = errors.New("no such real server")

// maxWeight is the largest weight (ipvsadm's and the kernel's limit), the
// one config validates against.
const maxWeight = config.MaxWeight

// SetRealHealth applies a health edge to one real server. up=false takes it
// out of scheduling: with inhibit=false exactly as `ipvsadm -d` would
// (unlinked from its service's list, the scheduler's del_dest; its
// connections go on or end as expire_nodest_conn says), with inhibit=true as
// `ipvsadm -e -w 0` (its weight becomes 0; connections go on). up=true puts
// it back: re-added as `ipvsadm -a` would (at the head of the list, the same
// destination with its counters, slow start if configured), or its weight
// restored. The configured weight is never changed. A reload keeps the
// state. Setting the state it already has changes nothing.
func (d *Director) SetRealHealth(k RealKey, up, inhibit bool) error {
	return d.editHealth(k, "health", func(s *realState) {
		s.down, s.inhibit = !up, !up && inhibit
	})
}

// SetRealWeight sets a real server's effective weight, keeping its
// configured one (keepalived's misc_dynamic: a check's result sets the
// weight, as `ipvsadm -e -w` would). w < 0 goes back to the configured
// weight; otherwise w must be at most 65535. While health inhibits the
// server its weight stays 0 and w applies when it is back.
func (d *Director) SetRealWeight(k RealKey, w int32) error {
	if w > maxWeight {
		return fmt.Errorf("set weight of %s: %d is above %d", k, w, maxWeight)
	}
	return d.editHealth(k, "weight", func(s *realState) {
		s.dynamic, s.weight = w >= 0, max(w, 0)
	})
}

// editHealth changes the overlay of one real server through change.
func (d *Director) editHealth(k RealKey, origin string, edit func(*realState)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.configured(k) {
		return fmt.Errorf("%s: %w", k, ErrUnknownReal)
	}
	old := d.health[k]
	s := old
	edit(&s)
	if s == old {
		return nil
	}
	health := make(map[RealKey]realState, len(d.health)+1)
	for hk, hs := range d.health {
		health[hk] = hs
	}
	if s == (realState{}) {
		delete(health, k)
	} else {
		health[k] = s
	}
	return d.change(d.cfg, health, origin)
}

// configured reports whether k names a real server of the running table.
//
// Preconditions: d.mu is held.
func (d *Director) configured(k RealKey) bool {
	rs := d.services[k.Service]
	if rs == nil {
		return false
	}
	for _, rc := range rs.conf.Reals {
		if rc.Addr == k.Addr && rc.Port == k.Port {
			return true
		}
	}
	return false
}

// RealHealth is the health overlay of one real server, as Health reports it.
type RealHealth struct {
	Down, Inhibit bool
	// Weight is the dynamic weight that replaces the configured one; valid
	// iff Dynamic.
	Dynamic bool
	Weight  int32
}

// Health returns the health overlay of every real server that has one (the
// others are in service with their configured weight). Together with
// Running it gives the effective table: a Down server without Inhibit is
// not in its service's list; an inhibited one has weight 0.
func (d *Director) Health() map[RealKey]RealHealth {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[RealKey]RealHealth, len(d.health))
	for k, s := range d.health {
		out[k] = RealHealth{Down: s.down, Inhibit: s.inhibit, Dynamic: s.dynamic, Weight: s.weight}
	}
	return out
}

// Running returns a deep copy of the running table's administrative layer
// as a configuration (see the package comment of running.go): the file as
// reloads and ApplyRunning changed it, with configured weights. The real
// servers of each service are in the order of the `ipvsadm -a` commands
// that rebuild its current list (the list reversed), followed by those that
// health took out. The caller owns the copy; ApplyRunning accepts it back.
func (d *Director) Running() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.cfg.Clone()
	for i := range c.Services {
		sc := &c.Services[i]
		key := serviceKey(sc)
		rs := d.services[key]
		if rs == nil {
			continue
		}
		pos := make(map[*lvs.Dest]int)
		list := rs.sched.Dests()
		for j, x := range list {
			pos[x] = len(list) - j // the head was added last
		}
		rank := func(rc *config.Real) int {
			x := d.dests[destKey{svc: key, addr: rc.Addr, port: rc.Port, method: rc.Method, tun: rc.Tunnel}]
			if p, ok := pos[x]; ok {
				return p
			}
			return len(list) + 1
		}
		slices.SortStableFunc(sc.Reals, func(a, b config.Real) int { return rank(&a) - rank(&b) })
	}
	return c
}

// ApplyRunning makes cfg the running table's administrative layer: cfg is
// validated as a file is (written out as lvsd.toml and parsed again, so
// that every rule of the file applies and an error names origin and a
// line), then applied atomically through the same steps as a reload; the
// health overlay stays. origin names the change in the log ("control",
// "ipvsadm"). Interfaces cannot change at run time: a cfg whose interfaces
// differ from the running ones is refused with ErrRestartNeeded and
// nothing changes. On any error the running table stays as it was.
func (d *Director) ApplyRunning(cfg *config.Config, origin string) error {
	parsed, err := config.Parse(origin, config.Format(cfg))
	if err != nil {
		return err // a config.ErrorList: "ORIGIN:LINE: KEY: message"
	}
	return d.ApplyValidated(parsed, origin)
}

// ApplyValidated is ApplyRunning for a cfg that config.Parse returned
// (adm.Validate's result is one) and nobody changed since: it skips the
// validation, which for a table of 100 000 real servers is seconds of CPU
// spent a second time for nothing. cfg becomes the running table's; the
// caller must not change it afterwards.
func (d *Director) ApplyValidated(cfg *config.Config, origin string) error {
	// d.running is fixed after New: no lock needed to read it.
	if !slices.EqualFunc(d.running, cfg.Interfaces, sameInterface) {
		return fmt.Errorf("%s: %w", origin, ErrRestartNeeded)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg.File = d.cfg.File
	return d.change(cfg, d.health, origin)
}

// change is the one function that applies a change of the running table
// (start, reload, runtime change, health edge): cfg is the new
// administrative layer, health the new overlay. It publishes one new
// snapshot per interface. On error nothing changed.
//
// Preconditions: d.mu is held.
func (d *Director) change(cfg *config.Config, health map[RealKey]realState, origin string) error {
	if d.stopped {
		return ErrStopping
	}
	// A change with the configuration in force (a health edge) changes
	// no check: the monitors are left alone.
	sameCfg := cfg == d.cfg
	health = d.checkOverlay(cfg, health)
	p, err := d.buildServices(cfg, health)
	if err != nil {
		return err
	}
	if err := d.addVIPs(p); err != nil {
		return err
	}
	d.commitWeights(p)
	services := d.publish(p)
	d.retire(p, services)
	d.tableOptions(cfg)
	// Overlay entries of real servers no longer configured go: a server
	// added again starts in service, as a new ipvsadm -a does.
	for k := range d.health {
		if !d.configured(k) {
			delete(d.health, k)
		}
	}
	if !sameCfg {
		d.syncChecks(cfg)
	}
	linked := 0
	for _, rs := range services {
		linked += len(rs.svc.Dests)
	}
	d.log.Info("running table changed", "origin", origin, "file", cfg.File,
		"virtual_servers", len(cfg.Services), "real_servers", len(p.dests), "linked", linked)
	return nil
}

// tickSchedulers runs the periodic timers of the schedulers that have one
// (lblc and lblcr expire their tables), as the kernel's per-service timers.
func (d *Director) tickSchedulers() {
	d.mu.Lock()
	var ts []sched.Ticker
	for _, rs := range d.services {
		if t, ok := rs.sched.(sched.Ticker); ok {
			ts = append(ts, t)
		}
	}
	d.mu.Unlock()
	now := d.table.Now()
	for _, t := range ts {
		t.Tick(now)
	}
}

// schedTickInterval is how often Run calls tickSchedulers.
const schedTickInterval = time.Duration(sched.TickInterval)
