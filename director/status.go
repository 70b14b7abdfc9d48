package director

import (
	"net/netip"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

var _ control.Source = (*Director)(nil)

// Status implements control.Source: a snapshot of services, real servers
// and counters. It reads atomics only; the packet path is not disturbed.
func (d *Director) Status() control.Status {
	// The packet path counts per worker; this folds the counts into the
	// lvs.Stats read below (they lag by up to 2 s otherwise).
	d.table.Stats()
	d.mu.Lock()
	cfg := d.cfg
	dests := d.dests
	svcs := d.services
	d.mu.Unlock()

	st := control.Status{Version: d.opts.Version, Config: cfg.File, Connections: d.table.Len()}
	for _, sc := range cfg.Services {
		key := forward.ServiceKey{Addr: lvs.AddrFromNetip(sc.Addr), Port: sc.Port, Proto: sc.Proto}
		s := control.Service{
			Name:      sc.Name,
			Protocol:  sc.Proto.String(),
			Address:   netip.AddrPortFrom(sc.Addr, sc.Port).String(),
			Scheduler: sc.Scheduler,
			Flags:     sc.SchedFlags,
		}
		if svc := svcs[key]; svc != nil {
			s.Stats = stats(&svc.Stats)
		}
		for _, rc := range sc.Reals {
			dst := dests[destKey{svc: key, addr: rc.Addr, port: rc.Port, method: rc.Method}]
			if dst == nil {
				continue
			}
			s.Reals = append(s.Reals, control.Real{
				Address:    netip.AddrPortFrom(rc.Addr, rc.Port).String(),
				Method:     rc.Method.String(),
				Weight:     dst.Weight.Load(),
				ActiveConn: dst.ActiveConns.Load(),
				InactConn:  dst.InactiveConns.Load(),
				Available:  dst.Available.Load(),
				Overloaded: dst.Overloaded.Load(),
				Stats:      stats(&dst.Stats),
			})
		}
		st.Services = append(st.Services, s)
	}
	for _, ic := range cfg.Interfaces {
		ifc := d.ifaces[ic.Name]
		if ifc == nil {
			continue
		}
		c := ifc.fw.Counters()
		ls := ifc.link.Stats()
		i := control.Interface{
			Name:         ic.Name,
			ForwardedIn:  c.ForwardedIn,
			ForwardedOut: c.ForwardedOut,
			ToStack:      c.ToStack,
			NewConns:     c.NewConns,
			Drops:        make(map[string]uint64),
			RxFrames:     ls.RxFrames.Load(),
			TxFrames:     ls.TxFrames.Load(),
			RxErrors:     ls.RxErrors.Load(),
			TxErrors:     ls.TxErrors.Load(),
		}
		for r := forward.DropReason(1); r < forward.NumDropReasons; r++ {
			i.Drops[r.String()] = c.Drops[r]
		}
		st.Interfaces = append(st.Interfaces, i)
	}
	return st
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
