//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// Ports and names of the lab's services.
const (
	httpPort = 80 // nginx on every real server; the VIP's HTTP service
	// directHTTPPort is nginx's second port, the direct path's: the
	// server's side of a `Connection: close` exchange keeps TIME_WAIT
	// for 60 s, and the direct path's tens of thousands of them, on
	// rs1:80, would meet the next contestant's NAT connections (the
	// client's address and ports, rewritten to rs1:80): a SYN that
	// meets one is answered with the old connection's ACK, and the
	// client's retry after 1 s made the next NAT contestant's HTTP
	// rate fall to about 1% of its own.
	directHTTPPort = 8081
	iperfPort      = 5201 // iperf3 server on rs1; the VIP's TCP throughput service
	udpPort        = 9    // the UDP sink on rs1 (nftables counter and drop)

	sinkTable   = "lvtsink"  // nftables table of the UDP sink in rs1
	natTable    = "lvtbench" // nftables table of the kernel DNAT contestant
	tunnelLink  = "lvttnl0"  // IPIP device of a real server (TUN mode, kernel)
	cmdTimeout  = 20 * time.Second
	readyWithin = 30 * time.Second
)

// bench is one run of the suite: its lab, its tools and its results.
type bench struct {
	ctx context.Context
	s   *lab.Session
	f   *flags

	bin lab.Binaries
	lab *lab.Lab
	tp  *lab.Topology
	pkt *lab.Topology // the same lab, lvsd on the AF_PACKET veth
	// routed is the routed topology (routed.go): lvsd's TAP in a router
	// namespace that forwards, the same real servers.
	routed *lab.Topology
	// routedPkt is the routed topology with lvsd on a veth in the router
	// namespace by AF_PACKET (lvsd-nat-pkt-routed).
	routedPkt *lab.Topology
	// sweepTAP is the one-armed lab on a multi-queue TAP of its own
	// (lvsd-nat-q2, -q4); nil unless one of them is selected.
	sweepTAP *lab.Topology
	www      string // document root of the real servers' nginx
	// brNetfilter says what the bench did with br_netfilter, for the report.
	brNetfilter string

	tools          map[string]string // program -> version line, for the report
	missing        map[string]string // program -> why it cannot be used
	nftErr         error             // why the kernel cannot DNAT here (nil: it can)
	tunErr         error             // why the real servers cannot decapsulate IPIP (nil: they can)
	lvsdCtl        bool              // lvsd has a control socket (-control) and `lvsd counters`
	lvsdRealserver bool              // lvsd has `lvsd realserver` (userspace IPIP decapsulation)
	tunDecap       string            // how the real servers decapsulate IPIP, for the report

	res          *results
	evidence     []string // failed runs, with their errors
	observations []string // anomalies seen in runs that did not fail
	started      time.Time

	goBench *goBenchRun // the Go micro-benchmarks; nil if not run (-go-bench=false)
}

func newBench(ctx context.Context, s *lab.Session, f *flags) *bench {
	return &bench{ctx: ctx, s: s, f: f, tools: map[string]string{}, missing: map[string]string{}, res: newResults()}
}

