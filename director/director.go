// Package director is lvsd's control plane: it turns a validated
// configuration into running parts (devices, netstack NICs, forwarders,
// schedulers, the connection table) and applies reloads.
//
// It never touches packets. The only state it shares with the packet path
// is published atomically: a forward.Config snapshot per interface, the
// destinations' atomic weights, and the neighbour slots that package stack
// keeps current. A reload builds new snapshots and swaps them whole;
// destinations that survive a reload are the same objects, so connections
// bound to them keep their counters.
package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
	"github.com/lvsd/lvsd/sched"
	"github.com/lvsd/lvsd/stack"
)

// Options configure a Director.
type Options struct {
	Logger *slog.Logger
	// Devices, when set, replaces opening TAP/TUN devices: it returns the
	// device queues for an interface. Tests use it with stack.MemDevice.
	Devices func(config.Interface) ([]stack.Device, error)
	// Version is reported by Status.
	Version string
}

// Director runs one lvsd instance.
type Director struct {
	log   *slog.Logger
	opts  Options
	st    *stack.Stack
	table *conntrack.Table
	// persist holds the persistence templates of every service; its clock
	// is the connection table's, as is the clock of the schedulers and of
	// the destinations' slow start.
	persist *persist.Table

	mu sync.Mutex
	// cfg is the configuration in force. Guarded by mu.
	cfg *config.Config
	// ifaces are the running interfaces by name. The map is fixed after New;
	// each iface's vips are guarded by mu.
	ifaces map[string]*iface
	// dests holds every destination in force, so that a reload reuses them.
	// Guarded by mu.
	dests map[destKey]*lvs.Dest
	// reloadErr is the error of the last reload, "" after a good one; the
	// running configuration is stale while it is set. Guarded by mu.
	reloadErr string
	// reloadFailures counts reloads that were refused. Guarded by mu.
	reloadFailures uint64
	reloads        reloadCounts // outcomes for metrics; atomic
	// stopped is set when Run begins to close everything; apply refuses
	// to run after it. Guarded by mu.
	stopped bool
	// running are the interfaces opened by New, in file order; fixed.
	running []config.Interface
	// services are the services in force by key, for Status. Guarded by mu.
	services map[forward.ServiceKey]*forward.Service
}

type iface struct {
	cfg  config.Interface
	nic  stack.NICID
	link *stack.Link
	fw   *forward.Forwarder
	vips map[netip.Addr]bool
}

type destKey struct {
	svc    forward.ServiceKey
	addr   netip.Addr
	port   uint16
	method lvs.Method
}

