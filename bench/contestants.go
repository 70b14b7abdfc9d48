//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// contestant is one way of getting the client's traffic to the real
// servers.
type contestant struct {
	name string
	desc string // for the report
	// start sets the contestant up for one run and returns what the
	// workload needs; its stop undoes everything start did.
	start func(b *bench) (*running, error)
	// na returns why the contestant cannot run workload w here ("" if it
	// can).
	na func(b *bench, w string) string
	// sweep is the queue count of a queue-sweep contestant (lvsd-nat-q2
	// ...), 0 for the others. Sweep contestants run only when selected
	// (-queue-sweep, or by name in -only), never by default.
	sweep int
}

// running is a contestant set up for one run.
type running struct {
	// target is the address the client sends to: the VIP, or rs1's own
	// address for the direct path.
	target netip.Addr
	// port is the HTTP port at target: 0 for httpPort.
	port uint16
	// pid is the balancer's process (lvsd, haproxy), 0 for none.
	pid int
	// kernel is true when the balancer is the director namespace's kernel.
	kernel bool
	// proc is lvsd's process, for its log and counters.
	proc *lab.Proc
	ctl  string // lvsd's control socket, "" if none
	// helpers are processes on the real servers that the contestant needs
	// (lvsd realserver), whose CPU time is reported beside the balancer's.
	helpers []*lab.Proc
	// tp is the topology lvsd runs on (nil for the others in the
	// one-armed lab, b.tp): the workloads run in its client, and lvsd's
	// device counters are read from its device.
	tp   *lab.Topology
	stop func()
}

// client is the namespace the workloads run in.
func (b *bench) client(r *running) lab.NS {
	if r.tp != nil {
		return r.tp.Client
	}
	return b.tp.Client
}

