//go:build linux

package main

import (
	"fmt"
	"net/netip"

	"github.com/lvsd/lvsd/internal/lab"
)

// The routed topology: lvsd's TAP sits behind a host's own IP routing, the
// way a container host or a router-on-a-stick places it, beside the
// one-armed L2 lab. It reuses the lab's real servers and adds two
// namespaces:
//
//	client lvt-P-N-rcli            router lvt-P-N-rtd (ip_forward=1)               director's bridge lvtbr0
//	lvteth0 198.18.5.10/24  ---  lvtrcli 198.18.5.1/24                                   |
//	default via 198.18.5.1       lvtrrs  198.18.2.1/24 (while a routed  --- veth ---  lvtrbr (port)
//	                                     contestant runs)                                 |
//	                             lvttap1 198.18.6.1/24, proxy ARP                  rs1 rs2 rs3
//	                               lvsd's netstack 198.18.6.2/24 + VIP,            (default via 198.18.2.1)
//	                               one on-link route 0.0.0.0/0
//
// lvsd-nat-routed: the router's kernel routes the VIP to lvsd through the
// TAP; lvsd's rewritten packets leave by the same TAP and the router
// forwards them to the real servers (it answers lvsd's ARP for every
// address by proxy ARP, as for a default gateway); the real servers'
// replies reach the router (their default gateway), and a policy rule sends
// what arrives from the real servers' link back into the TAP, so that lvsd
// un-NATs it; the router forwards lvsd's answer to the client. Every packet
// crosses the router's kernel twice and lvsd once.
//
// lvsd-nat-pkt-routed: the same, with lvsd attached by AF_PACKET to one
// end of a veth pair inside the router namespace instead of the TAP: the
// router's end lvtrpkr holds 198.18.7.1/24 (proxy ARP), lvsd's end lvtrpkt
// holds no address, has ARP off and IPv4 forwarding off (a frame the
// router's kernel also receives there, beside lvsd's socket, is dropped
// without an ICMP error instead of being routed back), and lvsd's netstack
// holds 198.18.7.2/24 on it. The VIP and the policy rule point there.
//
// nft-routed: the same router's kernel is the balancer (DNAT in its
// prerouting hook, conntrack un-NATs the replies). That is where the kernel
// contestant naturally sits in this placement: the host that routes the
// traffic is the one whose netfilter would hold the rules (Docker's and
// kube-proxy's DNAT live there). The client, the real servers, their routes
// and the router's forwarding are the same for both; only the TAP hop and
// lvsd are missing from nft's path, which is the cost the comparison
// measures.
const (
	routedTAP       = "lvttap1" // in the router namespace
	routedCliLink   = "lvtrcli" // the router's end of the client's veth
	routedRSLink    = "lvtrrs"  // the router's end of its veth to the bridge
	routedBridgeEnd = "lvtrbr"  // that veth's other end, a port of lvtbr0
	routedMAC       = "02:00:5e:10:00:03"
	routedTable     = "101" // the router's policy-routing table toward lvsd

	routedPktLink   = "lvtrpkt" // lvsd's end of the router's packet veth (AF_PACKET)
	routedPktRouter = "lvtrpkr" // the router's end
	routedPktMAC    = "02:00:5e:10:00:05"
)

var (
	routedClientIP = netip.MustParseAddr("198.18.5.10")
	routedRouterIP = netip.MustParseAddr("198.18.5.1")
	routedTAPAddr  = netip.MustParseAddr("198.18.6.1") // the router's, on the TAP
	routedLvsdAddr = netip.MustParseAddr("198.18.6.2") // lvsd's netstack's, on the TAP

	routedPktRouterAddr = netip.MustParseAddr("198.18.7.1") // the router's, on its packet veth end
	routedPktLvsdAddr   = netip.MustParseAddr("198.18.7.2") // lvsd's netstack's, on lvtrpkt
)