// New opens the configured devices, builds the netstack and the forwarders,
// and applies the virtual services. Nothing runs until Run.
func New(cfg *config.Config, opts Options) (*Director, error) {
	d := &Director{
		log:    opts.Logger,
		opts:   opts,
		ifaces: make(map[string]*iface),
		dests:  make(map[destKey]*lvs.Dest),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.st = stack.New(stack.Options{Logger: d.log})
	d.table = conntrack.New(conntrack.Options{
		TCPTimeout:    cfg.Timeouts.TCP,
		TCPFinTimeout: cfg.Timeouts.TCPFin,
		UDPTimeout:    cfg.Timeouts.UDP,

		Timeouts: map[conntrack.State]time.Duration{
			conntrack.StateTimeWait: cfg.Timeouts.TCPTimeWait,
			conntrack.StateClose:    cfg.Timeouts.TCPClose,
		},
		Max:              cfg.Connections.Max,
		ExpireNodestConn: cfg.Sysctl.ExpireNodestConn,
		SecureTCP:        cfg.Sysctl.SecureTCP,
	})
	d.persist = persist.New(persist.Options{Clock: d.table.Now})
	ok := false
	defer func() {
		if !ok {
			d.st.Close()
		}
	}()
	for _, ic := range cfg.Interfaces {
		if err := d.addInterface(ic); err != nil {
			return nil, err
		}
	}
	d.running = cfg.Interfaces
	if err := d.apply(cfg); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

func (d *Director) addInterface(ic config.Interface) error {
	devs, mac, err := d.openDevices(ic)
	if err != nil {
		return err
	}
	// mac is not written back into ic: a reload compares configurations,
	// and a packet interface's configuration has no MAC.
	ethernet := ic.Type.Ethernet()
	lt := forward.IP
	if ethernet {
		lt = forward.Ethernet
	}
	fw := forward.New(forward.Options{
		Link:   lt,
		MAC:    lvs.MAC(mac),
		MTU:    ic.MTU,
		Table:  d.table,
		Logger: d.log.With("interface", ic.Name),
	})
	link := stack.NewLink(stack.LinkOptions{
		Devices:      devs,
		Ethernet:     ethernet,
		VNetHdr:      ic.Offload && d.opts.Devices == nil,
		MTU:          uint32(ic.MTU),
		MAC:          mac,
		NewProcessor: func() stack.Processor { return fw.NewWorker() },
		Logger:       d.log.With("interface", ic.Name),
	})
	routes := make([]stack.Route, 0, len(ic.Routes))
	for _, r := range ic.Routes {
		routes = append(routes, stack.Route{Destination: r.Destination, Gateway: r.Gateway})
	}
	nic, err := d.st.AddNIC(stack.NICOptions{
		Name: ic.Name, Link: link, Ethernet: ethernet, Addresses: ic.Addresses, Routes: routes,
	})
	if err != nil {
		link.Close()
		return fmt.Errorf("interface %q: %w", ic.Name, err)
	}
	d.ifaces[ic.Name] = &iface{cfg: ic, nic: nic, link: link, fw: fw, vips: make(map[netip.Addr]bool)}
	d.log.Info("interface attached", "interface", ic.Name, "type", ic.Type.String(),
		"queues", len(devs), "offload", ic.Offload, "addresses", fmt.Sprint(ic.Addresses))
	return nil
}

// openDevices opens the queues of an interface and returns them with the
// netstack's MAC: the configured one, or for a packet interface the
// interface's own.
func (d *Director) openDevices(ic config.Interface) ([]stack.Device, [6]byte, error) {
	if d.opts.Devices != nil {
		devs, err := d.opts.Devices(ic)
		return devs, ic.MAC, err
	}
	if ic.Type == config.PACKET {
		return d.attachPacket(ic)
	}
	tuns, err := stack.OpenTun(stack.DeviceOptions{
		Name: ic.Name, TAP: ic.Type == config.TAP, VNetHdr: ic.Offload, Queues: ic.Queues, MAC: ic.MAC,
	})
	if err != nil {
		return nil, ic.MAC, fmt.Errorf("interface %q: %w", ic.Name, err)
	}
	// The device must be up before the netstack sends its first ARP request,
	// or the neighbour entry fails at once.
	if err := stack.SetLinkUp(ic.Name, ic.MTU); err != nil {
		up, uerr := stack.LinkIsUp(ic.Name)
		if uerr != nil || !up {
			for _, t := range tuns {
				t.Close()
			}
			return nil, ic.MAC, fmt.Errorf("interface %q is down and lvsd cannot bring it up (run `ip link set %s up` as root): %w", ic.Name, ic.Name, err)
		}
		d.log.Debug("interface already up; not changing it", "interface", ic.Name, "err", err)
	}
	devs := make([]stack.Device, len(tuns))
	for i, t := range tuns {
		devs[i] = t
	}
	return devs, ic.MAC, nil
}

// attachPacket opens the AF_PACKET sockets of a packet interface. lvsd does
// not change an interface it did not make: it must be up already, with an
// MTU at least the configured one, and its MAC becomes the netstack's.
func (d *Director) attachPacket(ic config.Interface) ([]stack.Device, [6]byte, error) {
	var mac [6]byte
	ifi, err := net.InterfaceByName(ic.Name)
	if err != nil {
		return nil, mac, fmt.Errorf("interface %q: %w (a packet interface must exist)", ic.Name, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, mac, fmt.Errorf("interface %q is down (run `ip link set %s up`)", ic.Name, ic.Name)
	}
	if ifi.MTU < ic.MTU {
		return nil, mac, fmt.Errorf("interface %q: its MTU is %d, below the configured mtu %d", ic.Name, ifi.MTU, ic.MTU)
	}
	if len(ifi.HardwareAddr) != len(mac) {
		return nil, mac, fmt.Errorf("interface %q is not an Ethernet interface", ic.Name)
	}
	copy(mac[:], ifi.HardwareAddr)
	socks, err := stack.OpenPacket(stack.PacketOptions{Name: ic.Name, VNetHdr: ic.Offload, Queues: ic.Queues})
	if err != nil {
		return nil, mac, fmt.Errorf("interface %q: %w", ic.Name, err)
	}
	devs := make([]stack.Device, len(socks))
	for i, s := range socks {
		devs[i] = s
	}
	return devs, mac, nil
}

// Run keeps the director's background work going (neighbour resolution,
// connection expiry) until ctx ends, then closes everything and waits for
// every goroutine it started.
func (d *Director) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { d.st.Run(ctx) })
	wg.Go(func() { d.table.Run(ctx) })
	wg.Go(func() { d.persist.Run(ctx) })
	<-ctx.Done()
	wg.Wait()
	d.st.Close()
	return nil
}

// Close releases the devices of a Director that was never Run.
func (d *Director) Close() { d.st.Close() }

// NoteReload records the outcome of a reload attempt (nil: it applied), for
// Status: a refused reload leaves the running configuration stale, which an
// operator must be able to see, not only in the log.
func (d *Director) NoteReload(err error) {
	d.reloads.note(err)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.reloadErr = ""
		return
	}
	d.reloadErr = err.Error()
	if !errors.Is(err, ErrRestartNeeded) {
		d.reloadFailures++
	}
}

