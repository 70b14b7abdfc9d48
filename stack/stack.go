package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	tcpipstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/lvsd/lvsd/lvs"
)

// NICID names a NIC of the director's netstack.
type NICID int32

// Options configure a Stack.
type Options struct {
	// Logger receives control-plane events (neighbours, addresses).
	Logger *slog.Logger
	// ResolveInterval is how often the neighbours that the fast path needs
	// are resolved again (default 2 s while unknown or lost, 10x that once
	// known).
	ResolveInterval time.Duration
	// NeighborFailAfter is how long a neighbour the netstack reports
	// unreachable keeps its last MAC in the fast path's slot while it is
	// resolved again (default 10x ResolveInterval): a probe lost in a
	// full queue must not stop the forwarding to a real server that
	// answers. Only a neighbour unreachable for that long is cleared.
	NeighborFailAfter time.Duration
	// Now is the clock of NeighborFailAfter (default time.Now); tests
	// inject one.
	Now func() time.Time
}

// Stack is the director's own host stack: a gVisor netstack that holds the
// DIPs and VIPs, answers ARP, NDP and ICMP echo, resolves neighbours, and
// opens health-check connections. It also publishes the MACs of the
// neighbours the fast path forwards to (real servers, gateways) into
// lvs.Neighbor slots, which forwarders read per packet without a lock.
type Stack struct {
	s   *tcpipstack.Stack
	log *slog.Logger
	ri  time.Duration

	mu sync.Mutex
	// neigh holds the slots the fast path reads, by NIC and next hop.
	// Guarded by mu.
	neigh map[neighKey]*lvs.Neighbor
	// nics holds the NICs created so far. Guarded by mu.
	nics    map[NICID]*nicInfo
	nextNIC NICID
	// lost holds the slots whose neighbour the netstack reported
	// unreachable (or forgot) since it was last resolved, and when that
	// began. Such a slot keeps its MAC until NeighborFailAfter. Guarded
	// by mu.
	lost map[neighKey]time.Time

	failAfter time.Duration
	now       func() time.Time
	// lostN counts neighbours reported unreachable while the fast path
	// kept their MAC; failedN those cleared after NeighborFailAfter.
	lostN, failedN atomic.Uint64

	// probes matches the answers of probes through the forwarding path.
	probes prober
	// throughS is the netstack of connections through the forwarding
	// path (through_conn.go), made once by through() unless the Stack is
	// closed (throughClosed). Both guarded by mu.
	throughOnce   sync.Once
	throughS      *throughStack
	throughClosed bool
}

type neighKey struct {
	nic  NICID
	addr netip.Addr
}

type nicInfo struct {
	name     string
	link     *Link
	ethernet bool
	prefixes []netip.Prefix
}

// New returns a netstack with IPv4, IPv6, ARP, TCP, UDP and ICMP.
func New(opts Options) *Stack {
	st := &Stack{
		log:   opts.Logger,
		ri:    opts.ResolveInterval,
		neigh: make(map[neighKey]*lvs.Neighbor),
		nics:  make(map[NICID]*nicInfo),
		lost:  make(map[neighKey]time.Time),
		now:   opts.Now,
	}
	if st.now == nil {
		st.now = time.Now
	}
	if st.log == nil {
		st.log = slog.New(slog.DiscardHandler)
	}
	if st.ri <= 0 {
		st.ri = 2 * time.Second
	}
	st.failAfter = opts.NeighborFailAfter
	if st.failAfter <= 0 {
		st.failAfter = 10 * st.ri
	}
	st.s = tcpipstack.New(tcpipstack.Options{
		NetworkProtocols:   []tcpipstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []tcpipstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		NUDDisp:            (*nudDispatcher)(st),
		HandleLocal:        true,
	})
	// Health checks open and close many connections; a short TIME_WAIT keeps
	// thousands of closed endpoints from piling up.
	tw := tcpip.TCPTimeWaitTimeoutOption(time.Second)
	st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &tw)
	// The probe ports (through.go) are lvsd's own: no netstack connection
	// may use one.
	if lo, _ := st.s.PortRange(); lo < ProbePortFirst {
		st.s.SetPortRange(lo, ProbePortFirst-1)
	}
	return st
}

