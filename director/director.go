// Package director is lvsd's control plane: it turns a validated
// configuration into running parts (devices, netstack NICs, forwarders,
// schedulers, the connection table) and keeps the running table of virtual
// services and real servers, which every change goes through: reloads
// (Reload), runtime changes (ApplyRunning) and health edges
// (SetRealHealth, SetRealWeight). See running.go for the model and apply.go
// for the steps of a change.
//
// It never touches packets. The only state it shares with the packet path
// is published atomically: a forward.Config snapshot per interface, the
// schedulers (which hold their lists and are told of changes), the
// destinations' atomic weights and flags, and the neighbour slots that
// package stack keeps current. A change builds new snapshots and swaps them
// whole; destinations that survive it are the same objects, so connections
// bound to them keep their counters, and so are the schedulers, so their
// state lives on as in the kernel.
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
	"sync/atomic"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/health"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
	"github.com/lvsd/lvsd/stack"
	"github.com/lvsd/lvsd/takeover"
)

// Options configure a Director.
type Options struct {
	Logger *slog.Logger
	// Devices, when set, replaces opening TAP/TUN devices: it returns the
	// device queues for an interface. Tests use it with device.Mem.
	Devices func(config.Interface) ([]device.Device, error)
	// Version is reported by Status.
	Version string
	// Takeover are the devices handed over by the lvsd this one takes
	// over from (lvsd run -takeover; see takeover.go): New adopts
	// duplicates of those of its interfaces instead of opening them, and
	// reads them only after Release. The caller keeps the files.
	Takeover []takeover.Device
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
	// dests holds the destination of every configured real server, in its
	// service's list or taken out by health, so that a change reuses them.
	// Guarded by mu.
	dests map[destKey]*lvs.Dest
	// trash holds the destinations of real servers removed from the
	// configuration, so that adding one again revives it with its
	// counters, as the kernel's trash. Guarded by mu.
	trash map[destKey]*trashed
	// health is the health overlay of the running table, by real server.
	// Guarded by mu.
	health map[RealKey]realState
	// checks runs the health checks (health.go); set at the first change.
	// Guarded by mu.
	checks *health.Manager[RealKey]
	// passive decides passive-detection ejections (passive.go); it has a
	// lock of its own, taken after mu when both are.
	passive *health.Passive[RealKey]
	// reloadErr is the error of the last reload, "" after a good one; the
	// running configuration is stale while it is set. Guarded by mu.
	reloadErr string
	// reloadFailures counts reloads that were refused. Guarded by mu.
	reloadFailures uint64
	// restartNeeded is why the last reload, which applied the services,
	// needs a restart for interface changes; "" otherwise. Guarded by mu.
	restartNeeded string
	obs           observe // reload outcomes and the capture in force; atomic
	// edges are the health edges waiting to be applied (edges.go).
	edges edgeQueue
	// seq and touched describe the run of health edges a change applies
	// (edges.go): the position of each edge by real server, and the
	// services they touch; nil for any other change. Guarded by mu.
	seq     map[RealKey]int
	touched map[lvs.ServiceKey]bool
	// stopped is set when Run begins to close everything; apply refuses
	// to run after it. Guarded by mu.
	stopped bool
	// running are the interfaces opened by New, in file order; fixed.
	running []config.Interface
	// services are the services in force by key. Guarded by mu.
	services map[lvs.ServiceKey]*runService
	// lostCh carries the names of interfaces whose device was lost to
	// Run's re-attach loop; failed carries the error that ends Run when an
	// interface's on_loss is exit (see devices.go).
	lostCh chan string
	failed chan error
}

type iface struct {
	cfg  config.Interface
	nic  stack.NICID
	link *stack.Link
	fw   *forward.Forwarder
	vips map[netip.Addr]bool
	mac  [6]byte // the link's MAC (a packet interface's own)
	// reattached counts the times the device was opened again after it
	// was lost (link.Lost; see devices.go).
	reattached atomic.Uint64
}

type destKey struct {
	svc    lvs.ServiceKey
	addr   netip.Addr
	port   uint16
	method lvs.Method
	// tun is part of the key as method is: a tunnel that changes makes a
	// new Dest (lvs.Dest.Tun is immutable).
	tun lvs.Tunnel
}

