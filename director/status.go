package director

import (
	"net/netip"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/stack"
)

var _ control.Source = (*Director)(nil)

// Status implements control.Source: a snapshot of services, real servers
// and counters. It reads atomics only; the packet path is not disturbed.
func (d *Director) Status() control.Status {
	// The packet path counts per worker; this folds the counts into the
	// lvs.Stats read below (they lag by up to 2 s otherwise), and gives the
	// rate estimates.
	ts := d.table.Stats()
	destRates := make(map[*lvs.Dest]control.Rates, len(ts.Dests))
	for _, ds := range ts.Dests {
		destRates[ds.Dest] = rates(ds.Rates)
	}
	svcRates := make(map[lvs.ServiceKey]control.Rates, len(ts.Services))
	for _, ss := range ts.Services {
		svcRates[ss.Service] = rates(ss.Rates)
	}
	d.mu.Lock()
	reloadErr, reloadFailures, restartNeeded := d.reloadErr, d.reloadFailures, d.restartNeeded
	cfg := d.cfg
	dests := d.dests
	svcs := d.services
	d.mu.Unlock()

	st := control.Status{
		Version: d.opts.Version, Config: cfg.File, Connections: d.table.Len(),
		ConfigStale: reloadErr != "", LastReloadError: reloadErr, ReloadFailures: reloadFailures,
		RestartNeeded: restartNeeded,
		Table: control.Table{
			Max: ts.Max, Unestablished: ts.Unestablished, Evicted: ts.Evicted, Refused: ts.Refused,
			NodestExpired: ts.NodestExpired, Reused: ts.Reused, SourceLimited: ts.SourceLimited, SourceRated: ts.SourceRated,
			RSTOutOfWindow: ts.RSTOutOfWindow,
		},
		Neighbors: neighbors(d.st.NeighborCounts()),
	}
	for _, sc := range cfg.Services {
		key := lvs.ServiceKey{Addr: lvs.AddrFromNetip(sc.Addr), Port: sc.Port, Proto: sc.Proto}
		s := control.Service{
			Name:      sc.Name,
			Protocol:  sc.Proto.String(),
			Address:   netip.AddrPortFrom(sc.Addr, sc.Port).String(),
			Scheduler: sc.Scheduler,
			Flags:     sc.SchedFlags,
			Rates:     svcRates[key],
		}
		if rs := svcs[key]; rs != nil && rs.svc.Stats != nil {
			s.Stats = stats(rs.svc.Stats)
		}
		for _, rc := range sc.Reals {
			dst := dests[destKey{svc: key, addr: rc.Addr, port: rc.Port, method: rc.Method}]
			if dst == nil {
				continue
			}
			s.Reals = append(s.Reals, control.Real{
				Address:      netip.AddrPortFrom(rc.Addr, rc.Port).String(),
				Method:       rc.Method.String(),
				Weight:       dst.Weight.Load(),
				ActiveConn:   dst.ActiveConns.Load(),
				InactConn:    dst.InactiveConns.Load(),
				PersistConns: dst.PersistConns.Load(),
				Available:    dst.Available.Load(),
				Overloaded:   dst.Overloaded.Load(),
				Stats:        stats(&dst.Stats),
				Rates:        destRates[dst],
				Health:       d.checkStatus(RealKey{Service: key, Addr: rc.Addr, Port: rc.Port}),
			})
		}
		st.Services = append(st.Services, s)
	}
	for _, ic := range d.running {
		ifc := d.ifaces[ic.Name]
		if ifc == nil {
			continue
		}
		c := ifc.fw.Counters()
		ls := ifc.link.Stats()
		i := control.Interface{
			Name:           ic.Name,
			Type:           ic.Type.String(),
			State:          map[bool]string{false: "up", true: "lost"}[ifc.link.Lost()],
			Reattached:     ifc.reattached.Load(),
			ForwardedIn:    c.ForwardedIn,
			ForwardedOut:   c.ForwardedOut,
			ToStack:        c.ToStack,
			NewConns:       c.NewConns,
			FragsHeld:      c.FragsHeld,
			Reassembled:    c.Reassembled,
			SynCookies:     c.SynCookies,
			SynproxyOpened: c.SynproxyOpened,
			NeighborHeld:   ls.NeighHeld,
			NeighborSent:   ls.NeighSent,
			Drops:          make(map[string]uint64),
			RxFrames:       ls.RxFrames,
			TxFrames:       ls.TxFrames,
			RxErrors:       ls.RxErrors,
			TxErrors:       ls.TxErrors,
			KernelDrops:    ls.KernelDrops,
			KernelSYN:      ls.KernelSYNDrops,
		}
		// The frames that waited for a neighbour's MAC are the link's
		// (stack/neighq.go): those dropped count with the fast path's.
		c.Drops[forward.DropNoNeighbor] += ls.NeighDropped
		c.Drops[forward.DropNeighborQueue] += ls.NeighOverflow
		for r := forward.DropReason(1); r < forward.NumDropReasons; r++ {
			i.Drops[r.String()] = c.Drops[r]
		}
		for _, q := range ifc.link.QueueStats() {
			i.Queues = append(i.Queues, control.Queue{RxFrames: q.RxFrames, TxFrames: q.TxFrames})
		}
		st.Interfaces = append(st.Interfaces, i)
	}
	return st
}

func rates(r conntrack.Rates) control.Rates {
	return control.Rates{CPS: r.CPS, InPPS: r.InPPS, OutPPS: r.OutPPS, InBPS: r.InBPS, OutBPS: r.OutBPS}
}

func stats(s *lvs.Stats) control.Stats {
	return control.Stats{
		Conns:    s.Conns.Load(),
		InPkts:   s.InPkts.Load(),
		OutPkts:  s.OutPkts.Load(),
		InBytes:  s.InBytes.Load(),
		OutBytes: s.OutBytes.Load(),
	}
}

func neighbors(c stack.NeighborCounts) control.Neighbors {
	return control.Neighbors{Lost: c.Lost, Failed: c.Failed, Unconfirmed: c.Unconfirmed}
}
