package lab

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Addresses of the reference labs (see the package comment's diagrams).
var (
	ClientIP  = netip.MustParseAddr("198.18.1.10")
	ClientIP6 = netip.MustParseAddr("2001:2:0:1::10")
	// VIP is the virtual address lvsd's netstack holds.
	VIP  = netip.MustParseAddr("198.18.1.100")
	VIP6 = netip.MustParseAddr("2001:2:0:1::100")
	// DIP is lvsd's address on the client side of a TAP lab; RealGateway is
	// the real servers' default gateway (lvsd's in a TAP lab, the director
	// kernel's in a TUN lab).
	DIP          = netip.MustParseAddr("198.18.1.1")
	DIP6         = netip.MustParseAddr("2001:2:0:1::1")
	RealGateway  = netip.MustParseAddr("198.18.2.1")
	RealGateway6 = netip.MustParseAddr("2001:2:0:2::1")
	// TUNAddr is lvsd's netstack address on the TUN link of a TUN lab.
	TUNAddr = netip.MustParseAddr("198.18.3.1")
)

// DefaultMAC is lvsd's netstack MAC in a TAP lab unless Options.MAC says
// otherwise: locally administered, unicast.
const DefaultMAC = "02:00:5e:10:00:01"

// Link names of the reference labs.
const (
	BridgeName = "lvtbr0"   // in the director namespace
	TAPName    = "lvttap0"  // in the director namespace (TAP lab)
	TUNName    = "lvttun0"  // in the director namespace (TUN lab)
	PacketName = "lvtpkt0"  // in the director namespace (packet lab): lvsd's veth end
	packetPeer = "lvtpktbr" // its peer, a port of the bridge
	ClientLink = "lvtcli"   // director's end of the client's veth
	GuestLink  = "lvteth0"  // the client's and each real server's veth end
	tunTable   = "100"      // policy-routing table of the TUN lab
)

// Options shape a reference lab. The zero value is the reference: three
// real servers, a root-owned single-queue device, IPv4 only.
type Options struct {
	// Reals is the number of real servers, 1 to 9; 0 means 3. Real server i
	// (from 1) is named rs<i> and has address 198.18.2.<10+i>.
	Reals int
	// Owner is the uid owning the TAP/TUN (`ip tuntap add ... user UID`):
	// lvsd must run as root or as that uid (LvsdOptions.UID).
	Owner int
	// Queues is lvsd's number of device queues (the config's `queues`);
	// more than one creates the device multi_queue, which must match how
	// lvsd opens it. 0 leaves the key out (lvsd's default, 1).
	Queues int
	// Sender is the config's `sender` ("reader" or "thread"); "" leaves
	// the key out (lvsd's default).
	Sender string
	// IPv6 adds the 2001:2::/48 addresses: client 2001:2:0:1::10/64, real
	// servers 2001:2:0:2::<10+i>/64 via 2001:2:0:2::1, lvsd's DIPs
	// 2001:2:0:1::1/64 and 2001:2:0:2::1/64. TAP lab only.
	IPv6 bool
	// MAC is lvsd's netstack MAC on the TAP; "" means DefaultMAC.
	MAC string
	// Packet makes NATLab attach lvsd with AF_PACKET (type = "packet") to a
	// veth, PacketName, whose peer is a bridge port, instead of a TAP. The
	// veth has MAC as its address and Queues sockets share it.
	Packet bool
}

// Real is one real-server namespace.
type Real struct {
	Name  string     // rs1, rs2, ...: also the name its lab server answers with
	NS    NS         // its namespace
	Addr  netip.Addr // 198.18.2.<10+i>
	Addr6 netip.Addr // 2001:2:0:2::<10+i>; valid iff Options.IPv6
}

// Topology is a built reference lab.
type Topology struct {
	Lab *Lab
	// Type is the device type: "tap", "tun" or "packet".
	Type string
	// Director holds the bridge and the device lvsd attaches to.
	Director NS
	// Client is the client's namespace (address ClientIP).
	Client NS
	// Reals are the real servers, rs1 first.
	Reals []Real
	// Device is the TAP or TUN lvsd attaches to (create = false).
	Device string
	// MAC is lvsd's netstack MAC on the TAP or the packet veth ("" for a
	// TUN).
	MAC string
	// Addresses are the prefixes lvsd's netstack holds on Device (the VIPs
	// come from the virtual services).
	Addresses []string
	// Routes are the netstack's on-link routes through Device.
	Routes []string
	// Options are the options the lab was built with, defaults applied.
	Options Options
	// Control is the control socket of the lvsd started last (StartLvsd).
	Control string
	// Globals are lines written at the top of the lvsd configuration,
	// before [[interface]]: top-level tables such as [timeouts].
	Globals []string
}

func (o *Options) defaults(t T) {
	t.Helper()
	if o.Reals == 0 {
		o.Reals = 3
	}
	if o.Reals < 1 || o.Reals > 9 {
		t.Fatalf("lab: Options.Reals = %d, want 1 to 9", o.Reals)
	}
	if o.MAC == "" {
		o.MAC = DefaultMAC
	}
}

// NATLab builds the reference NAT lab on a TAP (L2): a one-armed director
// whose bridge joins the client, the real servers and lvsd's TAP. The kernel
// of the director namespace holds no address; lvsd's netstack holds the DIPs
// and the VIP. See the package comment for the diagram.
func (l *Lab) NATLab(o Options) *Topology {
	l.t.Helper()
	o.defaults(l.t)
	tp := &Topology{Lab: l, Type: "tap", Device: TAPName, MAC: o.MAC, Options: o,
		Addresses: []string{DIP.String() + "/24", RealGateway.String() + "/24"}}
	if o.IPv6 {
		tp.Addresses = append(tp.Addresses, "2001:2:0:1::1/64", RealGateway6.String()+"/64")
	}

	tp.Director = l.Namespace("dir")
	// No address on the director's kernel side, not even IPv6 link-local
	// ones (which would also send MLD and router solicitations to lvsd).
	l.noIPv6(tp.Director)
	l.Bridge(tp.Director, BridgeName)
	if o.Packet {
		tp.Type, tp.Device = "packet", PacketName
		l.packetLink(tp.Director, o.MAC)
	} else {
		l.TunTap(tp.Director, TAPName, "tap", o.Owner, o.Queues > 1)
		l.Enslave(tp.Director, TAPName, BridgeName)
	}

	tp.Client = l.guest("cli", ClientLink, tp.Director, o.IPv6)
	l.Enslave(tp.Director, ClientLink, BridgeName)
	l.Addr(tp.Client, GuestLink, ClientIP.String()+"/24")
	l.Route(tp.Client, "default", "via", DIP.String())
	if o.IPv6 {
		l.Addr(tp.Client, GuestLink, ClientIP6.String()+"/64")
		l.Route(tp.Client, "default", "via", "2001:2:0:1::1")
	}
	tp.addReals(o, true)
	tp.waitUp()
	return tp
}

// TUNLab builds the NAT lab on a TUN (L3): the director namespace's kernel
// routes between the client's veth and the real servers' bridge and steers
// VIP traffic and the real servers' replies through lvsd's TUN. IPv4 only.
// See the package comment for the diagram and the routing.
func (l *Lab) TUNLab(o Options) *Topology {
	l.t.Helper()
	o.defaults(l.t)
	if o.IPv6 {
		l.t.Fatalf("lab: the TUN lab is IPv4 only")
	}
	o.MAC = "" // no link layer
	tp := &Topology{Lab: l, Type: "tun", Device: TUNName, Options: o,
		Addresses: []string{TUNAddr.String() + "/24"},
		Routes:    []string{"0.0.0.0/0"}}

	d := l.Namespace("dir")
	tp.Director = d
	l.noIPv6(d)
	// Defaults first, so that every link created below inherits them.
	l.Sysctl(d, "net.ipv4.ip_forward", "1")
	l.Sysctl(d, "net.ipv4.conf.all.rp_filter", "0")
	l.Sysctl(d, "net.ipv4.conf.default.rp_filter", "0")
	l.Sysctl(d, "net.ipv4.conf.all.send_redirects", "0")
	l.Sysctl(d, "net.ipv4.conf.default.send_redirects", "0")

	l.Bridge(d, BridgeName)
	l.Addr(d, BridgeName, RealGateway.String()+"/24")

	tp.Client = l.guest("cli", ClientLink, d, false)
	l.Addr(d, ClientLink, DIP.String()+"/24")
	// The client sees the VIP on-link, as in the TAP lab: the director's
	// kernel answers its ARP for the VIP at once, because the VIP's route
	// leaves by another device (lvttun0).
	l.Sysctl(d, "net.ipv4.conf."+ClientLink+".proxy_arp", "1")
	l.Sysctl(d, "net.ipv4.neigh."+ClientLink+".proxy_delay", "0")
	l.Addr(tp.Client, GuestLink, ClientIP.String()+"/24")
	l.Route(tp.Client, "default", "via", DIP.String())

	l.TunTap(d, TUNName, "tun", o.Owner, o.Queues > 1)
	l.Sysctl(d, "net.ipv4.conf."+TUNName+".rp_filter", "0")
	l.Route(d, VIP.String()+"/32", "dev", TUNName)
	l.Route(d, netip.PrefixFrom(TUNAddr, 24).Masked().String(), "dev", TUNName)
	l.IP(d, "rule", "add", "from", "198.18.2.0/24", "iif", BridgeName, "lookup", tunTable)
	l.Route(d, "default", "dev", TUNName, "table", tunTable)

	tp.addReals(o, false)
	tp.waitUp()
	return tp
}

// packetLink makes the veth a packet lab's lvsd attaches to, PacketName
// with address mac, and enslaves its peer to the bridge. The veth holds no
// address: with IPv6 off and no forwarding, the namespace's kernel drops
// what it receives, and lvsd's netstack answers for the DIPs and VIPs.
func (l *Lab) packetLink(dir NS, mac string) {
	l.t.Helper()
	l.Veth(dir, PacketName, dir, packetPeer)
	l.IP(dir, "link", "set", PacketName, "address", mac)
	// Nor does it answer ARP there, even when it holds addresses on other
	// links (a bench contestant that is the kernel).
	l.IP(dir, "link", "set", PacketName, "arp", "off")
	l.Sysctl(dir, "net.ipv4.conf."+PacketName+".arp_ignore", "8")
	l.Enslave(dir, packetPeer, BridgeName)
}

// WithPacketLink adds a packet link to a TAP lab and returns a copy of the
// topology whose lvsd attaches to it (type = "packet") instead of the TAP:
// the same namespaces, bridge, addresses and real servers, so that both
// ways of attaching can run in turn in one lab (one lvsd at a time). mac is
// the veth's address; it should differ from the TAP's, so that neighbours
// re-resolve when lvsd moves.
func (tp *Topology) WithPacketLink(mac string) *Topology {
	l := tp.Lab
	l.t.Helper()
	if tp.Type != "tap" {
		l.t.Fatalf("lab: WithPacketLink needs a TAP lab, not %s", tp.Type)
	}
	l.packetLink(tp.Director, mac)
	l.WaitLinkUp(tp.Director, PacketName)
	l.WaitBridgePort(tp.Director, packetPeer)
	c := *tp
	c.Type, c.Device, c.MAC = "packet", PacketName, mac
	c.Options.Packet, c.Options.MAC = true, mac
	return &c
}

// guest creates the namespace role with a veth to the director: hostLink in
// the director, GuestLink in the guest.
func (l *Lab) guest(role, hostLink string, dir NS, ipv6 bool) NS {
	l.t.Helper()
	ns := l.Namespace(role)
	if !ipv6 {
		l.noIPv6(ns)
	}
	l.Veth(dir, hostLink, ns, GuestLink)
	return ns
}

// addReals creates the real-server namespaces on the director's bridge.
func (tp *Topology) addReals(o Options, v6 bool) {
	l := tp.Lab
	l.t.Helper()
	for i := 1; i <= o.Reals; i++ {
		r := Real{Name: fmt.Sprintf("rs%d", i), Addr: netip.AddrFrom4([4]byte{198, 18, 2, byte(10 + i)})}
		r.NS = l.guest(r.Name, fmt.Sprintf("lvtrs%d", i), tp.Director, v6 && o.IPv6)
		l.Enslave(tp.Director, fmt.Sprintf("lvtrs%d", i), BridgeName)
		l.Addr(r.NS, GuestLink, r.Addr.String()+"/24")
		l.Route(r.NS, "default", "via", RealGateway.String())
		if v6 && o.IPv6 {
			r.Addr6 = netip.MustParseAddr(fmt.Sprintf("2001:2:0:2::%d", 10+i))
			l.Addr(r.NS, GuestLink, r.Addr6.String()+"/64")
			l.Route(r.NS, "default", "via", RealGateway6.String())
		}
		tp.Reals = append(tp.Reals, r)
	}
}

// waitUp waits until every veth has carrier and every bridge port (but the
// TAP, which has carrier only once lvsd attaches) forwards.
func (tp *Topology) waitUp() {
	l := tp.Lab
	l.t.Helper()
	l.WaitLinkUp(tp.Client, GuestLink)
	ports := []string{}
	switch tp.Type {
	case "tap":
		ports = append(ports, ClientLink)
	case "packet":
		l.WaitLinkUp(tp.Director, PacketName)
		ports = append(ports, ClientLink, packetPeer)
	default:
		l.WaitLinkUp(tp.Director, ClientLink)
	}
	for i, r := range tp.Reals {
		l.WaitLinkUp(r.NS, GuestLink)
		ports = append(ports, fmt.Sprintf("lvtrs%d", i+1))
	}
	for _, p := range ports {
		l.WaitBridgePort(tp.Director, p)
	}
}

// WaitBridgePort waits until bridge port dev in ns is forwarding, for at most
// 10 s.
func (l *Lab) WaitBridgePort(ns NS, dev string) {
	l.t.Helper()
	deadline := time.Now().Add(linkTimeout)
	for {
		out, err := runCmd(l.t.Context(), cmdTimeout, "", "ip", "-n", string(ns), "-d", "-o", "link", "show", "dev", dev)
		if err == nil && strings.Contains(out, "bridge_slave state forwarding") {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("lab: bridge port %s in %s not forwarding after %v: %s", dev, ns, linkTimeout, strings.TrimSpace(out))
		}
		if !sleepCtx(l.t.Context(), 20*time.Millisecond) {
			l.t.Fatalf("lab: waiting for bridge port %s in %s: %v", dev, ns, l.t.Context().Err())
		}
	}
}

// noIPv6 disables IPv6 on every link of ns, present and future.
func (l *Lab) noIPv6(ns NS) {
	l.t.Helper()
	l.Sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
	l.Sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
}