// NICOptions describe one NIC.
type NICOptions struct {
	Name string
	Link *Link
	// Ethernet is true for a TAP link.
	Ethernet bool
	// Addresses are the director's own addresses (DIPs) with their prefixes;
	// each prefix becomes an on-link route.
	Addresses []netip.Prefix
	// Routes are extra routes through this NIC.
	Routes []Route
}

// Route is a static route of the netstack.
type Route struct {
	Destination netip.Prefix
	Gateway     netip.Addr // invalid: on-link
}

// AddNIC creates a NIC over link, assigns its addresses and routes, starts
// the link's readers, and announces the addresses (see announce).
func (st *Stack) AddNIC(o NICOptions) (NICID, error) {
	st.mu.Lock()
	st.nextNIC++
	id := st.nextNIC
	st.nics[id] = &nicInfo{name: o.Name, link: o.Link, ethernet: o.Ethernet, prefixes: o.Addresses}
	st.mu.Unlock()
	o.Link.probes.Store(&st.probes)
	o.Link.owner.Store(&linkOwner{st: st, nic: id})

	if err := st.s.CreateNICWithOptions(tcpip.NICID(id), o.Link, tcpipstack.NICOptions{Name: o.Name}); err != nil {
		return 0, fmt.Errorf("create nic %q: %w", o.Name, convErr(err))
	}
	for _, p := range o.Addresses {
		if err := st.addAddress(id, p); err != nil {
			return 0, err
		}
		st.s.AddRoute(tcpip.Route{Destination: subnet(p.Masked()), NIC: tcpip.NICID(id)})
	}
	for _, r := range o.Routes {
		tr := tcpip.Route{Destination: subnet(r.Destination.Masked()), NIC: tcpip.NICID(id)}
		if r.Gateway.IsValid() {
			tr.Gateway = tcpipAddr(r.Gateway)
		}
		st.s.AddRoute(tr)
	}
	if !o.Ethernet && len(o.Routes) == 0 {
		// A TUN is a point-to-point link to the kernel, which routes onward:
		// everything not on-link elsewhere goes through it.
		st.s.AddRoute(tcpip.Route{Destination: subnet(netip.MustParsePrefix("0.0.0.0/0")), NIC: tcpip.NICID(id)})
		st.s.AddRoute(tcpip.Route{Destination: subnet(netip.MustParsePrefix("::/0")), NIC: tcpip.NICID(id)})
	}
	for _, p := range o.Addresses {
		st.announceAll(id, p.Addr())
	}
	return id, nil
}

func (st *Stack) addAddress(id NICID, p netip.Prefix) error {
	proto := ipv4.ProtocolNumber
	if p.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpipAddr(p.Addr()), PrefixLen: p.Bits()},
	}
	if err := st.s.AddProtocolAddress(tcpip.NICID(id), pa, tcpipstack.AddressProperties{}); err != nil {
		return fmt.Errorf("add address %s: %w", p, convErr(err))
	}
	return nil
}

// AddVIP adds a virtual address to a NIC: the netstack answers ARP/NDP and
// ping for it, and announces it (gratuitous ARP or unsolicited neighbour
// advertisement: see announce). A VIP is a host address (/32 or /128) and
// adds no route.
func (st *Stack) AddVIP(id NICID, a netip.Addr) error {
	err := st.addAddress(id, netip.PrefixFrom(a, a.BitLen()))
	if err != nil {
		return fmt.Errorf("add vip: %w", err)
	}
	st.announceAll(id, a)
	return nil
}

// RemoveVIP removes a virtual address from a NIC.
func (st *Stack) RemoveVIP(id NICID, a netip.Addr) error {
	if err := st.s.RemoveAddress(tcpip.NICID(id), tcpipAddr(a)); err != nil {
		return fmt.Errorf("remove vip %s: %w", a, convErr(err))
	}
	return nil
}

// Neighbor returns the slot that holds the MAC of addr's next hop on NIC id
// (addr itself when on-link, else the route's gateway), and starts resolving
// it. Run keeps every slot handed out resolved. On a link without MACs it
// returns nil.
func (st *Stack) Neighbor(id NICID, addr netip.Addr) *lvs.Neighbor {
	st.mu.Lock()
	nic := st.nics[id]
	if nic == nil || !nic.ethernet {
		st.mu.Unlock()
		return nil
	}
	hop := st.nextHop(id, addr)
	k := neighKey{id, hop}
	n := st.neigh[k]
	if n == nil {
		n = new(lvs.Neighbor)
		st.neigh[k] = n
	}
	st.mu.Unlock()
	st.resolve(k)
	return n
}