// prepare installs what is missing, builds lvsd, builds the lab and starts
// the real servers. Any failure here is fatal (Session.Fatalf).
func (b *bench) prepare() {
	b.started = time.Now()
	b.installTools()

	logf("building lvsd and the lab server")
	b.bin = lab.BuildBinaries(b.s)
	if out, err := runHost(b.ctx, 10*time.Second, b.bin.Lvsd, "help"); err == nil || out != "" {
		b.lvsdCtl = strings.Contains(out, "-control") && strings.Contains(out, "counters")
		b.lvsdRealserver = strings.Contains(out, "realserver")
	}

	logf("building the lab")
	b.lab = lab.New(b.s)
	b.tp = b.lab.NATLab(lab.Options{Reals: 3, Queues: b.f.queues, Sender: b.f.sender})
	// The same lab with lvsd attached to a veth by AF_PACKET instead.
	b.pkt = b.tp.WithPacketLink(packetMAC)
	l, tp := b.lab, b.tp
	logf("lab: namespaces %s{dir,cli,rs1,rs2,rs3}", l.Prefix())

	// The client: a wide port range, so that tens of thousands of short
	// connections per run do not run out of source ports.
	l.Sysctl(tp.Client, "net.ipv4.ip_local_port_range", "1024 65000")
	l.Sysctl(tp.Client, "net.ipv4.tcp_tw_reuse", "1")
	l.Sysctl(tp.Director, "net.ipv4.ip_local_port_range", "1024 65000")
	l.Sysctl(tp.Director, "net.ipv4.tcp_tw_reuse", "1")
	// The director's kernel, when it is the balancer (nft, haproxy),
	// routes from the bridge back to the bridge: no ICMP redirects.
	l.Sysctl(tp.Director, "net.ipv4.conf.all.send_redirects", "0")
	l.Sysctl(tp.Director, "net.ipv4.conf.default.send_redirects", "0")

	// The real servers hold the VIP on lo without announcing it (DR and
	// TUN need it; NAT ignores it), accept packets for it from any link,
	// and serve a tiny static page.
	b.www = filepath.Join(l.Dir(), "www")
	if err := os.MkdirAll(b.www, 0o755); err != nil {
		b.s.Fatalf("www: %v", err)
	}
	if err := os.WriteFile(filepath.Join(b.www, "index.html"), []byte("ok\n"), 0o644); err != nil {
		b.s.Fatalf("www: %v", err)
	}
	for _, r := range tp.Reals {
		for _, kv := range [][2]string{
			{"net.ipv4.conf.all.arp_ignore", "1"}, {"net.ipv4.conf.all.arp_announce", "2"},
			{"net.ipv4.conf." + lab.GuestLink + ".arp_ignore", "1"}, {"net.ipv4.conf." + lab.GuestLink + ".arp_announce", "2"},
			{"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.default.rp_filter", "0"},
			{"net.ipv4.conf." + lab.GuestLink + ".rp_filter", "0"}, {"net.ipv4.conf.lo.rp_filter", "0"},
			{"net.core.somaxconn", "4096"}, {"net.ipv4.tcp_max_syn_backlog", "4096"},
		} {
			l.Sysctl(r.NS, kv[0], kv[1])
		}
		l.IP(r.NS, "addr", "add", lab.VIP.String()+"/32", "dev", "lo")
	}
	b.routed = b.buildRouted()
	b.routedPkt = routedPacket(b.routed)
	b.buildSweepTAP()
	b.brNetfilter = b.bridgeNetfilterOff()
	b.setupTunnels()
	b.setupSink()
	b.probeKernelNAT()
	b.startServers()
}

// Names of the queue sweep's multi-queue TAP (bench/contestants.go).
const (
	sweepTAP    = "lvttapq"
	sweepTAPMAC = "02:00:5e:10:00:04"
)

// buildSweepTAP adds the queue sweep's TAP to the director's bridge when a
// TAP sweep contestant is selected (or held): multi-queue, which lvsd must
// open with more than one queue, so that lvsd-nat keeps the lab's own TAP.
func (b *bench) buildSweepTAP() {
	need := false
	for _, c := range append([]string{b.f.hold}, b.f.only...) {
		if c == "" {
			continue
		}
		if q := contestantByName(c).sweep; q > 0 && !strings.HasPrefix(c, "lvsd-nat-pkt") {
			need = true
		}
	}
	if !need {
		return
	}
	l, d := b.lab, b.tp.Director
	l.TunTap(d, sweepTAP, "tap", 0, true)
	l.Enslave(d, sweepTAP, lab.BridgeName)
	c := *b.tp
	c.Device, c.MAC, c.Options.MAC = sweepTAP, sweepTAPMAC, sweepTAPMAC
	b.sweepTAP = &c
}

// bridgeNetfilterOff turns br_netfilter's bridge-nf-call-iptables,
// -ip6tables and -arptables off in the director namespace, whose bridge
// carries every one-armed contestant's frames: with them on, every frame
// the bridge forwards also crosses the namespace's IP hooks (conntrack
// included), about 17% of each frame's cost for every contestant
// (docs/performance.md). No contestant needs them: nft and HAProxy hold the
// VIP and the DIPs on the bridge device itself, so what they balance enters
// the namespace's IP stack through the bridge device, where netfilter sees
// it anyway; the bridged traffic of lvsd, DR and direct needs no filter.
//
// The sysctls are per network namespace since Linux 5.3; before, they
// lived in the initial namespace only and a lab namespace has no
// /proc/sys/net/bridge: then nothing is changed (the host's setting is
// never touched) and the report says so. It returns that report line.
func (b *bench) bridgeNetfilterOff() string {
	const dir = "/proc/sys/net/bridge"
	if _, err := os.Stat(dir); err != nil {
		return "not loaded (br_netfilter absent): bridged frames cross no IP hooks"
	}
	d := b.tp.Director
	if _, err := b.exec(d, cmdTimeout, "test", "-e", dir+"/bridge-nf-call-iptables"); err != nil {
		return "loaded, its sysctls global on this kernel (not per namespace): left as the host has them"
	}
	host, _ := os.ReadFile(dir + "/bridge-nf-call-iptables")
	var errs []error
	for _, k := range []string{"iptables", "ip6tables", "arptables"} {
		errs = append(errs, b.sysctl(d, "net.bridge.bridge-nf-call-"+k, "0"))
	}
	// Belt and braces: the host's value must not have moved.
	if after, _ := os.ReadFile(dir + "/bridge-nf-call-iptables"); string(after) != string(host) {
		os.WriteFile(dir+"/bridge-nf-call-iptables", host, 0o644)
		return "loaded, its sysctls global on this kernel: left as the host has them"
	}
	if err := errors.Join(errs...); err != nil {
		logf("br_netfilter: could not turn it off in the director namespace: %v", err)
		return fmt.Sprintf("loaded, left on in the director namespace (%s)", firstLine(err.Error()))
	}
	return "loaded on the host, off in the director namespace (`bridge-nf-call-iptables`, `-ip6tables`, `-arptables` = 0: per-namespace sysctls)"
}

