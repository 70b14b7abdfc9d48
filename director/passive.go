package director

import (
	"context"
	"time"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/health"
	"github.com/lvsd/lvsd/lvs"
)

// Passive detection: every conntrack.EstimateInterval the director reads
// each real server's handshake failures from the table (summed from the
// workers' counters off the packet path) for the services whose passive
// table is on, lets d.passive decide, and applies its edges through
// SetRealHealth, as a check's edges. An ejected server leaves scheduling
// the way its check's inhibit_on_failure says (removal without a check).

// runPassive observes the failures until ctx ends.
func (d *Director) runPassive(ctx context.Context) {
	t := time.NewTicker(conntrack.EstimateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.observePassive(now)
		}
	}
}

// observePassive runs one observation at time now.
func (d *Director) observePassive(now time.Time) {
	d.mu.Lock()
	on := false
	if d.cfg != nil {
		for _, sc := range d.cfg.Services {
			on = on || sc.Health.Passive.Enabled
		}
	}
	d.mu.Unlock()
	failures := make(map[*lvs.Dest]uint64)
	if on {
		d.table.Failures(func(x *lvs.Dest, n uint64) { failures[x] = n })
	}

	d.mu.Lock()
	var obs []health.PassiveObs[RealKey]
	inhibit := make(map[RealKey]bool)
	if d.cfg != nil {
		for _, sc := range d.cfg.Services {
			if !sc.Health.Passive.Enabled {
				continue
			}
			key := serviceKey(&sc)
			group := RealKey{Service: key}.String()
			for _, rc := range sc.Reals {
				k := RealKey{Service: key, Addr: rc.Addr, Port: rc.Port}
				dst := d.dests[destKey{svc: key, addr: rc.Addr, port: rc.Port, method: rc.Method}]
				if dst == nil {
					continue
				}
				ps, _ := d.passive.StatusOf(k)
				down := d.health[k].down && !ps.Ejected
				if d.checks != nil {
					if cs, _, ok := d.checks.StatusOf(k); ok && !cs.Up {
						down = true
					}
				}
				if rc.Check != nil {
					inhibit[k] = rc.Check.InhibitOnFailure
				}
				obs = append(obs, health.PassiveObs[RealKey]{Key: k, Group: group, Failures: failures[dst], Down: down, Config: sc.Health.Passive})
			}
		}
	}
	edges := d.passive.Observe(now, obs)
	d.mu.Unlock()
	for _, e := range edges {
		if e.Eject {
			d.log.Warn("passive detection ejects real server", "real", e.Key.String(), "for", e.For)
		} else {
			d.log.Info("passive detection returns real server", "real", e.Key.String())
		}
		(*healthSink)(d).SetHealth(e.Key, !e.Eject, inhibit[e.Key])
	}
}

// passiveStatus returns the passive detection state of real server k for
// Status; nil when its service has none.
func (d *Director) passiveStatus(k RealKey) *control.Passive {
	st, ok := d.passive.StatusOf(k)
	if !ok {
		return nil
	}
	p := &control.Passive{State: "in", Ejections: st.Ejections, EjectionsTotal: st.Total, Failures: st.Failures, WindowFailures: st.Window, Held: st.Held}
	if st.Ejected {
		p.State, p.Until = "ejected", st.Until
	}
	return p
}
