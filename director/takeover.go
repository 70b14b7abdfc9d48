package director

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
	"github.com/lvsd/lvsd/takeover"
)

// A graceful restart (lvsd run -takeover, package takeover) moves a running
// director's devices and state into a new process. The giver hands over
// duplicates of its devices' descriptors (HandoffDevices), stops reading
// (StopForHandoff, which returns the state), and exits, or takes its
// devices back if the taker fails (ResumeAfterHandoff). The taker adopts
// the descriptors in New (Options.Takeover), with its links held, restores
// the state (RestoreHandoff) and starts reading (Release).
//
// The state is, big-endian:
//
//	"LVHO" | version u16 (1) | length u32 | connection table (conntrack's snapshot)
//	       | length u32 | extras (JSON: handoffExtras)

const (
	handoffMagic   = "LVHO"
	handoffVersion = 1
	// maxExtras bounds the extras: a neighbour for each real server and a
	// template for each of persist.DefaultMax clients, at about 150 bytes
	// of JSON each.
	maxExtras = 256 << 20 // as takeover.MaxTable allows
)

// ErrHandoff is wrapped by RestoreHandoff's errors about the state: it is
// not what this version of lvsd hands over.
var ErrHandoff = errors.New("bad handoff state")

// handoffExtras is the state beside the connection table.
type handoffExtras struct {
	// Neighbors are the MACs the fast path knew for real servers (and
	// their gateways), so that forwarding goes on before the new netstack
	// resolves them.
	Neighbors []handoffNeighbor `json:"neighbors,omitempty"`
	// Templates are the persistence templates.
	Templates []handoffTemplate `json:"templates,omitempty"`
}

type handoffNeighbor struct {
	Addr netip.Addr `json:"addr"`
	MAC  string     `json:"mac"`
}

type handoffTemplate struct {
	Client   netip.Addr `json:"client"`
	VAddr    netip.Addr `json:"vaddr"`
	VPort    uint16     `json:"vport"`
	Proto    lvs.Proto  `json:"proto"`
	DestAddr netip.Addr `json:"dest_addr"`
	DestPort uint16     `json:"dest_port"`
	Method   lvs.Method `json:"method"`
	// RemainingMS is the time left on the template's timer.
	RemainingMS int64 `json:"remaining_ms"`
}

// TableSnapshot returns the connection table in conntrack's snapshot form
// (conntrack.EncodeSnapshot).
func (d *Director) TableSnapshot() ([]byte, error) {
	return conntrack.EncodeSnapshot(d.table.Snapshot(d.table.Now()))
}

// RestoreTable decodes a snapshot made by TableSnapshot (in another
// process) and restores its connections, each on the running real server
// with the same address and port in the service its client addressed; a
// connection whose service or real server is not running is left out, as
// is one whose real server changed its method. It returns how many it
// restored. Call it after New and before the interfaces carry traffic.
func (d *Director) RestoreTable(data []byte) (int, error) {
	return d.restoreTable(data, false)
}

// restoreTable is RestoreTable; with templates, each connection of a
// persistent service is linked to its client's template in the
// persistence table (restored before), which it then keeps alive as in
// the giver (IPVS's n_control).
func (d *Director) restoreTable(data []byte, templates bool) (int, error) {
	recs, err := conntrack.DecodeSnapshot(data)
	if err != nil {
		return 0, fmt.Errorf("restore connection table: %w", err)
	}
	now := d.table.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	resolve := func(in *lvs.Tuple, addr lvs.Addr, port uint16) (*lvs.Dest, *lvs.Stats) {
		rs := d.serviceOf(lvs.ServiceKey{Addr: in.Dst, Port: in.DPort, Proto: in.Proto})
		if rs == nil {
			return nil, nil
		}
		for _, dst := range rs.svc.Dests {
			if dst.Addr == addr && dst.Port == port {
				return dst, rs.svc.Stats
			}
		}
		return nil, nil
	}
	var control func(*lvs.Tuple, *lvs.Dest) conntrack.Controller
	if templates {
		control = func(in *lvs.Tuple, dst *lvs.Dest) conntrack.Controller {
			rs := d.serviceOf(lvs.ServiceKey{Addr: in.Dst, Port: in.DPort, Proto: in.Proto})
			if rs == nil || rs.svc.Persist == nil {
				return nil
			}
			k := rs.svc.Persist.Key(in)
			tp := rs.svc.Persist.Table.Get(&k, now)
			if tp == nil {
				return nil
			}
			if tp.Dest != dst {
				tp.Release()
				return nil
			}
			return tp
		}
	}
	return d.table.RestoreControlled(recs, resolve, control, now), nil
}