// setupTunnels prepares the real servers for TUN mode: the kernel's ipip
// device where the kernel has one; otherwise `lvsd realserver` (a userspace
// IPIP decapsulator writing into a TUN device), started with the lvsd-tun
// contestant; otherwise tunErr says why TUN mode cannot run here. A lab
// never loads a module (it would create tunl0 in every namespace).
func (b *bench) setupTunnels() {
	r1 := b.tp.Reals[0]
	kerr := b.ip(r1.NS, "link", "add", tunnelLink, "type", "ipip", "local", r1.Addr.String())
	if kerr == nil {
		b.ip(r1.NS, "link", "del", tunnelLink)
		for _, r := range b.tp.Reals {
			err := errors.Join(
				b.ip(r.NS, "link", "add", tunnelLink, "type", "ipip", "local", r.Addr.String()),
				b.ip(r.NS, "link", "set", tunnelLink, "up"),
				b.sysctl(r.NS, "net.ipv4.conf."+tunnelLink+".rp_filter", "0"))
			if err != nil {
				b.tunErr = fmt.Errorf("ipip device on %s: %w", r.Name, err)
				return
			}
		}
		b.tunDecap = "the kernel's ipip device on each real server"
		return
	}
	if b.lvsdRealserver {
		b.tunDecap = "`lvsd realserver` on each real server (the kernel has no ipip module): a userspace decapsulator that reads batches of packets, joins the TCP segments of a flow into super-frames and writes them into a TUN device, and competes for the same CPUs"
		logf("TUN mode: the kernel has no ipip device (%s); the real servers decapsulate with `lvsd realserver`", firstLine(kerr.Error()))
		return
	}
	b.tunErr = fmt.Errorf("the real servers' kernel cannot decapsulate IPIP (`ip link add ... type ipip`: %s) and this lvsd has no `realserver` command", firstLine(kerr.Error()))
	logf("TUN mode: n/a: %v", b.tunErr)
}

// startRealservers runs `lvsd realserver` on every real server (TUN mode
// without the kernel's ipip) and returns their stop.
func (b *bench) startRealservers() (stop func(), procs []*lab.Proc, err error) {
	stop = func() {
		for _, p := range procs {
			p.Stop()
		}
	}
	// lvsd's outer source is its address toward the real server (the
	// route's preferred source): RealGateway on the servers' subnet.
	directors := lab.DIP.String() + "," + lab.RealGateway.String()
	for _, r := range b.tp.Reals {
		procs = append(procs, b.lab.Start(r.NS, r.Name+"-realserver", b.bin.Lvsd, "realserver",
			"-tun", lab.RealserverTUN, "-vip", lab.VIP.String(), "-director", directors))
	}
	for _, p := range procs {
		if werr := p.WaitOutput("realserver running", 10*time.Second); werr != nil {
			stop()
			return nil, nil, werr
		}
	}
	return stop, procs, nil
}

// setupSink makes rs1 count and drop the UDP benchmark's datagrams before
// they reach any socket (nftables, priority raw - 100): the receiver count
// does not depend on a receiving program keeping up.
func (b *bench) setupSink() {
	if b.missing["nft"] != "" {
		return
	}
	rules := fmt.Sprintf(`table ip %[1]s {
	counter rx { }
	chain pre {
		type filter hook prerouting priority -400; policy accept;
		udp dport %[2]d counter name rx drop
	}
}
`, sinkTable, udpPort)
	path := b.lab.WriteFile("sink.nft", rules)
	if out, err := b.exec(b.tp.Reals[0].NS, cmdTimeout, "nft", "-f", path); err != nil {
		b.missing["udp-sink"] = fmt.Sprintf("nft -f sink: %v: %s", err, out)
	}
}

