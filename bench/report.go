//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// metric describes one reported quantity.
type metric struct {
	key      string
	title    string // long, for headings and the plot
	column   string // short, for the summary table
	unit     string
	decimals int
	workload string
}

var metrics = []metric{
	{"tcp1", "TCP throughput, 1 stream (iperf3)", "TCP 1 stream", "Gbit/s", 1, "tcp1"},
	{"tcp4", "TCP throughput, 4 streams (iperf3)", "TCP 4 streams", "Gbit/s", 1, "tcp4"},
	{"http", "New HTTP connections per second (wrk, Connection: close)", "HTTP conn/s", "conn/s", 0, "http"},
	{"udp-lossfree", "64-byte UDP, loss-free rate (at the receiver)", "UDP loss-free", "kpps", 0, "udp"},
	{"udp-overload", "64-byte UDP, delivered under overload (at the receiver)", "UDP overload", "kpps", 0, "udp"},
}

func metricDef(key string) metric {
	for _, m := range metrics {
		if m.key == key {
			return m
		}
	}
	return metric{key: key, title: key, column: key}
}

func (m metric) format(v float64) string { return formatNum(v, m.decimals) }

// formatNum prints v with d decimals and thousands separators.
func formatNum(v float64, d int) string {
	s := fmt.Sprintf("%.*f", d, v)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

// summary is the statistics of one metric for one contestant.
type summary struct {
	n, failed      int
	med, min, max  float64
	p50, p99       float64 // http: medians over the runs, ms
	p99min, p99max float64
	bal, busy      float64 // medians over the runs, s; -1 if not measured
	helpers        float64 // median CPU of helper processes (lvsd realserver), s; -1 if none
	errors         int     // http: sum over the runs
	na             string
	firstErr       string
	notes          []string
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (lo, hi float64) {
	for i, x := range v {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

func (b *bench) summarize(key, contestant string) summary {
	def := metricDef(key)
	var s summary
	if why := b.res.na[contestant][def.workload]; why != "" {
		s.na = why
		return s
	}
	var vals, p50s, p99s, bals, busys, helps []float64
	for _, x := range b.res.samples[key][contestant] {
		if x.err != "" {
			s.failed++
			if s.firstErr == "" {
				s.firstErr = x.err
			}
			continue
		}
		s.n++
		vals = append(vals, x.m.value)
		p50s = append(p50s, x.m.p50)
		p99s = append(p99s, x.m.p99)
		if x.m.cpu.balancer >= 0 {
			bals = append(bals, x.m.cpu.balancer)
		}
		if x.m.cpu.busy >= 0 {
			busys = append(busys, x.m.cpu.busy)
		}
		if x.m.cpu.helpers >= 0 {
			helps = append(helps, x.m.cpu.helpers)
		}
		s.errors += x.m.errors
		if x.m.note != "" {
			s.notes = append(s.notes, fmt.Sprintf("round %d: %s", x.round+1, x.m.note))
		}
	}
	s.med = median(vals)
	s.min, s.max = minMax(vals)
	s.p50 = median(p50s)
	s.p99 = median(p99s)
	s.p99min, s.p99max = minMax(p99s)
	s.bal, s.busy, s.helpers = -1, -1, -1
	if len(helps) > 0 {
		s.helpers = median(helps)
	}
	if len(bals) > 0 {
		s.bal = median(bals)
	}
	if len(busys) > 0 {
		s.busy = median(busys)
	}
	return s
}

// cell formats a summary as "median (min–max)".
func (s summary) cell(m metric) string {
	switch {
	case s.na != "":
		return "n/a"
	case s.n == 0 && s.failed > 0:
		return "failed"
	case s.n == 0:
		return "–"
	}
	c := m.format(s.med)
	if s.n > 1 {
		c += fmt.Sprintf(" (%s–%s)", m.format(s.min), m.format(s.max))
	}
	if s.failed > 0 {
		c += fmt.Sprintf(" [%d failed]", s.failed)
	}
	return c
}

// report is the finished run, ready to print and write.
type report struct {
	b       *bench
	machine machine
	elapsed time.Duration
}

func (b *bench) report() *report {
	return &report{b: b, machine: describeMachine(b.ctx, b.bin.Lvsd), elapsed: time.Since(b.started)}
}

// activeMetrics are the metrics of the selected workloads.
func (r *report) activeMetrics() []metric {
	var out []metric
	for _, m := range metrics {
		for _, w := range r.b.f.workloads {
			if m.workload == w {
				out = append(out, m)
			}
		}
	}
	return out
}

// summaryTable is the main table: a row per contestant, a column per
// metric (plus HTTP p50/p99).
func (r *report) summaryTable() string {
	ms := r.activeMetrics()
	var sb strings.Builder
	sb.WriteString("| contestant |")
	for _, m := range ms {
		fmt.Fprintf(&sb, " %s (%s) |", m.column, m.unit)
		if m.key == "http" {
			sb.WriteString(" HTTP p50 (ms) | HTTP p99 (ms) |")
		}
	}
	sb.WriteString("\n|---|")
	for _, m := range ms {
		sb.WriteString("---:|")
		if m.key == "http" {
			sb.WriteString("---:|---:|")
		}
	}
	sb.WriteString("\n")
	for _, c := range r.b.f.only {
		fmt.Fprintf(&sb, "| %s |", c)
		for _, m := range ms {
			s := r.b.summarize(m.key, c)
			fmt.Fprintf(&sb, " %s |", s.cell(m))
			if m.key == "http" {
				if s.n > 0 {
					p99 := fmt.Sprintf("%.2f", s.p99)
					if s.n > 1 {
						p99 += fmt.Sprintf(" (%.2f–%.2f)", s.p99min, s.p99max)
					}
					fmt.Fprintf(&sb, " %.2f | %s |", s.p50, p99)
				} else {
					sb.WriteString(" – | – |")
				}
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// cpuTable shows the balancer's CPU seconds and the machine's busy seconds
// per run, medians.
func (r *report) cpuTable() string {
	var ms []metric
	for _, m := range r.activeMetrics() {
		if m.key != "udp-lossfree" {
			ms = append(ms, m)
		}
	}
	var sb strings.Builder
	sb.WriteString("| contestant |")
	for _, m := range ms {
		fmt.Fprintf(&sb, " %s: balancer / machine (CPU s) |", m.column)
	}
	sb.WriteString("\n|---|")
	for range ms {
		sb.WriteString("---:|")
	}
	sb.WriteString("\n")
	for _, c := range r.b.f.only {
		fmt.Fprintf(&sb, "| %s |", c)
		for _, m := range ms {
			s := r.b.summarize(m.key, c)
			switch {
			case s.na != "":
				sb.WriteString(" n/a |")
			case s.n == 0:
				sb.WriteString(" – |")
			default:
				bal := "–"
				if s.bal >= 0 {
					bal = fmt.Sprintf("%.2f", s.bal)
					if strings.HasPrefix(c, "nft") {
						bal += "\\*"
					}
					if s.helpers >= 0 {
						bal += fmt.Sprintf(" (+%.2f decap)", s.helpers)
					}
				}
				fmt.Fprintf(&sb, " %s / %.2f |", bal, s.busy)
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func (r *report) naList() string {
	var sb strings.Builder
	for _, c := range r.b.f.only {
		for _, w := range r.b.f.workloads {
			if why := r.b.res.na[c][w]; why != "" {
				fmt.Fprintf(&sb, "- **%s, %s**: n/a: %s\n", c, w, why)
			}
		}
	}
	for _, o := range r.b.observations {
		fmt.Fprintf(&sb, "- observed: %s\n", o)
	}
	for _, e := range r.b.evidence {
		fmt.Fprintf(&sb, "- failed: %s\n", strings.ReplaceAll(tailString(e, 1500), "\n", "\n  "))
	}
	return sb.String()
}

// text is what the bench prints to stdout at the end.
func (r *report) text() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "lvsd bench: %d round(s), %v per run, %s; median (min–max)\n\n", r.b.f.rounds, r.b.f.duration, r.machine.oneLine())
	sb.WriteString(r.summaryTable())
	sb.WriteString("\nCPU seconds per run (median): balancer / whole machine\n\n")
	sb.WriteString(r.cpuTable())
	if rel := r.relativeTable(); rel != "" {
		sb.WriteString("\nlvsd relative to the others in the same topology (ratio of the medians)\n\n" + rel)
	}
	if na := r.naList(); na != "" {
		sb.WriteString("\n" + na)
	}
	if g := r.b.goBench; g != nil {
		sb.WriteString("\n" + g.text())
	}
	return sb.String()
}

func (m machine) oneLine() string {
	return fmt.Sprintf("%s, %d cores, Linux %s, %s", m.CPU, m.Cores, m.Kernel, m.Go)
}

func svgPath(md string) string {
	return strings.TrimSuffix(md, filepath.Ext(md)) + ".svg"
}

// write writes the markdown report to path and the plot beside it.
func (r *report) write(path string) error {
	svg := svgPath(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(svg, []byte(r.svg()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(r.markdown(filepath.Base(svg))), 0o644)
}

func (r *report) markdown(svgName string) string {
	b := r.b
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	m := r.machine
	w("# Benchmarks\n\n")
	w("lvsd against the kernel's nftables DNAT, HAProxy and a direct path, in a network-namespace lab on one machine.\n")
	w("Written by `go run ./bench` (`make bench`) on %s; %d round(s) of %v per run, every contestant once per workload\n", m.Date, b.f.rounds, b.f.duration)
	w("and round, in rotating order. Each cell is the **median (min–max)** over the rounds. Figures are measured, not edited:\n")
	w("rerun the suite to replace them (see [Reproducing](#reproducing)).\n\n")

	w("## Machine\n\n")
	w("| | |\n|---|---|\n")
	w("| CPU | %s, %d cores%s |\n", m.CPU, m.Cores, optional(", "+m.Virt, m.Virt != ""))
	w("| memory | %s |\n", m.Memory)
	w("| kernel | Linux %s |\n", m.Kernel)
	w("| OS | %s |\n", m.OS)
	w("| Go | %s |\n", m.Go)
	w("| lvsd | %s, %d TAP queue(s) or AF_PACKET socket(s), offload on |\n", m.LvsdVer, b.f.queues)
	w("| br_netfilter | %s |\n", b.brNetfilter)
	var names []string
	for _, t := range tools {
		if v := b.tools[t.prog]; v != "" {
			names = append(names, fmt.Sprintf("%s (`%s`)", t.prog, v))
		}
	}
	w("| tools | %s |\n", strings.Join(names, "; "))
	w("| date | %s; the whole run took %s |\n\n", m.Date, r.elapsed.Round(time.Second))

	w("## Results\n\n")
	sb.WriteString(r.summaryTable())
	w("\n![Medians with min–max bars per workload and contestant](%s)\n\n", svgName)
	w("All contestants share one machine of %d cores: the load generator, the balancer and the servers compete for the\n", m.Cores)
	w("same CPUs, so a balancer that uses less CPU leaves more to the others. Read the figures as a comparison on this\n")
	w("machine, not as capacities.\n\n")

	if rel := r.relativeTable(); rel != "" {
		w("### lvsd relative to the others\n\n")
		w("Median of lvsd divided by the median of the other contestant (higher is better for lvsd).\n\n")
		sb.WriteString(rel)
		w("\n")
	}

	w("### CPU\n\n")
	w("CPU seconds during one measured run of %v (median over the rounds): the balancer's, then the whole machine's\n", b.f.duration)
	w("non-idle time (generator, balancer, servers and the kernel of every namespace).\n\n")
	sb.WriteString(r.cpuTable())
	w("\n- **lvsd, haproxy**: `utime + stime` of the process (all threads) from `/proc/PID/stat`, before and after the run.\n")
	w("  lvsd's system time includes the kernel work done inside its reads and writes (TAP or AF_PACKET): a frame lvsd writes is\n")
	w("  bridged, crosses a veth and is received by the destination namespace's stack in the same system call.\n")
	w("- **nft**, **nft-routed** (\\*): the kernel has no balancer process: the figure is the machine's `system + irq + softirq` time from\n")
	w("  `/proc/stat` during the run. It includes the kernel work of the client, the bridge and the real servers, so it is\n")
	w("  an upper bound on the DNAT's own cost; compare it with the same figure for `direct` (no balancer), %s.\n", r.directSystem())
	w("- **direct**: no balancer (–).\n")
	w("- UDP: CPU is measured during the overload run.\n\n")

	w("### Details\n\n")
	for _, mt := range r.activeMetrics() {
		w("**%s** (%s)\n\n", mt.title, mt.unit)
		for _, c := range b.f.only {
			s := b.summarize(mt.key, c)
			switch {
			case s.na != "":
				w("- %s: n/a: %s\n", c, s.na)
				continue
			case s.n == 0 && s.failed > 0:
				w("- %s: failed in every round: %s\n", c, firstLine(s.firstErr))
				continue
			}
			line := fmt.Sprintf("- %s: %s", c, s.cell(mt))
			if mt.key == "http" {
				line += fmt.Sprintf("; p50 %.2f ms, p99 %.2f ms", s.p50, s.p99)
				if s.errors > 0 {
					line += fmt.Sprintf("; %d errors in all", s.errors)
				}
			}
			if len(s.notes) > 0 {
				line += "; " + strings.Join(s.notes, "; ")
			}
			w("%s\n", line)
		}
		w("\n")
	}

	w("## Go benchmarks (per-packet work, no devices)\n\n")
	if g := b.goBench; g != nil {
		sb.WriteString(g.markdown())
		sb.WriteString(g.scalingMarkdown())
	} else {
		w("Not run in this run (`-go-bench=false`). `make bench-go` runs them on their own.\n\n")
		w("## Scaling\n\n")
	}
	sb.WriteString(queuesMarkdown(b.f.only, b.f.queues, r.activeMetrics(), m.Cores, b.summarize))

	w("## What was measured\n\n")
	w("The lab (package `internal/lab`, the reference NAT lab): namespaces `lvt-<pid>-*` for a client (%s/24), a\n", lab.ClientIP)
	w("one-armed director (a bridge `%s` joining veths to the client and three real servers, lvsd's TAP `%s`, and a veth\n", lab.BridgeName, lab.TAPName)
	w("whose end `%s` the `-pkt` contestants attach to by AF_PACKET; one lvsd at a time), and\n", lab.PacketName)
	w("three real servers (%s, %s, %s /24, default route via the DIP %s). Addresses come from 198.18.0.0/15\n",
		b.tp.Reals[0].Addr, b.tp.Reals[1].Addr, b.tp.Reals[2].Addr, lab.RealGateway)
	w("only; the namespaces are removed on every exit path. The real servers hold the VIP %s on `lo` with\n", lab.VIP)
	w("`arp_ignore=1`, `arp_announce=2` (for DR and TUN). Every contestant uses this same topology but the `-routed` ones.\n\n")
	w("The routed topology (`-routed` contestants, bench/routed.go): lvsd's TAP `%s` sits behind a router namespace's own IP\n", routedTAP)
	w("forwarding (`ip_forward=1`), as on a container host or a router-on-a-stick. A second client (%s/24, default via\n", routedClientIP)
	w("the router's %s) reaches the router, which routes the VIP into the TAP (lvsd %s/24, one on-link default route\n", routedRouterIP, routedLvsdAddr)
	w("answered by the router's proxy ARP) and forwards lvsd's output over a veth to the same bridge and real servers; it\n")
	w("holds their gateway %s while a routed contestant runs, and a policy rule sends what arrives from them back into the\n", lab.RealGateway)
	w("TAP. lvsd-nat-pkt-routed attaches lvsd by AF_PACKET to a veth `%s` inside the router instead (the router's end\n", routedPktLink)
	w("%s %s/24, lvsd %s/24, forwarding off on lvsd's end). nft-routed is the same router's kernel doing the DNAT: the same\n", routedPktRouter, routedPktRouterAddr, routedPktLvsdAddr)
	w("path without the TAP hop and lvsd. The relative table compares `-routed` contestants only with each other.\n\n")
	w("The director namespace's bridge runs with br_netfilter %s.\n\n", b.brNetfilter)

	for _, c := range b.f.only {
		w("- **%s**: %s.\n", c, contestantByName(c).desc)
	}
	if b.tunDecap != "" {
		w("\nTUN mode: the real servers decapsulate IPIP with %s. The CPU table shows its CPU seconds as \"+N decap\".\n", b.tunDecap)
	}
	w("\nBetween contestants the balancer is stopped, its addresses, rules and routes removed and every neighbour table\n")
	w("flushed. lvsd starts with a fresh process for every run and is warmed up (six connections through the VIP, so\n")
	w("its netstack has every real server's MAC) before the measurement.\n\n")
	w("Workloads:\n\n")
	w("- **TCP throughput** (`tcp1`, `tcp4`): `iperf3 -c VIP -t %s -O 1 -P 1|4` from the client to the iperf3 server on\n", secs(b.f.duration))
	w("  rs1; the figure is the receiver's. iperf3 opens a control connection and data connections that must reach the\n")
	w("  same server, so the throughput service has **one real server** (lvsd: rs1 weight 1, rs2 and rs3 weight 0;\n")
	w("  nftables: DNAT to rs1; HAProxy: one server). A TCP stream through lvsd's TAP or veth arrives as 64 KiB\n")
	w("  super-frames (virtio-net header with TSO), rewritten once and written back whole.\n")
	w("- **New HTTP connections** (`http`): `wrk -t 2 -c %d -d %ss --latency -H \"Connection: close\"` against nginx\n", b.f.httpConns, secs(b.f.duration))
	w("  (nginx-light, one worker each) on the three real servers, round robin (lvsd `rr`, nftables `numgen inc mod 3`,\n")
	w("  HAProxy `roundrobin`), a 3-byte static file: every request is a new TCP connection. p50 and p99 are wrk's\n")
	w("  latency percentiles (per request, connection set-up included). The direct path has one nginx (rs1).\n")
	w("- **64-byte UDP** (`udp`): iperf 2 (`iperf -u -l 64 -P %d -b <rate>pps`: 64-byte payloads, 106-byte\n", udpStreams)
	w("  Ethernet frames, from two sending threads; one iperf3 sender reaches only about 120 kpps here, iperf 2 about\n")
	w("  300 kpps per thread) to port %d of the VIP, balanced to rs1. rs1 counts and drops the datagrams in an nftables\n", udpPort)
	w("  prerouting chain before any socket (the receiver count does not depend on a receiving program keeping up).\n")
	w("  *Delivered under overload*: the generator sends as fast as it can for %v; the figure is what rs1 counted per\n", b.f.duration)
	w("  second. *Loss-free*: the highest offered rate (as sent, counted by iperf) at which at most %.2g%% was lost, found by\n", 100*b.f.lossFree)
	w("  bisection (7 steps of %v) between 0 and the overload's offered rate.\n\n", udpStep(b.f.duration))

	if counters := r.lvsdCounters(); counters != "" {
		w("## lvsd's counters\n\n")
		w("`lvsd counters` after the last run of each workload (one lvsd process per run):\n\n")
		w("%s\n", counters)
	}

	if na := r.naList(); na != "" {
		w("## Not measured, failures\n\n%s\n", na)
	}

	w("## Raw samples\n\n")
	w("| metric | contestant | per round |\n|---|---|---|\n")
	for _, mt := range r.activeMetrics() {
		for _, c := range b.f.only {
			ss := b.res.samples[mt.key][c]
			if len(ss) == 0 {
				continue
			}
			var parts []string
			for _, x := range ss {
				if x.err != "" {
					parts = append(parts, "failed")
					continue
				}
				p := mt.format(x.m.value)
				if mt.key == "http" {
					p += fmt.Sprintf(" (p99 %.2f ms)", x.m.p99)
				}
				parts = append(parts, p)
			}
			w("| %s | %s | %s |\n", mt.key, c, strings.Join(parts, ", "))
		}
	}

	w("\n## Reproducing\n\n")
	w("As root, from the repository root (it installs iperf3, iperf, wrk, nginx-light, haproxy and nftables with apt-get\n")
	w("when missing, builds lvsd, builds the lab, runs and removes it):\n\n")
	w("```sh\n")
	w("make bench                                   # go run ./bench: 5 rounds of 5 s, writes this file\n")
	w("make bench BENCHFLAGS=-queue-sweep           # and lvsd NAT at 2 and 4 queues (the scaling section's queue table)\n")
	w("go run ./bench -quick -out ''                # smoke test: 1 round of 3 s, prints the table only\n")
	w("go run ./bench -only lvsd-nat,nft -workloads tcp1,http -rounds 5\n")
	w("```\n\n")
	w("Flags: `-rounds N`, `-duration D`, `-only %s`, `-workloads %s`,\n", strings.Join(contestantNames(), ","), strings.Join(workloadNames(), ","))
	w("`-out FILE` (the plot goes beside it as .svg), `-quick`, `-queues N` (lvsd's TAP queues or AF_PACKET sockets),\n")
	w("`-queue-sweep` (adds %s: TCP and HTTP only; not in the default run), `-http-conns N`, `-loss F`,\n", strings.Join(sweepNames(), ", "))
	w("`-go-bench=false` (skip the Go benchmarks), `-go-benchtime T` (default %s, %s with `-quick`), `-no-install`, `-v`.\n", goBenchTime, goBenchTimeQuick)
	w("This run: `%s`.\n", r.cmdline())
	return sb.String()
}

func optional(s string, ok bool) string {
	if ok {
		return s
	}
	return ""
}

func (r *report) cmdline() string {
	args := []string{"go run ./bench"}
	args = append(args, os.Args[1:]...)
	return strings.Join(args, " ")
}

// directSystem describes the direct path's kernel CPU for comparison.
func (r *report) directSystem() string {
	var parts []string
	for _, mt := range r.activeMetrics() {
		if mt.key == "udp-lossfree" {
			continue
		}
		var sys []float64
		for _, x := range r.b.res.samples[mt.key]["direct"] {
			if x.err == "" && x.m.cpu.system >= 0 {
				sys = append(sys, x.m.cpu.system)
			}
		}
		if len(sys) > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f s", mt.column, median(sys)))
		}
	}
	if len(parts) == 0 {
		return "which was not measured in this run"
	}
	return "whose system + irq + softirq time was " + strings.Join(parts, ", ")
}

// lvsdCounters formats the counters captured after lvsd runs.
func (r *report) lvsdCounters() string {
	var keys []string
	for k := range r.b.res.counters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "<details><summary>%s</summary>\n\n```\n%s\n```\n</details>\n\n", k, strings.TrimRight(r.b.res.counters[k], "\n"))
	}
	return sb.String()
}

// relativePairs are the rows of the relative table: each lvsd contestant
// against each other contestant of the same topology (a -routed contestant
// only against -routed ones, so lvsd-nat-routed meets nft-routed; the
// others only against the one-armed lab's), in the order of only.
func relativePairs(only []string) [][2]string {
	var lvsds, others []string
	for _, c := range only {
		if strings.HasPrefix(c, "lvsd") {
			lvsds = append(lvsds, c)
		} else {
			others = append(others, c)
		}
	}
	var pairs [][2]string
	for _, l := range lvsds {
		for _, o := range others {
			if isRouted(l) == isRouted(o) {
				pairs = append(pairs, [2]string{l, o})
			}
		}
	}
	return pairs
}

// isRouted says whether contestant c runs in the routed topology.
func isRouted(c string) bool { return strings.HasSuffix(c, "-routed") }

// relativeTable compares each lvsd contestant with nft, haproxy and direct
// in the same topology (relativePairs): ratio of the medians, per metric.
func (r *report) relativeTable() string {
	pairs := relativePairs(r.b.f.only)
	ms := r.activeMetrics()
	if len(pairs) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("| lvsd vs |")
	for _, m := range ms {
		fmt.Fprintf(&sb, " %s |", m.column)
	}
	sb.WriteString("\n|---|")
	for range ms {
		sb.WriteString("---:|")
	}
	sb.WriteString("\n")
	rows := 0
	for _, p := range pairs {
		l, o := p[0], p[1]
		var cells []string
		any := false
		for _, m := range ms {
			a, b := r.b.summarize(m.key, l), r.b.summarize(m.key, o)
			if a.n == 0 || b.n == 0 || b.med == 0 {
				cells = append(cells, "–")
				continue
			}
			any = true
			cells = append(cells, fmt.Sprintf("%.0f%%", 100*a.med/b.med))
		}
		if !any {
			continue
		}
		rows++
		fmt.Fprintf(&sb, "| %s / %s | %s |\n", l, o, strings.Join(cells, " | "))
	}
	if rows == 0 {
		return ""
	}
	return sb.String()
}