// serviceOf returns the running service of k, or of k's address and
// protocol on every port, as the packet path finds it; nil if none.
//
// Preconditions: d.mu is held.
func (d *Director) serviceOf(k lvs.ServiceKey) *runService {
	if rs := d.services[k]; rs != nil {
		return rs
	}
	k.Port = 0
	return d.services[k]
}

// HandoffDevices returns, for takeover.Give, duplicates of the descriptors
// of every interface's device: one per queue of a TAP or TUN, three per
// queue of a packet interface (device.AFPacket.Dup). The caller owns the
// files. The director goes on reading its own descriptors.
func (d *Director) HandoffDevices() ([]takeover.Device, error) {
	var out []takeover.Device
	fail := func(err error) ([]takeover.Device, error) {
		closeHanded(out)
		return nil, err
	}
	for _, ic := range d.running {
		ifc := d.ifaces[ic.Name]
		if ifc.link.Lost() {
			return fail(fmt.Errorf("interface %q: device lost; nothing to hand over", ic.Name))
		}
		td := takeover.Device{Interface: ic.Name, Kind: handKind(ic.Type), MAC: ifc.mac}
		out = append(out, td)
		for _, dev := range ifc.link.Devices() {
			var files []*os.File
			var err error
			switch x := dev.(type) {
			case *device.Tun:
				var f *os.File
				if f, err = x.Dup(); err == nil {
					files = []*os.File{f}
				}
			case *device.AFPacket:
				files, err = x.Dup()
			default:
				err = fmt.Errorf("a %T cannot be handed over", dev)
			}
			if err != nil {
				return fail(fmt.Errorf("interface %q: %w", ic.Name, err))
			}
			out[len(out)-1].Files = append(out[len(out)-1].Files, files...)
		}
		if len(out[len(out)-1].Files) == 0 {
			return fail(fmt.Errorf("interface %q: no device to hand over", ic.Name))
		}
	}
	return out, nil
}

func closeHanded(devs []takeover.Device) {
	for _, td := range devs {
		for _, f := range td.Files {
			f.Close()
		}
	}
}

func handKind(t config.LinkType) string {
	switch t {
	case config.TUN:
		return "tun"
	case config.PACKET:
		return "packet"
	}
	return "tap"
}

// StopForHandoff stops reading every interface's device, waits until no
// frame is being forwarded (the frames read before are written out), and
// returns the state to hand over: the connection table, the neighbours'
// MACs and the persistence templates. The frames that arrive from then on
// wait in the devices' queues for the taker. The netstack still runs and
// can write; ResumeAfterHandoff puts readers back if the handoff fails.
func (d *Director) StopForHandoff() ([]byte, error) {
	for _, ic := range d.running {
		d.ifaces[ic.Name].link.StopReading()
	}
	return d.handoffState()
}

// handoffState encodes the state StopForHandoff returns.
func (d *Director) handoffState() ([]byte, error) {
	table, err := d.TableSnapshot()
	if err != nil {
		return nil, err
	}
	var ex handoffExtras
	d.mu.Lock()
	seen := make(map[lvs.Addr]bool)
	for _, dst := range d.dests {
		if dst.Neigh == nil || seen[dst.Addr] {
			continue
		}
		if m, ok := dst.Neigh.Load(); ok {
			seen[dst.Addr] = true
			ex.Neighbors = append(ex.Neighbors, handoffNeighbor{Addr: dst.Addr.Netip(), MAC: m.String()})
		}
	}
	d.mu.Unlock()
	d.persist.Range(func(in persist.Info) bool {
		ex.Templates = append(ex.Templates, handoffTemplate{
			Client: in.Client, VAddr: in.VAddr, VPort: in.VPort, Proto: in.Proto,
			DestAddr: in.Dest.Addr.Netip(), DestPort: in.Dest.Port, Method: in.Dest.Method,
			RemainingMS: in.Expires / 1e6,
		})
		return true
	})
	js, err := json.Marshal(&ex)
	if err != nil {
		return nil, fmt.Errorf("handoff state: %w", err)
	}
	if len(js) > maxExtras {
		return nil, fmt.Errorf("handoff state: %d bytes of neighbours and templates, at most %d", len(js), maxExtras)
	}
	b := make([]byte, 0, 14+len(table)+len(js))
	b = append(b, handoffMagic...)
	b = binary.BigEndian.AppendUint16(b, handoffVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(table)))
	b = append(b, table...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(js)))
	return append(b, js...), nil
}