// New opens the configured devices, builds the netstack and the forwarders,
// and applies the virtual services. Nothing runs until Run.
func New(cfg *config.Config, opts Options) (*Director, error) {
	d := &Director{
		log:     opts.Logger,
		opts:    opts,
		ifaces:  make(map[string]*iface),
		dests:   make(map[destKey]*lvs.Dest),
		trash:   make(map[destKey]*trashed),
		health:  make(map[RealKey]realState),
		passive: health.NewPassive[RealKey](),
		lostCh:  make(chan string, 16),
		failed:  make(chan error, 1),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.st = stack.New(stack.Options{Logger: d.log})
	// The tables' settings ([timeouts], [sysctl], [connections]) take
	// effect in tableOptions, at the first change below, as at every
	// reload.
	d.table = conntrack.New(conntrack.Options{})
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
	d.mu.Lock()
	err := d.change(cfg, d.health, "start")
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

func (d *Director) addInterface(ic config.Interface) error {
	devs, mac, vnet, held, err := d.handedDevices(ic)
	if err == nil && !held {
		devs, mac, vnet, err = d.openDevices(ic)
	}
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
		VNetHdr:      vnet,
		MTU:          uint32(ic.MTU),
		MAC:          mac,
		NewProcessor: func() stack.Processor { return fw.NewWorker() },
		Logger:       d.log.With("interface", ic.Name),
		OnLost:       func(err error) { d.deviceLost(ic, err) },
		Held:         held,
		Sender:       ic.SendThread,
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
	d.ifaces[ic.Name] = &iface{cfg: ic, nic: nic, link: link, fw: fw, vips: make(map[netip.Addr]bool), mac: mac}
	sender := "reader"
	if ic.SendThread {
		sender = "thread"
	}
	d.log.Info("interface attached", "interface", ic.Name, "type", ic.Type.String(),
		"queues", len(devs), "offload", vnet, "sender", sender, "addresses", fmt.Sprint(ic.Addresses))
	return nil
}

// openDevices opens the queues of an interface and returns them with the
// netstack's MAC (the configured one, or for a packet interface the
// interface's own) and whether frames carry a virtio-net header: the
// interface's offload key takes effect here, and only here. Devices from
// Options.Devices carry no header.
func (d *Director) openDevices(ic config.Interface) ([]device.Device, [6]byte, bool, error) {
	if d.opts.Devices != nil {
		devs, err := d.opts.Devices(ic)
		return devs, ic.MAC, false, err
	}
	kind := device.TAP
	switch ic.Type {
	case config.TUN:
		kind = device.TUN
	case config.PACKET:
		kind = device.Packet
	}
	if !ic.Create && kind != device.Packet {
		// create = false: the device must exist (device.Open would make
		// it otherwise). The key takes effect here only.
		if _, err := net.InterfaceByName(ic.Name); err != nil {
			return nil, ic.MAC, false, fmt.Errorf("interface %q does not exist and create = false (make it first, e.g. `ip tuntap add %s mode %s`): %w",
				ic.Name, ic.Name, ic.Type, err)
		}
	}
	devs, mac, err := device.Open(device.Spec{
		Name: ic.Name, Kind: kind, MTU: ic.MTU, Queues: ic.Queues, VNetHdr: ic.Offload, MAC: ic.MAC,
		Create: ic.Create, Persist: ic.Persist, Bridge: ic.Bridge, Logger: d.log,
	})
	return devs, mac, ic.Offload, err
}

// Run keeps the director's background work going (neighbour resolution,
// connection expiry, re-attaching lost devices) until parent ends, then
// closes everything and waits for every goroutine it started. It returns
// nil, or the error of an interface whose device was lost with on_loss =
// exit.
func (d *Director) Run(parent context.Context) error {
	// ctx also ends when an interface whose on_loss is exit loses its
	// device: Run then returns that error.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { d.st.Run(ctx) })
	wg.Go(func() { d.table.Run(ctx) })
	wg.Go(func() { d.persist.Run(ctx) })
	wg.Go(func() { d.runChecks(ctx) })
	wg.Go(func() { d.runPassive(ctx) })
	wg.Go(func() {
		t := time.NewTicker(schedTickInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				d.tickSchedulers()
			}
		}
	})
	wg.Go(func() { d.reattachLoop(ctx) })
	var err error
	select {
	case <-parent.Done():
	case err = <-d.failed:
		cancel()
	}
	// From here on the devices and the stack go away: a runtime change or
	// reload that arrives now is refused (change checks stopped) instead of
	// publishing a table nothing will serve.
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	wg.Wait()
	d.waitEdges() // health edges still queued are refused (stopped)
	d.st.Close()
	return err
}

// Close releases the devices of a Director that was never Run.
func (d *Director) Close() { d.st.Close() }

// NoteReload records the outcome of a reload attempt (nil: it applied), for
// Status: a refused reload leaves the running configuration stale, which an
// operator must be able to see, not only in the log.
func (d *Director) NoteReload(err error) {
	d.obs.reloads.note(err)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reloadErr, d.restartNeeded = "", ""
	switch {
	case err == nil:
	case errors.Is(err, ErrRestartNeeded):
		// Applied: not stale, but the interfaces wait for a restart.
		d.restartNeeded = err.Error()
	default:
		d.reloadErr = err.Error()
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
		if err := d.reload(cfg); err != nil {
			return err
		}
		return ErrRestartNeeded
	}
	return d.reload(cfg)
}

func (d *Director) reload(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.change(cfg, d.health, "reload")
}

func sameInterface(a, b config.Interface) bool {
	return a.Name == b.Name && a.Type == b.Type && a.MTU == b.MTU && a.MAC == b.MAC &&
		a.Queues == b.Queues && a.Offload == b.Offload && a.SendThread == b.SendThread && a.Create == b.Create &&
		a.Persist == b.Persist && a.Bridge == b.Bridge && a.OnLoss == b.OnLoss &&
		slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.Routes, b.Routes)
}

// sourceFrom returns forward.Config.Source for an interface: the
// interface's address toward a real server, by config.Interface.Source.
func sourceFrom(ic config.Interface) func(netip.Addr) netip.Addr {
	return func(dst netip.Addr) netip.Addr {
		src, _ := ic.Source(dst)
		return src
	}
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