// ErrRestartNeeded is returned by Reload when the new configuration changes
// interfaces, which only a restart applies; the virtual services of the new
// configuration were applied anyway.
var ErrRestartNeeded = errors.New("interface changes need a restart")

// Reload applies a new validated configuration: virtual services, real
// servers, weights and timeouts. Established connections keep their real
// server. On error the running configuration stays in force.
func (d *Director) Reload(cfg *config.Config) error {
	// Compare with the interfaces that run, not with the last file: a
	// reload that was told "restart needed" must keep saying so.
	if !slices.EqualFunc(d.running, cfg.Interfaces, sameInterface) {
		// Apply the services that fit the running interfaces only.
		for _, s := range cfg.Services {
			if _, ok := d.ifaces[s.Interface]; !ok {
				return fmt.Errorf("reload: virtual server %s uses interface %q which is not running: %w", s.Addr, s.Interface, ErrRestartNeeded)
			}
		}
		if err := d.apply(cfg); err != nil {
			return err
		}
		return ErrRestartNeeded
	}
	return d.apply(cfg)
}

func sameInterface(a, b config.Interface) bool {
	return a.Name == b.Name && a.Type == b.Type && a.MTU == b.MTU && a.MAC == b.MAC &&
		a.Queues == b.Queues && a.Offload == b.Offload && a.Create == b.Create &&
		slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.Routes, b.Routes)
}