// parseHandoff splits a handoff state into the connection table and the
// extras.
func parseHandoff(b []byte) ([]byte, *handoffExtras, error) {
	if len(b) < 10 || string(b[:4]) != handoffMagic {
		return nil, nil, fmt.Errorf("%w: no header", ErrHandoff)
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != handoffVersion {
		return nil, nil, fmt.Errorf("%w: version %d, want %d", ErrHandoff, v, handoffVersion)
	}
	n := uint64(binary.BigEndian.Uint32(b[6:]))
	rest := b[10:]
	if n+4 > uint64(len(rest)) {
		return nil, nil, fmt.Errorf("%w: table of %d bytes in %d", ErrHandoff, n, len(rest))
	}
	table, rest := rest[:n], rest[n:]
	m := uint64(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if m != uint64(len(rest)) {
		return nil, nil, fmt.Errorf("%w: extras of %d bytes, %d left", ErrHandoff, m, len(rest))
	}
	var ex handoffExtras
	if err := json.Unmarshal(rest, &ex); err != nil {
		return nil, nil, fmt.Errorf("%w: extras: %w", ErrHandoff, err)
	}
	return table, &ex, nil
}

// HandoffRestored says what RestoreHandoff restored.
type HandoffRestored struct {
	Conns, Neighbors, Templates int
}

// RestoreHandoff restores the state of a handoff (StopForHandoff, in the
// giver): the connections (as RestoreTable), the MACs of the real servers
// the fast path forwards to, into slots the new netstack has not resolved
// yet (it resolves them on, as always), and the persistence templates of
// running services and real servers, each with the time it had left.
// Call it after New and before Release.
//
// Templates are restored first; each connection of a persistent service
// is then linked to its client's template (IPVS's n_control), which it
// keeps alive as in the giver.
func (d *Director) RestoreHandoff(state []byte) (HandoffRestored, error) {
	var r HandoffRestored
	table, ex, err := parseHandoff(state)
	if err != nil {
		return r, err
	}
	macs := make(map[lvs.Addr]lvs.MAC, len(ex.Neighbors))
	for _, n := range ex.Neighbors {
		hw, err := net.ParseMAC(n.MAC)
		if err != nil || len(hw) != 6 {
			return r, fmt.Errorf("%w: neighbour %s: MAC %q", ErrHandoff, n.Addr, n.MAC)
		}
		macs[lvs.AddrFromNetip(n.Addr)] = lvs.MAC(hw)
	}
	now := d.table.Now()
	d.mu.Lock()
	seeded := make(map[*lvs.Neighbor]bool)
	for _, dst := range d.dests {
		m, ok := macs[dst.Addr]
		if !ok || dst.Neigh == nil || seeded[dst.Neigh] {
			continue
		}
		if _, known := dst.Neigh.Load(); !known {
			dst.Neigh.Store(m)
		}
		seeded[dst.Neigh] = true
		r.Neighbors++
	}
	for _, t := range ex.Templates {
		rs := d.serviceOf(lvs.ServiceKey{Addr: lvs.AddrFromNetip(t.VAddr), Port: t.VPort, Proto: t.Proto})
		if rs == nil || rs.svc.Persist == nil || t.RemainingMS <= 0 {
			continue
		}
		i := slices.IndexFunc(rs.svc.Dests, func(x *lvs.Dest) bool {
			return x.Addr == lvs.AddrFromNetip(t.DestAddr) && x.Port == t.DestPort && x.Method == t.Method
		})
		if i < 0 {
			continue
		}
		pol := rs.svc.Persist
		k := persist.Key{Client: lvs.AddrFromNetip(t.Client), VAddr: lvs.AddrFromNetip(t.VAddr), VPort: t.VPort, Proto: t.Proto}
		// Made as of the time it was last used, so that its timer runs
		// out when it would have in the giver (never later than the
		// timeout of the service now).
		left := min(t.RemainingMS*1e6, pol.Timeout)
		tp, err := pol.Table.Create(&k, rs.svc.Dests[i], pol.Timeout, now-(pol.Timeout-left))
		if err != nil {
			break // full
		}
		tp.Release() // the connections restored next acquire it again
		r.Templates++
	}
	d.mu.Unlock()
	r.Conns, err = d.restoreTable(table, true)
	return r, err
}

// Release starts reading the devices adopted from a handoff (see
// Options.Takeover): call it once the state is restored. The giver has
// stopped reading them by then.
func (d *Director) Release() {
	for _, ic := range d.running {
		d.ifaces[ic.Name].link.Release()
	}
}

// ResumeAfterHandoff puts back the devices of a handoff that failed after
// StopForHandoff: devs are the duplicates HandoffDevices returned (still
// the caller's; they are duplicated again), adopted and placed under each
// interface's link, whose readers start again. Connections the taker
// created meanwhile are not known here.
func (d *Director) ResumeAfterHandoff(devs []takeover.Device) error {
	var errs []error
	for _, td := range devs {
		ifc := d.ifaces[td.Interface]
		if ifc == nil {
			continue
		}
		qs, err := adoptDevices(td)
		if err == nil {
			err = ifc.link.Replace(qs)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("interface %q: take devices back: %w", td.Interface, err))
		}
	}
	return errors.Join(errs...)
}

// adoptDevices adopts duplicates of td's descriptors (td keeps its own)
// as device queues.
func adoptDevices(td takeover.Device) ([]device.Device, error) {
	var qs []device.Device
	fail := func(err error) ([]device.Device, error) {
		for _, q := range qs {
			q.Close()
		}
		return nil, err
	}
	dup := func(f *os.File) (int, error) {
		return unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	}
	switch td.Kind {
	case "packet":
		if len(td.Files)%3 != 0 {
			return fail(fmt.Errorf("%d descriptors for a packet device, want three a queue", len(td.Files)))
		}
		for i := 0; i < len(td.Files); i += 3 {
			var fds [3]int
			for j := range fds {
				fd, err := dup(td.Files[i+j])
				if err != nil {
					for _, o := range fds[:j] {
						unix.Close(o)
					}
					return fail(fmt.Errorf("dup: %w", err))
				}
				fds[j] = fd
			}
			q, err := device.AdoptAFPacket(fds[0], fds[1], fds[2])
			if err != nil {
				return fail(err)
			}
			qs = append(qs, q)
		}
	default:
		for _, f := range td.Files {
			fd, err := dup(f)
			if err != nil {
				return fail(fmt.Errorf("dup: %w", err))
			}
			q, err := device.AdoptTun(fd)
			if err != nil {
				return fail(err)
			}
			qs = append(qs, q)
		}
	}
	return qs, nil
}

// handedDevices returns the queues of interface ic adopted from
// Options.Takeover, with the link's MAC and virtio-net header setting, and
// ok; or ok false when the giver handed over no device for ic (a new
// interface: the caller opens it). A handed-over device must be what the
// configuration describes (its kind, offload, MAC and name): a graceful
// restart keeps devices as they are.
func (d *Director) handedDevices(ic config.Interface) ([]device.Device, [6]byte, bool, bool, error) {
	i := slices.IndexFunc(d.opts.Takeover, func(td takeover.Device) bool { return td.Interface == ic.Name })
	if i < 0 {
		return nil, [6]byte{}, false, false, nil
	}
	td := d.opts.Takeover[i]
	differs := func(what string) error {
		return fmt.Errorf("interface %q: the running lvsd's device differs from the configuration (%s); a takeover keeps devices as they are: restart without -takeover to change it", ic.Name, what)
	}
	if td.Kind != handKind(ic.Type) {
		return nil, [6]byte{}, false, false, differs(fmt.Sprintf("type %s, configured %s", td.Kind, handKind(ic.Type)))
	}
	qs, err := adoptDevices(td)
	if err != nil {
		return nil, [6]byte{}, false, false, fmt.Errorf("interface %q: adopt the running lvsd's device: %w", ic.Name, err)
	}
	fail := func(err error) ([]device.Device, [6]byte, bool, bool, error) {
		for _, q := range qs {
			q.Close()
		}
		return nil, [6]byte{}, false, false, err
	}
	mac := td.MAC
	for _, q := range qs {
		var name string
		var vnet bool
		// A Tun or an AFPacket, on Linux.
		if x, ok := q.(interface {
			Name() string
			VNetHdr() bool
		}); ok {
			name, vnet = x.Name(), x.VNetHdr()
		}
		switch {
		case name != ic.Name:
			return fail(differs(fmt.Sprintf("device %q", name)))
		case vnet != ic.Offload:
			return fail(differs(fmt.Sprintf("offload %v, configured %v", vnet, ic.Offload)))
		}
	}
	if q := max(ic.Queues, 1); q != len(qs) {
		d.log.Warn("takeover: the device keeps its queues; the configured number applies at a plain restart",
			"interface", ic.Name, "queues", len(qs), "configured", q)
	}
	switch ic.Type {
	case config.TAP:
		if mac != ic.MAC {
			return fail(differs(fmt.Sprintf("MAC %s, configured %s", lvs.MAC(mac), lvs.MAC(ic.MAC))))
		}
	case config.TUN:
		mac = [6]byte{}
	}
	return qs, mac, ic.Offload, true, nil
}