var allContestants = []contestant{
	{
		name:  "lvsd-nat",
		desc:  "lvsd, NAT (-m): the director's addresses live in lvsd's netstack on the TAP; the director namespace's kernel holds none",
		start: func(b *bench) (*running, error) { return b.startLvsd("nat") },
		na:    func(b *bench, w string) string { return b.needTools(w) },
	},
	{
		name:  "lvsd-nat-pkt",
		desc:  "lvsd, NAT (-m), attached to a veth by AF_PACKET (type = \"packet\": frames in batches of up to 32 per recvmmsg/sendmmsg) instead of the TAP; otherwise as lvsd-nat",
		start: func(b *bench) (*running, error) { return b.startLvsdOn(b.pkt, "nat") },
		na:    func(b *bench, w string) string { return b.needTools(w) },
	},
	{
		name:  "lvsd-dr",
		desc:  "lvsd, direct routing (-g): real servers hold the VIP on lo (arp_ignore=1, arp_announce=2) and answer the client directly",
		start: func(b *bench) (*running, error) { return b.startLvsdDR(b.tp) },
		na:    func(b *bench, w string) string { return b.needTools(w) },
	},
	{
		name:  "lvsd-dr-pkt",
		desc:  "lvsd-dr attached to the veth by AF_PACKET, as lvsd-nat-pkt",
		start: func(b *bench) (*running, error) { return b.startLvsdDR(b.pkt) },
		na:    func(b *bench, w string) string { return b.needTools(w) },
	},
	{
		name:  "lvsd-tun",
		desc:  "lvsd, IPIP tunnel (-i): real servers decapsulate (see below) and answer the client directly",
		start: func(b *bench) (*running, error) { return b.startLvsdTUN(b.tp) },
		na:    (*bench).naTUN,
	},
	{
		name:  "lvsd-tun-pkt",
		desc:  "lvsd-tun attached to the veth by AF_PACKET, as lvsd-nat-pkt",
		start: func(b *bench) (*running, error) { return b.startLvsdTUN(b.pkt) },
		na:    (*bench).naTUN,
	},
	{
		name:  "nft",
		desc:  "the kernel: nftables DNAT (prerouting, conntrack) in the director namespace, which holds the DIPs and the VIP on its bridge and forwards",
		start: (*bench).startNft,
		na: func(b *bench, w string) string {
			if b.nftErr != nil {
				return b.nftErr.Error()
			}
			return b.needTools(w)
		},
	},
	{
		name:  "lvsd-nat-routed",
		desc:  "lvsd, NAT (-m), on a TAP behind a router namespace's own IP forwarding (the routed topology below): the router routes the VIP into the TAP, forwards lvsd's output to the real servers and sends their replies back into the TAP by a policy rule",
		start: func(b *bench) (*running, error) { return b.startLvsdRouted(b.routed) },
		na:    func(b *bench, w string) string { return b.needTools(w) },
	},
	{
		name:  "lvsd-nat-pkt-routed",
		desc:  "lvsd-nat-routed with lvsd attached by AF_PACKET (as lvsd-nat-pkt) to a veth inside the router namespace instead of the TAP: the router routes the VIP and the real servers' replies to lvsd's netstack over that veth",
		start: func(b *bench) (*running, error) { return b.startLvsdRouted(b.routedPkt) },
		na:    func(b *bench, w string) string { return b.needTools(w) },
	},
	{
		name:  "nft-routed",
		desc:  "the kernel in the routed topology: nftables DNAT (prerouting, conntrack) in the router namespace, which forwards between the client and the real servers; the same path as lvsd-nat-routed without the TAP hop",
		start: (*bench).startNftRouted,
		na: func(b *bench, w string) string {
			if b.nftErr != nil {
				return b.nftErr.Error()
			}
			return b.needTools(w)
		},
	},
	sweepContestant("lvsd-nat", 2),
	sweepContestant("lvsd-nat", 4),
	sweepContestant("lvsd-nat-pkt", 2),
	sweepContestant("lvsd-nat-pkt", 4),
	{
		name:  "haproxy",
		desc:  "HAProxy in TCP mode (a proxy: two TCP connections per client connection), listening on the VIP in the director namespace",
		start: (*bench).startHAProxy,
		na: func(b *bench, w string) string {
			if w == "udp" {
				return "HAProxy does not balance UDP"
			}
			if why := b.missing["haproxy"]; why != "" {
				return why
			}
			return b.needTools(w)
		},
	},
	{
		name:  "direct",
		desc:  "no balancer: the client talks to rs1's own address over the bridge (on-link routes both ways); HTTP on nginx's second port, 8081",
		start: (*bench).startDirect,
		na:    func(b *bench, w string) string { return b.needTools(w) },
	},
}

// sweepQueues are the queue counts of the queue sweep beyond 1 (whose
// figures are lvsd-nat's and lvsd-nat-pkt's at -queues 1).
var sweepQueues = []int{2, 4}

// sweepBases are the contestants the queue sweep repeats, with the device
// they use for the report.
var sweepBases = []struct{ name, device string }{
	{"lvsd-nat", "TAP"},
	{"lvsd-nat-pkt", "AF_PACKET"},
}

// sweepName is the queue-sweep contestant of base at q queues.
func sweepName(base string, q int) string { return fmt.Sprintf("%s-q%d", base, q) }

// sweepContestant is base (lvsd-nat or lvsd-nat-pkt) at q queues: TAP
// queues on a multi-queue TAP of its own (lvsd opens a TAP multi-queue only
// for more than one queue, and the kernel refuses a queue whose flag differs
// from the device's, so lvsd-nat keeps the lab's single-queue TAP), or AF_PACKET sockets
// in one fanout group on the same veth. It measures TCP throughput and
// HTTP connections per second (the scaling section's queue table).
func sweepContestant(base string, q int) contestant {
	c := contestant{name: sweepName(base, q), sweep: q}
	if base == "lvsd-nat-pkt" {
		c.desc = fmt.Sprintf("lvsd-nat-pkt with `queues = %d`: %d AF_PACKET sockets in one fanout group (by flow hash), one reader thread each", q, q)
		c.start = func(b *bench) (*running, error) { return b.startLvsdOn(withQueues(b.pkt, q), "nat") }
	} else {
		c.desc = fmt.Sprintf("lvsd-nat with `queues = %d`: a multi-queue TAP (`%s`, a port of the same bridge) with %d queues, one reader thread each", q, sweepTAP, q)
		c.start = func(b *bench) (*running, error) { return b.startLvsdOn(withQueues(b.sweepTAP, q), "nat") }
	}
	c.na = func(b *bench, w string) string {
		if w == "udp" {
			return "the queue sweep measures TCP throughput and HTTP conn/s only (-queues N measures every workload at N queues)"
		}
		return b.needTools(w)
	}
	return c
}