// probeKernelNAT checks that nftables can make a NAT chain in the director
// namespace (it removes it at once).
func (b *bench) probeKernelNAT() {
	if why := b.missing["nft"]; why != "" {
		b.nftErr = fmt.Errorf("%s", why)
		return
	}
	rules := fmt.Sprintf("table ip %s {\n\tchain pre { type nat hook prerouting priority dstnat; policy accept; }\n}\n", natTable)
	path := b.lab.WriteFile("nat-probe.nft", rules)
	if out, err := b.exec(b.tp.Director, cmdTimeout, "nft", "-f", path); err != nil {
		b.nftErr = fmt.Errorf("kernel NAT unavailable: nft -f: %w: %s", err, strings.TrimSpace(out))
		logf("kernel DNAT: n/a: %v", b.nftErr)
		return
	}
	b.exec(b.tp.Director, cmdTimeout, "nft", "delete", "table", "ip", natTable)
}

// startServers runs nginx on every real server and the iperf3 server on
// rs1, and waits until they listen.
func (b *bench) startServers() {
	l, tp := b.lab, b.tp
	if b.missing["nginx"] == "" {
		for _, r := range tp.Reals {
			conf := fmt.Sprintf(`# nginx of real server %[1]s (lvsd bench)
worker_processes 1;
pid %[2]s/nginx-%[1]s.pid;
error_log %[2]s/nginx-%[1]s.err warn;
events { worker_connections 8192; }
http {
	access_log off;
	keepalive_timeout 0;
	server {
		listen %[3]d backlog=4096;
		listen %[5]d backlog=4096;
		root %[4]s;
		location / { }
	}
}
`, r.Name, l.Dir(), httpPort, b.www, directHTTPPort)
			path := l.WriteFile("nginx-"+r.Name+".conf", conf)
			l.Start(r.NS, "nginx-"+r.Name, "nginx", "-e", filepath.Join(l.Dir(), "nginx-"+r.Name+".err"), "-c", path, "-g", "daemon off;")
		}
		for _, r := range tp.Reals {
			if err := b.waitTCP(r.NS, netip.AddrPortFrom(r.Addr, httpPort)); err != nil {
				b.s.Fatalf("nginx in %s: %v", r.NS, err)
			}
		}
	}
	if b.missing["iperf3"] == "" {
		r := tp.Reals[0]
		l.Start(r.NS, "iperf3-"+r.Name, "iperf3", "-s", "-p", fmt.Sprint(iperfPort))
		if err := b.waitTCP(r.NS, netip.AddrPortFrom(r.Addr, iperfPort)); err != nil {
			b.s.Fatalf("iperf3 server in %s: %v", r.NS, err)
		}
	}
}

// waitTCP waits until something accepts connections at ap, connecting from
// ns itself.
func (b *bench) waitTCP(ns lab.NS, ap netip.AddrPort) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := lab.ProbeTCP(ns, ap)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			return fmt.Errorf("%v not listening: %w", ap, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ip runs `ip -n NS args...`; failure is returned, not fatal.
func (b *bench) ip(ns lab.NS, args ...string) error {
	out, err := runHost(b.ctx, cmdTimeout, "ip", append([]string{"-n", string(ns)}, args...)...)
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// sysctl sets key=value inside ns; failure is returned, not fatal.
func (b *bench) sysctl(ns lab.NS, key, value string) error {
	out, err := b.exec(ns, cmdTimeout, "sysctl", "-q", "-w", key+"="+value)
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// exec runs a command inside ns and returns its combined output.
func (b *bench) exec(ns lab.NS, timeout time.Duration, args ...string) (string, error) {
	if b.f.verbose {
		logf("  [%s] %s", strings.TrimPrefix(string(ns), b.lab.Prefix()), strings.Join(args, " "))
	}
	return b.lab.TryExec(ns, timeout, args...)
}

// flushNeighbours empties every namespace's neighbour table: the owner of
// the VIP and the DIPs changes between contestants (lvsd's netstack MAC or
// the director's bridge MAC).
func (b *bench) flushNeighbours() {
	for _, ns := range b.lab.Namespaces() {
		b.ip(ns, "neigh", "flush", "all")
	}
}
