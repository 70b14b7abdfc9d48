package lab

import (
	"net/netip"
	"strconv"
)

// Names and addresses of AddRoutedReal.
const (
	RouterName     = "rtr"
	routerLink     = "lvtrtr" // the router's port on the director's bridge
	routerFarLink  = "lvtfar" // the router's link to the routed real server
	routerFarAddr  = "198.18.4.1"
	routerNearAddr = "198.18.2.254"
)

// AddRoutedReal adds a real server behind a router, for path-MTU tests,
// to a TAP lab (NATLab):
//
//	director's bridge lvtbr0
//	     |  lvtrtr
//	  veth pair
//	     |  lvteth0 198.18.2.254/24, proxy ARP           router lvt-P-N-rtr
//	     |  lvtfar  198.18.4.1/24, MTU farMTU             default via 198.18.2.1
//	  veth pair
//	     |  lvteth0 198.18.2.<10+n>/32, MTU 1500         real server lvt-P-N-<name>
//	                default via 198.18.4.1 (on-link)
//
// The real server keeps an address of the real servers' subnet, so lvsd
// reaches it as any other (the router answers ARP for it); but packets to
// it cross the router's far link, whose MTU is lower than every interface
// the endpoints have: a packet too big for it makes the router send ICMP
// fragmentation-needed to the packet's source (a client, through lvsd: the
// router's default route is lvsd's DIP). The real server's own MTU stays at
// 1500 so that it advertises a full MSS.
//
// The real server is not added to tp.Reals; use WithReals to configure it.
// n is len(tp.Reals)+1. It returns the real server.
func (tp *Topology) AddRoutedReal(name string, farMTU int) Real {
	l := tp.Lab
	l.t.Helper()
	if tp.Type == "tun" {
		l.t.Fatalf("lab: AddRoutedReal needs a TAP or packet lab")
	}
	r := Real{Name: name, Addr: netip.AddrFrom4([4]byte{198, 18, 2, byte(10 + len(tp.Reals) + 1)})}

	rtr := l.Namespace(RouterName)
	l.noIPv6(rtr)
	l.Sysctl(rtr, "net.ipv4.ip_forward", "1")
	l.Sysctl(rtr, "net.ipv4.conf.all.rp_filter", "0")
	l.Sysctl(rtr, "net.ipv4.conf.default.rp_filter", "0")
	l.Sysctl(rtr, "net.ipv4.conf.all.send_redirects", "0")
	l.Sysctl(rtr, "net.ipv4.conf.default.send_redirects", "0")
	l.Veth(tp.Director, routerLink, rtr, GuestLink)
	l.Enslave(tp.Director, routerLink, BridgeName)
	l.Addr(rtr, GuestLink, routerNearAddr+"/24")
	l.Sysctl(rtr, "net.ipv4.conf."+GuestLink+".proxy_arp", "1")
	l.Sysctl(rtr, "net.ipv4.neigh."+GuestLink+".proxy_delay", "0")
	l.Route(rtr, "default", "via", RealGateway.String())

	r.NS = l.Namespace(name)
	l.noIPv6(r.NS)
	l.Veth(rtr, routerFarLink, r.NS, GuestLink)
	l.IP(rtr, "link", "set", routerFarLink, "mtu", strconv.Itoa(farMTU))
	l.Addr(rtr, routerFarLink, routerFarAddr+"/24")
	l.Route(rtr, r.Addr.String()+"/32", "dev", routerFarLink)
	l.Addr(r.NS, GuestLink, r.Addr.String()+"/32")
	l.Route(r.NS, routerFarAddr, "dev", GuestLink)
	l.Route(r.NS, "default", "via", routerFarAddr)

	l.WaitLinkUp(rtr, GuestLink)
	l.WaitLinkUp(rtr, routerFarLink)
	l.WaitLinkUp(r.NS, GuestLink)
	l.WaitBridgePort(tp.Director, routerLink)
	return r
}