// withQueues returns a copy of tp whose lvsd runs q queues.
func withQueues(tp *lab.Topology, q int) *lab.Topology {
	c := *tp
	c.Options.Queues = q
	return &c
}

func contestantNames() []string {
	var n []string
	for _, c := range allContestants {
		n = append(n, c.name)
	}
	return n
}

// defaultContestants are the contestants of a run without -only: all but
// the queue sweep's.
func defaultContestants() []string {
	var n []string
	for _, c := range allContestants {
		if c.sweep == 0 {
			n = append(n, c.name)
		}
	}
	return n
}

func contestantByName(name string) contestant {
	for _, c := range allContestants {
		if c.name == name {
			return c
		}
	}
	panic("unknown contestant " + name)
}

// needTools returns why workload w cannot run here, or "".
func (b *bench) needTools(w string) string {
	var need []string
	switch w {
	case "tcp1", "tcp4":
		need = []string{"iperf3"}
	case "http":
		need = []string{"wrk", "nginx"}
	case "udp":
		need = []string{"iperf", "nft", "udp-sink"}
	}
	for _, t := range need {
		if why := b.missing[t]; why != "" {
			return why
		}
	}
	return ""
}

// lvsdServices are lvsd's virtual services: HTTP round robin over the three
// real servers; iperf3 (TCP) and the UDP sink to rs1 only (weights 1, 0,
// 0: iperf3's control and data connections must meet the same server).
func lvsdServices(method string) []lab.Service {
	one := []int{1, 0, 0}
	return []lab.Service{
		{Protocol: "tcp", Port: httpPort, Scheduler: "rr", Method: method},
		{Protocol: "tcp", Port: iperfPort, Scheduler: "wrr", Method: method, Weights: one},
		{Protocol: "udp", Port: udpPort, Scheduler: "wrr", Method: method, Weights: one},
	}
}

// startLvsd runs lvsd with every service in the given method and waits
// until the VIP answers on the HTTP port and every real server's MAC is
// known to it.
func (b *bench) startLvsd(method string) (*running, error) { return b.startLvsdOn(b.tp, method) }

// packetMAC is the address of the packet contestant's veth.
const packetMAC = "02:00:5e:10:00:02"