// buildRouted adds the routed topology to the lab and returns the topology
// lvsd-nat-routed starts lvsd on: the router namespace as its director, the
// routed client, the lab's real servers. The real servers' gateway address
// is added to the router only while a routed contestant runs (routedUp):
// the one-armed lvsd holds it otherwise.
func (b *bench) buildRouted() *lab.Topology {
	l, tp := b.lab, b.tp
	rtd := l.Namespace("rtd")
	cli := l.Namespace("rcli")
	for _, ns := range []lab.NS{rtd, cli} {
		l.Sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
		l.Sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
	}
	// Defaults first, so that every link created below inherits them.
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.default.rp_filter", "0"},
		{"net.ipv4.conf.all.send_redirects", "0"}, {"net.ipv4.conf.default.send_redirects", "0"},
	} {
		l.Sysctl(rtd, kv[0], kv[1])
	}
	l.Sysctl(cli, "net.ipv4.ip_local_port_range", "1024 65000")
	l.Sysctl(cli, "net.ipv4.tcp_tw_reuse", "1")

	l.Veth(rtd, routedCliLink, cli, lab.GuestLink)
	l.Addr(rtd, routedCliLink, routedRouterIP.String()+"/24")
	l.Addr(cli, lab.GuestLink, routedClientIP.String()+"/24")
	l.Route(cli, "default", "via", routedRouterIP.String())

	l.Veth(rtd, routedRSLink, tp.Director, routedBridgeEnd)
	l.Enslave(tp.Director, routedBridgeEnd, lab.BridgeName)

	l.TunTap(rtd, routedTAP, "tap", 0, b.f.queues > 1)
	l.Addr(rtd, routedTAP, routedTAPAddr.String()+"/24")
	l.Sysctl(rtd, "net.ipv4.conf."+routedTAP+".proxy_arp", "1")
	l.Sysctl(rtd, "net.ipv4.neigh."+routedTAP+".proxy_delay", "0")

	// The packet veth of lvsd-nat-pkt-routed (see the comment at the top).
	l.Veth(rtd, routedPktLink, rtd, routedPktRouter)
	l.IP(rtd, "link", "set", routedPktLink, "address", routedPktMAC)
	l.IP(rtd, "link", "set", routedPktLink, "arp", "off")
	l.Sysctl(rtd, "net.ipv4.conf."+routedPktLink+".arp_ignore", "8")
	l.Sysctl(rtd, "net.ipv4.conf."+routedPktLink+".forwarding", "0")
	l.Addr(rtd, routedPktRouter, routedPktRouterAddr.String()+"/24")
	l.Sysctl(rtd, "net.ipv4.conf."+routedPktRouter+".proxy_arp", "1")
	l.Sysctl(rtd, "net.ipv4.neigh."+routedPktRouter+".proxy_delay", "0")

	l.WaitLinkUp(cli, lab.GuestLink)
	l.WaitLinkUp(rtd, routedCliLink)
	l.WaitLinkUp(rtd, routedRSLink)
	l.WaitLinkUp(rtd, routedPktLink)
	l.WaitLinkUp(rtd, routedPktRouter)
	l.WaitBridgePort(tp.Director, routedBridgeEnd)

	return &lab.Topology{
		Lab: l, Type: "tap", Director: rtd, Client: cli, Reals: tp.Reals,
		Device: routedTAP, MAC: routedMAC,
		Addresses: []string{routedLvsdAddr.String() + "/24"},
		// On-link: the router answers lvsd's ARP for the client and the
		// real servers (proxy ARP), so one route reaches both.
		Routes:  []string{"0.0.0.0/0"},
		Options: lab.Options{Reals: len(tp.Reals), Queues: b.f.queues, Sender: b.f.sender, MAC: routedMAC},
	}
}

// routedPacket is the routed topology with lvsd on the router's packet veth
// (lvsd-nat-pkt-routed): a copy of routed with another device, type, MAC
// and address.
func routedPacket(routed *lab.Topology) *lab.Topology {
	c := *routed
	c.Type, c.Device, c.MAC = "packet", routedPktLink, routedPktMAC
	c.Addresses = []string{routedPktLvsdAddr.String() + "/24"}
	c.Options.Packet, c.Options.MAC = true, routedPktMAC
	return &c
}

// routedLvsdHop returns the router's next hop toward lvsd's netstack on
// tp: the TAP, or the router's end of the packet veth.
func routedLvsdHop(tp *lab.Topology) (dev string, via netip.Addr) {
	if tp.Device == routedPktLink {
		return routedPktRouter, routedPktLvsdAddr
	}
	return routedTAP, routedLvsdAddr
}

// routedUp gives the router the real servers' gateway address and, for
// lvsd (toLvsd non-nil: its topology), the routes to lvsd's netstack on
// toLvsd's device. undo removes all of it.
func (b *bench) routedUp(toLvsd *lab.Topology) (undo func(), err error) {
	rt := b.routed.Director
	gw := lab.RealGateway.String() + "/24"
	vip := lab.VIP.String() + "/32"
	undo = func() {
		b.ip(rt, "rule", "del", "iif", routedRSLink, "lookup", routedTable)
		b.ip(rt, "route", "flush", "table", routedTable)
		b.ip(rt, "route", "del", vip)
		b.ip(rt, "addr", "del", gw, "dev", routedRSLink)
		b.flushNeighbours()
	}
	b.flushNeighbours()
	if err := b.ip(rt, "addr", "add", gw, "dev", routedRSLink); err != nil {
		undo()
		return nil, err
	}
	if toLvsd != nil {
		dev, via := routedLvsdHop(toLvsd)
		for _, args := range [][]string{
			{"route", "replace", vip, "via", via.String(), "dev", dev},
			{"route", "replace", "default", "via", via.String(), "dev", dev, "table", routedTable},
			{"rule", "add", "iif", routedRSLink, "lookup", routedTable},
		} {
			if err := b.ip(rt, args...); err != nil {
				undo()
				return nil, err
			}
		}
	}
	return undo, nil
}

// startLvsdRouted starts lvsd NAT on tp, the router's TAP (b.routed) or
// its packet veth (b.routedPkt).
func (b *bench) startLvsdRouted(tp *lab.Topology) (*running, error) {
	undo, err := b.routedUp(tp)
	if err != nil {
		return nil, err
	}
	return b.startLvsdAfter(tp, "nat", undo)
}

// startNftRouted makes the router's kernel the balancer (see the comment at
// the top of this file for why there).
func (b *bench) startNftRouted() (*running, error) {
	undo, err := b.routedUp(nil)
	if err != nil {
		return nil, err
	}
	rt := b.routed.Director
	if out, err := b.exec(rt, cmdTimeout, "nft", "-f", b.lab.WriteFile("nat-routed.nft", b.nftRules())); err != nil {
		undo()
		return nil, fmt.Errorf("nft -f: %w: %s", err, out)
	}
	stop := func() {
		b.exec(rt, cmdTimeout, "nft", "delete", "table", "ip", natTable)
		b.exec(rt, cmdTimeout, "sh", "-c", "echo f > /proc/net/nf_conntrack 2>/dev/null; true")
		undo()
	}
	if err := b.waitTCP(b.routed.Client, netip.AddrPortFrom(lab.VIP, httpPort)); err != nil {
		stop()
		return nil, err
	}
	return &running{target: lab.VIP, kernel: true, tp: b.routed, stop: stop}, nil
}