// KeepNeighbors forgets every neighbour slot not in keep: no real server
// needs it any more, so Run stops resolving it. A slot still held by a
// removed real server's connections keeps its last MAC; the frames that
// waited for its MAC are dropped (no-neighbor), as later ones are.
func (st *Stack) KeepNeighbors(keep map[*lvs.Neighbor]bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, n := range st.neigh {
		if !keep[n] {
			delete(st.neigh, k)
			delete(st.lost, k)
			st.failHeldLocked(k.nic, n)
		}
	}
}

// nextHop returns the gateway of the route to addr, or addr when on-link.
func (st *Stack) nextHop(id NICID, addr netip.Addr) netip.Addr {
	r, err := st.s.FindRoute(tcpip.NICID(id), tcpip.Address{}, tcpipAddr(addr), protoOf(addr), false)
	if err != nil {
		return addr
	}
	defer r.Release()
	if gw := r.NextHop(); gw.Len() > 0 {
		if a, ok := netip.AddrFromSlice(gw.AsSlice()); ok {
			return a
		}
	}
	return addr
}

// resolve asks the netstack to resolve k; the NUD dispatcher publishes the
// answer into the slot.
func (st *Stack) resolve(k neighKey) {
	err := st.s.GetLinkAddress(tcpip.NICID(k.nic), tcpipAddr(k.addr), tcpip.Address{}, protoOf(k.addr), func(r tcpipstack.LinkResolutionResult) {
		if r.Err == nil && len(r.LinkAddress) == 6 {
			st.publish(k, r.LinkAddress)
		}
	})
	if err != nil {
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			st.log.Debug("neighbour resolution failed", "addr", k.addr, "err", convErr(err))
		}
	}
}

// publish stores the MAC la of neighbour k into its slot, after sending the
// frames that waited for it (neighq.go).
func (st *Stack) publish(k neighKey, la tcpip.LinkAddress) {
	if len(la) != 6 {
		return
	}
	st.mu.Lock()
	n := st.neigh[k]
	var link *Link
	if n != nil {
		delete(st.lost, k)
		if ni := st.nics[k.nic]; ni != nil {
			link = ni.link
		}
	}
	st.mu.Unlock()
	if n == nil {
		return
	}
	var m lvs.MAC
	copy(m[:], la)
	old, ok := n.Load()
	if ok && old == m {
		return // nothing waits on a slot with a MAC
	}
	sent := 0
	if link != nil {
		sent = n.Resolve(m, link.sendHeld)
	} else {
		n.Store(m)
	}
	st.log.Info("neighbour resolved", "addr", k.addr, "mac", m.String(), "held_frames_sent", sent)
}

// Run keeps the fast path's neighbours resolved until ctx ends: unknown and
// lost ones every ResolveInterval, known ones ten times less often (a
// resolution of a known neighbour refreshes its NUD state), and clears the
// slots of neighbours lost for NeighborFailAfter.
func (st *Stack) Run(ctx context.Context) {
	t := time.NewTicker(st.ri)
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, k := range st.sweep(tick) {
			st.resolve(k)
		}
	}
}

// sweep clears the slots of neighbours lost for NeighborFailAfter and
// returns the neighbours to resolve at this tick.
func (st *Stack) sweep(tick int) []neighKey {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, since := range st.lost {
		if now.Sub(since) >= st.failAfter {
			if n := st.neigh[k]; n != nil {
				n.Clear()
			}
			delete(st.lost, k)
			st.failedN.Add(1)
			st.log.Warn("neighbour failed", "addr", k.addr, "unreachable_for", now.Sub(since).String())
		}
	}
	var todo []neighKey
	mono := monoNow()
	for k, n := range st.neigh {
		st.expireHeldLocked(k.nic, n, mono)
		_, lost := st.lost[k]
		if _, ok := n.Load(); !ok || lost || tick%10 == 0 {
			todo = append(todo, k)
		}
	}
	return todo
}