// apply builds and publishes one snapshot per interface.
func (d *Director) apply(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return errors.New("lvsd is stopping")
	}

	snaps := make(map[string]*forward.Config, len(d.ifaces))
	for name := range d.ifaces {
		snaps[name] = &forward.Config{Services: make(map[forward.ServiceKey]*forward.Service)}
	}
	wantVIPs := make(map[string]map[netip.Addr]bool)
	dests := make(map[destKey]*lvs.Dest)
	services := make(map[forward.ServiceKey]*forward.Service)
	// Weight and threshold changes of surviving destinations are applied
	// only once the whole configuration has been built, so that a failed
	// reload changes nothing.
	var updates []func()
	// rebuild builds each service's scheduler again after the updates, from
	// the new weights, before the snapshots are published.
	var rebuild []func()
	// now is the clock of slow start: a real server added to a running
	// service ramps up from now, and so does one whose weight rises from 0
	// (SetWeight). The real servers of a new service do not: nothing is
	// already loaded.
	now := d.table.Now()
	for _, sc := range cfg.Services {
		ifc := d.ifaces[sc.Interface]
		if ifc == nil {
			return fmt.Errorf("virtual server %s: interface %q is not running", sc.Addr, sc.Interface)
		}
		// A service over a list of ports is known by its first port; its
		// real servers have port 0.
		key := forward.ServiceKey{Addr: lvs.AddrFromNetip(sc.Addr), Port: sc.Port, Proto: sc.Proto}
		svc := &forward.Service{Key: key, TunSrc: tunnelSource(ifc.cfg), Ports: sc.Ports, OnePacket: sc.OnePacket}
		prev, running := d.services[key]
		if running {
			svc.Stats = prev.Stats // counters survive reloads
		} else {
			svc.Stats = new(lvs.Stats)
		}
		for _, rc := range sc.Reals {
			dk := destKey{svc: key, addr: rc.Addr, port: rc.Port, method: rc.Method}
			dst := d.dests[dk]
			added := dst == nil
			if added {
				dst = lvs.NewDest(rc.Addr, rc.Port, rc.Method, rc.Weight)
			}
			updates = append(updates, func() {
				if added {
					// Only now: a reload that fails must not leave
					// neighbours being resolved for nothing.
					dst.Neigh = d.st.Neighbor(ifc.nic, rc.Addr)
				}
				dst.SlowStart.Store(int64(rc.SlowStart))
				dst.SetWeight(rc.Weight, now)
				dst.UpperThreshold.Store(rc.UpperThreshold)
				dst.LowerThreshold.Store(rc.LowerThreshold)
				if added && running {
					dst.StartRamp(now)
				}
			})
			dests[dk] = dst
			svc.Dests = append(svc.Dests, dst)
		}
		if p := sc.Persistence; p.Timeout > 0 {
			// Templates are keyed by the service's key port: the ports of
			// a list, like all ports of a port-zero service, share them.
			svc.Persist = &persist.Policy{Table: d.persist, Timeout: int64(p.Timeout),
				Mask: persist.Mask(p.Netmask, sc.Addr.Is4()), Port: key.Port}
		}
		// This scheduler only proves that the service's can be built: the
		// one published is built below, once the new weights are in place
		// (a scheduler samples them when it is built: wrr's cycle, the
		// hashing tables).
		opts := sched.Options{Flags: sc.SchedFlags, Clock: d.table.Now, MaglevSize: sc.MaglevTableSize}
		s, err := sched.New(sc.Scheduler, svc.Dests, opts)
		if err != nil {
			return fmt.Errorf("virtual server %s: %w", sc.Addr, err)
		}
		svc.Sched = s
		rebuild = append(rebuild, func() {
			if s, err := sched.New(sc.Scheduler, svc.Dests, opts); err == nil {
				svc.Sched = s
			} else {
				d.log.Warn("scheduler rebuild failed; keeping one built from the previous weights", "vip", sc.Addr, "err", err)
			}
		})
		services[key] = svc
		if sc.Ports == nil {
			snaps[sc.Interface].Services[key] = svc
		}
		for _, port := range sc.Ports {
			pk := key
			pk.Port = port
			snaps[sc.Interface].Services[pk] = svc
		}
		if wantVIPs[sc.Interface] == nil {
			wantVIPs[sc.Interface] = make(map[netip.Addr]bool)
		}
		wantVIPs[sc.Interface][sc.Addr] = true
	}
	// VIPs first, so that ARP for a new VIP is answered when its snapshot
	// goes live; stale VIPs after. If one cannot be added, the ones added
	// here are removed again: a failed reload changes nothing.
	type addedVIP struct {
		ifc *iface
		vip netip.Addr
	}
	var addedVIPs []addedVIP
	for name, ifc := range d.ifaces {
		for vip := range wantVIPs[name] {
			if ifc.vips[vip] {
				continue
			}
			if err := d.st.AddVIP(ifc.nic, vip); err != nil {
				for _, a := range addedVIPs {
					d.st.RemoveVIP(a.ifc.nic, a.vip)
					delete(a.ifc.vips, a.vip)
				}
				return fmt.Errorf("interface %q: %w", name, err)
			}
			ifc.vips[vip] = true
			addedVIPs = append(addedVIPs, addedVIP{ifc, vip})
		}
	}
	for _, u := range updates {
		u()
	}
	for _, r := range rebuild {
		r()
	}
	// A removed real server becomes unavailable, as IPVS clears
	// IP_VS_DEST_F_AVAILABLE when it unlinks a destination: its persistence
	// templates are invalidated at their next use. Its connections continue.
	for dk, dst := range d.dests {
		if dests[dk] != dst {
			dst.Available.Store(false)
		}
	}
	d.persist.SetExpireQuiescent(cfg.Sysctl.ExpireQuiescentTemplate)
	for name, ifc := range d.ifaces {
		ifc.fw.SetConfig(snaps[name])
		for vip := range ifc.vips {
			if !wantVIPs[name][vip] {
				if err := d.st.RemoveVIP(ifc.nic, vip); err != nil {
					d.log.Warn("remove vip failed", "interface", name, "vip", vip, "err", err)
				}
				delete(ifc.vips, vip)
			}
		}
	}
	// Destinations the new configuration dropped: their connections end
	// as expire_nodest_conn says (the new snapshots no longer schedule
	// them). A quiescent one (weight 0) is not dropped.
	for k, old := range d.dests {
		if dests[k] != old {
			old.Removed.Store(true)
		}
	}
	// Neighbours no real server needs any more are no longer resolved.
	keep := make(map[*lvs.Neighbor]bool, len(dests))
	for _, dst := range dests {
		if dst.Neigh != nil {
			keep[dst.Neigh] = true
		}
	}
	d.st.KeepNeighbors(keep)
	d.dests = dests
	d.services = services
	d.cfg = cfg
	d.table.SetTimeouts(cfg.Timeouts.TCP, cfg.Timeouts.TCPFin, cfg.Timeouts.UDP)
	d.table.SetTimeout(conntrack.StateTimeWait, cfg.Timeouts.TCPTimeWait)
	d.table.SetTimeout(conntrack.StateClose, cfg.Timeouts.TCPClose)
	d.table.SetMax(cfg.Connections.Max)
	d.table.SetExpireNodestConn(cfg.Sysctl.ExpireNodestConn)
	d.table.SetSecureTCP(cfg.Sysctl.SecureTCP)
	d.log.Info("configuration applied", "file", cfg.File, "virtual_servers", len(cfg.Services), "real_servers", len(dests))
	return nil
}

// tunnelSource returns the outer source address of IPIP packets sent from an
// interface: its first IPv4 DIP (zero when it has none).
func tunnelSource(ic config.Interface) lvs.Addr {
	for _, p := range ic.Addresses {
		if p.Addr().Is4() {
			return lvs.AddrFromNetip(p.Addr())
		}
	}
	return lvs.Addr{}
}

// Forwarder returns the forwarder of an interface, for counters.
func (d *Director) Forwarder(name string) *forward.Forwarder {
	if ifc := d.ifaces[name]; ifc != nil {
		return ifc.fw
	}
	return nil
}

// Table returns the connection table.
func (d *Director) Table() *conntrack.Table { return d.table }

// Stack returns the director's netstack.
func (d *Director) Stack() *stack.Stack { return d.st }
