package director

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/health"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/stack"
)

// Health checks: the director owns a health.Manager (d.checks) with one
// monitor per checked real server. Its edges come back through healthSink,
// queued and applied in batches (edges.go) with the semantics of
// SetRealHealth and SetRealWeight; after
// every change of the table, syncChecks makes the monitors match the
// configuration (a reload keeps the monitors of unchanged checks).

// probeNet is the director's netstack as health checks see it.
type probeNet struct{ st *stack.Stack }

var (
	_ health.Net           = probeNet{}
	_ health.ThroughNet    = probeNet{}
	_ health.ThroughDialer = probeNet{}
)

func (p probeNet) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	return p.st.DialTCPReset(ctx, dst)
}

func (p probeNet) ExchangeUDP(ctx context.Context, dst netip.AddrPort, msg, buf []byte, keep func([]byte) bool) (int, error) {
	dg, err := p.st.DialUDP(dst)
	if err != nil {
		return 0, err
	}
	defer dg.Close()
	return dg.Exchange(ctx, msg, buf, keep)
}

func (p probeNet) ProbeThrough(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) error {
	return p.st.ProbeThrough(ctx, rip, vip, tunnel)
}

func (p probeNet) DialThrough(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) (net.Conn, error) {
	return p.st.DialThrough(ctx, rip, vip, tunnel)
}

func (p probeNet) Ping(ctx context.Context, dst netip.Addr, payload []byte) (time.Duration, error) {
	return p.st.Ping(ctx, dst, payload)
}

// healthSink applies the monitors' edges to the running table.
type healthSink Director

func (s *healthSink) SetHealth(k RealKey, up, inhibit bool) {
	d := (*Director)(s)
	if up {
		d.passive.Confirm(k, time.Now())
	}
	d.queueEdge(healthEdge{k: k, origin: "health", edit: func(s *realState) {
		s.down, s.inhibit = !up, !up && inhibit
	}})
}

func (s *healthSink) SetWeight(k RealKey, w int32) {
	d := (*Director)(s)
	if w > maxWeight {
		d.log.Warn("dynamic weight not applied", "real", k.String(), "weight", w, "max", maxWeight)
		return
	}
	d.queueEdge(healthEdge{k: k, origin: "weight", edit: func(s *realState) {
		s.dynamic, s.weight = w >= 0, max(w, 0)
	}})
}

// checkOverlay returns the health overlay a change to cfg starts from: the
// current one, with what the checks of cfg decide before any probe:
//   - a real server that a change adds (not configured yet) with an alpha
//     check starts down, as keepalived's alpha;
//   - a down real server whose check now says otherwise about inhibiting
//     is down the new way;
//   - a real server whose check a change removes is in service with its
//     configured weight (health edges from elsewhere, SetRealHealth
//     called by a user of the package, stay while no check is involved).
//
// Preconditions: d.mu is held.
func (d *Director) checkOverlay(cfg *config.Config, cur map[RealKey]realState) map[RealKey]realState {
	out := make(map[RealKey]realState, len(cur))
	for k, s := range cur {
		out[k] = s
	}
	hadCheck := make(map[RealKey]bool)
	// With the configuration in force (a health edge), a server had a
	// check iff it has one: hadCheck is not needed.
	if d.cfg != nil && d.cfg != cfg {
		for _, sc := range d.cfg.Services {
			svc := lvs.ServiceKey{Addr: lvs.AddrFromNetip(sc.Addr), Port: sc.Port, Proto: sc.Proto}
			for _, rc := range sc.Reals {
				if rc.Check != nil {
					hadCheck[RealKey{Service: svc, Addr: rc.Addr, Port: rc.Port}] = true
				}
			}
		}
	}
	for _, sc := range cfg.Services {
		svc := lvs.ServiceKey{Addr: lvs.AddrFromNetip(sc.Addr), Port: sc.Port, Proto: sc.Proto}
		for _, rc := range sc.Reals {
			k := RealKey{Service: svc, Addr: rc.Addr, Port: rc.Port}
			s, had := out[k]
			switch c := rc.Check; {
			case c == nil:
				if had && hadCheck[k] {
					delete(out, k)
				}
			case c.Alpha && !d.configured(k):
				out[k] = realState{down: true, inhibit: c.InhibitOnFailure}
			case s.down && s.inhibit != c.InhibitOnFailure:
				s.inhibit = c.InhibitOnFailure
				out[k] = s
			}
		}
	}
	return out
}