// startLvsdOn starts lvsd on one of the lab's topologies: the TAP (b.tp) or
// the AF_PACKET veth (b.pkt).
func (b *bench) startLvsdOn(tp *lab.Topology, method string) (*running, error) {
	l := b.lab
	b.flushNeighbours()
	var args []string
	ctl := ""
	if b.lvsdCtl {
		ctl = filepath.Join(l.Dir(), fmt.Sprintf("lvsd-%d.sock", time.Now().UnixNano()))
		args = append(args, "-control", ctl)
	}
	p := tp.StartLvsd(b.bin, lab.LvsdOptions{NoWait: true, Args: args}, lvsdServices(method)...)
	r := &running{target: lab.VIP, pid: p.Pid(), proc: p, ctl: ctl, tp: tp}
	r.stop = func() {
		p.Stop()
		b.flushNeighbours()
	}
	vip := netip.AddrPortFrom(lab.VIP, httpPort)
	deadline := time.Now().Add(readyWithin)
	var err error
	for {
		if exited, werr := p.Exited(); exited {
			r.stop()
			return nil, fmt.Errorf("lvsd exited during start (%v): %s", werr, tailString(p.Output(), 2000))
		}
		if err = lab.ProbeTCP(tp.Client, vip); err == nil {
			break
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			r.stop()
			return nil, fmt.Errorf("lvsd not ready after %v: %w; log: %s", readyWithin, err, tailString(p.Output(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Warm up: round robin over the three real servers twice, so that
	// lvsd's netstack has resolved every real server's MAC before the
	// measurement (a SYN sent while it resolves is dropped and costs the
	// client a 1 s retransmission).
	for i := 0; i < 6; i++ {
		lab.ProbeTCP(tp.Client, vip)
	}
	return r, nil
}

// startLvsdDR starts lvsd in DR mode on tp, the real servers answering the
// client directly.
func (b *bench) startLvsdDR(tp *lab.Topology) (*running, error) {
	undo, err := b.directReplies()
	if err != nil {
		return nil, err
	}
	return b.startLvsdAfter(tp, "dr", undo)
}

// startLvsdAfter starts lvsd with method on tp once the caller has set
// the lab up for it; undo takes that set-up down, when lvsd fails to start
// or after it stops.
func (b *bench) startLvsdAfter(tp *lab.Topology, method string, undo func()) (*running, error) {
	r, err := b.startLvsdOn(tp, method)
	if err != nil {
		undo()
		return nil, err
	}
	stop := r.stop
	r.stop = func() { stop(); undo() }
	return r, nil
}

// startLvsdTUN starts lvsd in TUN mode on tp, with the real servers'
// decapsulators when the kernel has no ipip.
func (b *bench) startLvsdTUN(tp *lab.Topology) (*running, error) {
	undo, err := b.directReplies()
	if err != nil {
		return nil, err
	}
	var rs []*lab.Proc
	if b.tunDecap != "" && strings.HasPrefix(b.tunDecap, "`lvsd realserver`") {
		stopRS, procs, err := b.startRealservers()
		if err != nil {
			undo()
			return nil, err
		}
		rs = procs
		u := undo
		undo = func() { stopRS(); u() }
	}
	r, err := b.startLvsdAfter(tp, "tun", undo)
	if err != nil {
		return nil, err
	}
	r.helpers = rs
	return r, nil
}

func (b *bench) naTUN(w string) string {
	if b.tunErr != nil {
		return b.tunErr.Error()
	}
	return b.needTools(w)
}

// directReplies adds on-link routes from every real server to the client,
// so that their replies go straight to it over the bridge (DR, TUN).
func (b *bench) directReplies() (undo func(), err error) {
	dst := lab.ClientIP.String() + "/32"
	var done []lab.NS
	undo = func() {
		for _, ns := range done {
			b.ip(ns, "route", "del", dst, "dev", lab.GuestLink)
		}
	}
	for _, r := range b.tp.Reals {
		if err := b.ip(r.NS, "route", "replace", dst, "dev", lab.GuestLink); err != nil {
			undo()
			return nil, err
		}
		done = append(done, r.NS)
	}
	return undo, nil
}

// kernelDirector gives the director namespace's kernel the DIPs and the VIP
// on its bridge, as lvsd's netstack holds them otherwise.
func (b *bench) kernelDirector(forward bool) (undo func(), err error) {
	d := b.tp.Director
	undo = func() {
		b.ip(d, "addr", "flush", "dev", lab.BridgeName)
		b.sysctl(d, "net.ipv4.ip_forward", "0")
		b.flushNeighbours()
	}
	b.flushNeighbours()
	for _, a := range []string{lab.DIP.String() + "/24", lab.RealGateway.String() + "/24", lab.VIP.String() + "/32"} {
		if err := b.ip(d, "addr", "add", a, "dev", lab.BridgeName); err != nil {
			undo()
			return nil, err
		}
	}
	if forward {
		if err := b.sysctl(d, "net.ipv4.ip_forward", "1"); err != nil {
			undo()
			return nil, err
		}
	}
	return undo, nil
}

// startNft makes the director's kernel the balancer: DNAT in prerouting
// (round robin over the three real servers for HTTP with numgen, rs1 for
// iperf3 and UDP), conntrack un-NATs the replies.
func (b *bench) startNft() (*running, error) {
	undo, err := b.kernelDirector(true)
	if err != nil {
		return nil, err
	}
	rules := b.nftRules()
	path := b.lab.WriteFile("nat.nft", rules)
	d := b.tp.Director
	if out, err := b.exec(d, cmdTimeout, "nft", "-f", path); err != nil {
		undo()
		return nil, fmt.Errorf("nft -f: %w: %s", err, out)
	}
	stop := func() {
		b.exec(d, cmdTimeout, "nft", "delete", "table", "ip", natTable)
		// Forget the NAT bindings, so the next contestant starts clean.
		b.exec(d, cmdTimeout, "sh", "-c", "echo f > /proc/net/nf_conntrack 2>/dev/null; true")
		undo()
	}
	if err := b.waitTCP(b.tp.Client, netip.AddrPortFrom(lab.VIP, httpPort)); err != nil {
		stop()
		return nil, err
	}
	return &running{target: lab.VIP, kernel: true, stop: stop}, nil
}

// nftRules is the kernel contestants' nftables table: DNAT in prerouting,
// round robin over the three real servers for HTTP (numgen), rs1 for iperf3
// and UDP.
func (b *bench) nftRules() string {
	rs := b.tp.Reals
	return fmt.Sprintf(`table ip %[1]s {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[2]s tcp dport %[3]d dnat to numgen inc mod 3 map { 0 : %[4]s, 1 : %[5]s, 2 : %[6]s }
		ip daddr %[2]s tcp dport %[7]d dnat to %[4]s
		ip daddr %[2]s udp dport %[8]d dnat to %[4]s
	}
}
`, natTable, lab.VIP, httpPort, rs[0].Addr, rs[1].Addr, rs[2].Addr, iperfPort, udpPort)
}

// startHAProxy runs HAProxy in TCP mode on the VIP in the director
// namespace (whose kernel holds the addresses but does not forward).
func (b *bench) startHAProxy() (*running, error) {
	undo, err := b.kernelDirector(false)
	if err != nil {
		return nil, err
	}
	rs := b.tp.Reals
	var servers strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&servers, "\tserver %s %s:%d\n", r.Name, r.Addr, httpPort)
	}
	cfg := fmt.Sprintf(`# HAProxy of the lvsd bench: TCP mode, no logs, no health checks.
global
	maxconn 8000
defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend http
	bind %[1]s:%[2]d
	default_backend web
backend web
	balance roundrobin
%[3]sfrontend iperf
	bind %[1]s:%[4]d
	default_backend iperf
backend iperf
	server %[5]s %[6]s:%[4]d
`, lab.VIP, httpPort, servers.String(), iperfPort, rs[0].Name, rs[0].Addr)
	path := b.lab.WriteFile("haproxy.cfg", cfg)
	p := b.lab.Start(b.tp.Director, "haproxy", "haproxy", "-db", "-f", path)
	stop := func() {
		p.Stop()
		undo()
	}
	if err := b.waitTCP(b.tp.Client, netip.AddrPortFrom(lab.VIP, httpPort)); err != nil {
		out := p.Output()
		stop()
		return nil, fmt.Errorf("%w; haproxy: %s", err, tailString(out, 2000))
	}
	return &running{target: lab.VIP, pid: p.Pid(), proc: p, stop: stop}, nil
}

// startDirect routes the client and rs1 to each other on-link: no balancer.
func (b *bench) startDirect() (*running, error) {
	b.flushNeighbours()
	rs1 := b.tp.Reals[0]
	cli := lab.ClientIP.String() + "/32"
	srv := rs1.Addr.String() + "/32"
	undo := func() {
		b.ip(b.tp.Client, "route", "del", srv, "dev", lab.GuestLink)
		b.ip(rs1.NS, "route", "del", cli, "dev", lab.GuestLink)
		b.flushNeighbours()
	}
	if err := errors.Join(
		b.ip(b.tp.Client, "route", "replace", srv, "dev", lab.GuestLink),
		b.ip(rs1.NS, "route", "replace", cli, "dev", lab.GuestLink),
	); err != nil {
		undo()
		return nil, err
	}
	if err := b.waitTCP(b.tp.Client, netip.AddrPortFrom(rs1.Addr, directHTTPPort)); err != nil {
		undo()
		return nil, err
	}
	return &running{target: rs1.Addr, port: directHTTPPort, stop: undo}, nil
}