// lose notes that the netstack reported the neighbour k unreachable or
// forgot it. The slot keeps its MAC: the kernel's neighbours in STALE,
// DELAY and PROBE forward too while they are confirmed, and a probe lost
// in a full queue (a flood) says nothing about the real server. Run
// resolves it again every ResolveInterval and clears it only after
// NeighborFailAfter.
func (st *Stack) lose(k neighKey) {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := st.neigh[k]
	if n == nil {
		return
	}
	if _, ok := n.Load(); !ok {
		// Nothing to keep: the frames that waited for this resolution
		// are dropped, as the kernel's neigh_invalidate does, and
		// resolution goes on as for any unknown one.
		st.failHeldLocked(k.nic, n)
		return
	}
	if _, ok := st.lost[k]; !ok {
		st.lost[k] = st.now()
		st.lostN.Add(1)
		st.log.Info("neighbour unreachable, keeping its last MAC", "addr", k.addr)
	}
}

// NeighborCounts are the fast path's neighbour events since New.
type NeighborCounts struct {
	// Lost counts neighbours reported unreachable whose last MAC the fast
	// path kept; Failed those cleared after NeighborFailAfter; Unconfirmed
	// is how many are lost now.
	Lost, Failed uint64
	Unconfirmed  int
}

// NeighborCounts returns the neighbour counters.
func (st *Stack) NeighborCounts() NeighborCounts {
	st.mu.Lock()
	defer st.mu.Unlock()
	return NeighborCounts{Lost: st.lostN.Load(), Failed: st.failedN.Load(), Unconfirmed: len(st.lost)}
}

// nudDispatcher receives the netstack's neighbour events and keeps the
// fast path's slots current.
type nudDispatcher Stack

func (d *nudDispatcher) OnNeighborAdded(id tcpip.NICID, e tcpipstack.NeighborEntry) {
	(*Stack)(d).onNeighbor(id, e)
}

func (d *nudDispatcher) OnNeighborChanged(id tcpip.NICID, e tcpipstack.NeighborEntry) {
	(*Stack)(d).onNeighbor(id, e)
}

func (d *nudDispatcher) OnNeighborRemoved(id tcpip.NICID, e tcpipstack.NeighborEntry) {
	st := (*Stack)(d)
	a, ok := netip.AddrFromSlice(e.Addr.AsSlice())
	if !ok {
		return
	}
	st.lose(neighKey{NICID(id), a})
}

func (st *Stack) onNeighbor(id tcpip.NICID, e tcpipstack.NeighborEntry) {
	a, ok := netip.AddrFromSlice(e.Addr.AsSlice())
	if !ok {
		return
	}
	k := neighKey{NICID(id), a}
	switch e.State {
	case tcpipstack.Reachable, tcpipstack.Stale, tcpipstack.Delay, tcpipstack.Probe, tcpipstack.Static:
		st.publish(k, e.LinkAddr)
	case tcpipstack.Unreachable:
		st.lose(k)
	}
}

// DialTCP opens a TCP connection from the netstack (source: the director's
// address on the route). Health checks use DialTCPReset, which closes with
// a RST.
func (st *Stack) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	fa := tcpip.FullAddress{Addr: tcpipAddr(dst.Addr()), Port: dst.Port()}
	c, err := gonet.DialContextTCP(ctx, st.s, fa, protoOf(dst.Addr()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", dst, err)
	}
	return c, nil
}

// Close stops the links and the netstack and waits for their goroutines.
func (st *Stack) Close() {
	st.mu.Lock()
	links := make([]*Link, 0, len(st.nics))
	for _, n := range st.nics {
		links = append(links, n.link)
	}
	st.mu.Unlock()
	for _, l := range links {
		l.Close()
	}
	// The readers first: gVisor's Wait holds the netstack's lock while it
	// waits for each link, and a reader still delivering a frame read
	// before Close needs that lock.
	for _, l := range links {
		l.Wait()
	}
	st.s.Close()
	st.s.Wait()
	st.mu.Lock()
	ts := st.throughS
	st.throughS, st.throughClosed = nil, true
	st.mu.Unlock()
	if ts != nil {
		ts.close()
	}
}

func protoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Unmap().Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

func tcpipAddr(a netip.Addr) tcpip.Address {
	a = a.Unmap()
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

func subnet(p netip.Prefix) tcpip.Subnet {
	return tcpip.AddressWithPrefix{Address: tcpipAddr(p.Addr()), PrefixLen: p.Bits()}.Subnet()
}