// syncChecks makes the monitors match cfg after a change of the running
// table, in the state the overlay says each server is in.
//
// Preconditions: d.mu is held (health.Manager.Sync never calls back).
func (d *Director) syncChecks(cfg *config.Config) {
	if d.checks == nil {
		d.checks = health.NewManager[RealKey]((*healthSink)(d), health.Options{
			Logger: d.log.With("part", "health"), Net: probeNet{d.st},
		})
	}
	var specs []health.Spec[RealKey]
	quorums := make(map[string]health.Quorum)
	for _, sc := range cfg.Services {
		svc := lvs.ServiceKey{Addr: lvs.AddrFromNetip(sc.Addr), Port: sc.Port, Proto: sc.Proto}
		vip := netip.AddrPortFrom(sc.Addr, sc.Port)
		group := sc.Proto.String() + " " + vip.String()
		if h := sc.Health; h.Quorum > 0 {
			quorums[group] = health.Quorum{Quorum: h.Quorum, Hysteresis: h.Hysteresis, Up: h.QuorumUp, Down: h.QuorumDown,
				Env: map[string]string{"LVSD_VS_ADDR": sc.Addr.String(), "LVSD_VS_PORT": strconv.Itoa(int(sc.Port)), "LVSD_VS_PROTO": sc.Proto.String()}}
		}
		for _, rc := range sc.Reals {
			k := RealKey{Service: svc, Addr: rc.Addr, Port: rc.Port}
			specs = append(specs, health.Spec[RealKey]{
				Key:    k,
				Target: health.Target{Real: netip.AddrPortFrom(rc.Addr, rc.Port), Virtual: vip, Tunnel: rc.Method == lvs.TUN},
				Group:  group,
				Weight: rc.Weight,
				Check:  rc.Check,
				Down:   d.health[k].down,
			})
		}
	}
	d.checks.SetQuorums(quorums)
	for _, err := range d.checks.Sync(specs) {
		d.log.Warn("health check not started", "err", err)
	}
}

// runChecks runs the monitors until ctx ends.
func (d *Director) runChecks(ctx context.Context) {
	d.mu.Lock()
	m := d.checks
	d.mu.Unlock()
	if m != nil {
		m.Run(ctx)
	}
}

// checkStatus returns the health of real server k for Status; nil when it
// is not checked.
func (d *Director) checkStatus(k RealKey) *control.Health {
	d.mu.Lock()
	m := d.checks
	d.mu.Unlock()
	var (
		st  health.Status
		typ string
		ok  bool
	)
	if m != nil {
		st, typ, ok = m.StatusOf(k)
	}
	if !ok {
		p := d.passiveStatus(k)
		if p == nil {
			return nil
		}
		h := &control.Health{State: "up", Passive: p}
		if p.State == "ejected" {
			h.State = "down"
		}
		return h
	}
	h := &control.Health{
		Check: typ, State: "down", Checks: st.Checks, LastError: st.LastError,
		ConsecutiveOK: st.OKRun, ConsecutiveFailed: st.FailRun, LastChange: st.LastChange, LastCheck: st.LastCheck,
		TransitionsUp: st.Ups, TransitionsDown: st.Downs, ChecksTotal: st.Probes,
	}
	if st.Up {
		h.State = "up"
	}
	switch {
	case st.Checks == 0:
	case st.LastOK:
		h.LastResult = "ok"
	default:
		h.LastResult = "failed"
	}
	if st.Weight >= 0 {
		w := st.Weight
		h.Weight = &w
	}
	h.Passive = d.passiveStatus(k)
	return h
}

// planSorry adds a service's sorry server (keepalived's sorry_server) to
// the plan while none of its real servers is up (taken out or inhibited by
// health; or it has none): a NAT destination of weight 1, added to the
// list as `ipvsadm -a` would add it, and removed (to the trash, like a
// removed real server) as soon as a real server is back.
//
// Preconditions: d.mu is held; called by buildServices after the real
// servers of sp are planned.
func (d *Director) planSorry(p *plan, sp *svcPlan, health map[RealKey]realState, linkedNow, linkedNext map[*lvs.Dest]bool) {
	sorry := sp.sc.Health.SorryServer
	if !sorry.IsValid() {
		return
	}
	for _, rc := range sp.sc.Reals {
		if !health[RealKey{Service: sp.key, Addr: rc.Addr, Port: rc.Port}].down {
			return
		}
	}
	rc := &config.Real{Addr: sorry.Addr(), Port: sorry.Port(), Method: lvs.NAT, Weight: 1}
	dk := destKey{svc: sp.key, addr: rc.Addr, port: rc.Port, method: rc.Method}
	if _, clash := p.dests[dk]; clash {
		return // a real server of the service is the sorry server too
	}
	rp := realPlan{rc: rc, dk: dk, linked: true, weight: 1}
	rp.dst, rp.fresh = d.destFor(p, dk, rc)
	linkedNext[rp.dst] = true
	if !linkedNow[rp.dst] {
		sp.add = append(sp.add, rp.dst)
	}
	p.dests[dk] = rp.dst
	sp.reals = append(sp.reals, rp)
}
