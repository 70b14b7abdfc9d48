//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// results holds every sample, by metric and contestant.
type results struct {
	samples  map[string]map[string][]sample // metric -> contestant -> samples in round order
	na       map[string]map[string]string   // contestant -> workload -> why it cannot run
	counters map[string]string              // "contestant workload" -> lvsd counters after the last run
}

// sample is one run's outcome for one metric.
type sample struct {
	round int
	m     measurement // valid iff err == ""
	err   string
}

func newResults() *results {
	return &results{
		samples:  map[string]map[string][]sample{},
		na:       map[string]map[string]string{},
		counters: map[string]string{},
	}
}

func (r *results) add(metric, contestant string, s sample) {
	if r.samples[metric] == nil {
		r.samples[metric] = map[string][]sample{}
	}
	r.samples[metric][contestant] = append(r.samples[metric][contestant], s)
}

func (r *results) setNA(contestant, workload, why string) {
	if r.na[contestant] == nil {
		r.na[contestant] = map[string]string{}
	}
	r.na[contestant][workload] = why
}

// rotate returns s rotated left by k: round k starts with its k-th
// contestant, so that no contestant always runs first (or last) in a warm
// or cold machine.
func rotate(s []string, k int) []string {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(append([]string(nil), s[k:]...), s[:k]...)
}

// runRounds runs every round: for each workload, every contestant once, in
// rotating order.
func (b *bench) runRounds() {
	total := 0
	for _, w := range b.f.workloads {
		for _, c := range b.f.only {
			if contestantByName(c).na(b, w) == "" {
				total++
			}
		}
	}
	total *= b.f.rounds
	n := 0
	for round := 0; round < b.f.rounds; round++ {
		for wi, w := range b.f.workloads {
			for _, name := range rotate(b.f.only, round+wi) {
				c := contestantByName(name)
				if why := c.na(b, w); why != "" {
					if round == 0 {
						logf("%-9s %-5s n/a: %s", name, w, why)
					}
					b.res.setNA(name, w, why)
					continue
				}
				n++
				t0 := time.Now()
				line := b.runOne(round, w, c)
				logf("[%d/%d] round %d  %-5s %-9s %s  (%.0fs)", n, total, round+1, w, name, line, time.Since(t0).Seconds())
				if b.ctx.Err() != nil {
					b.s.Fatalf("interrupted")
				}
			}
		}
	}
}

// runOne sets a contestant up, runs one workload, tears the contestant
// down, records the samples and returns a one-line summary.
func (b *bench) runOne(round int, w string, c contestant) string {
	metrics := workloadMetrics(w)
	fail := func(err error) string {
		for _, m := range metrics {
			b.res.add(m, c.name, sample{round: round, err: err.Error()})
		}
		b.evidence = append(b.evidence, fmt.Sprintf("round %d, %s, %s: %v", round+1, w, c.name, err))
		return "FAILED: " + firstLine(err.Error())
	}
	r, err := c.start(b)
	if err != nil {
		return fail(fmt.Errorf("start: %w", err))
	}
	var dev0 devStats
	if r.proc != nil && strings.HasPrefix(c.name, "lvsd") {
		dev0 = b.devStats(r)
	}
	ms, err := b.runWorkload(w, r)
	if r.proc != nil && strings.HasPrefix(c.name, "lvsd") {
		dev1 := b.devStats(r)
		var sb strings.Builder
		if r.ctl != "" {
			if out, cerr := runHost(b.ctx, 10*time.Second, b.bin.Lvsd, "counters", "-control", r.ctl); cerr == nil {
				sb.WriteString(strings.TrimRight(out, "\n") + "\n")
			}
		}
		_, tp := b.lvsdDev(r)
		sb.WriteString(devLine(tp, round, dev0, dev1))
		b.res.counters[c.name+" "+w] = sb.String()
	}
	if err != nil && r.proc != nil {
		err = fmt.Errorf("%w\n%s log (tail):\n%s", err, r.proc.Name, tailString(r.proc.Output(), 3000))
	}
	r.stop()
	if err != nil {
		return fail(err)
	}
	var parts []string
	for _, m := range ms {
		b.res.add(m.metric, c.name, sample{round: round, m: m})
		def := metricDef(m.metric)
		p := fmt.Sprintf("%s %s %s", m.metric, def.format(m.value), def.unit)
		if m.metric == "http" {
			p += fmt.Sprintf(" p50 %.2f ms p99 %.2f ms", m.p50, m.p99)
			if m.errors > 0 {
				p += fmt.Sprintf(" (%d errors)", m.errors)
			}
		}
		if m.cpu.balancer >= 0 {
			p += fmt.Sprintf(", balancer CPU %.2f s", m.cpu.balancer)
		}
		if m.cpu.busy >= 0 {
			p += fmt.Sprintf(", machine busy %.2f s", m.cpu.busy)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// hold sets one contestant up and waits for Ctrl-C.
func (b *bench) hold(name string) {
	r, err := contestantByName(name).start(b)
	if err != nil {
		b.s.Fatalf("%s: %v", name, err)
	}
	defer r.stop()
	logf("%s is up; namespaces %s{dir,cli,rs1,rs2,rs3}; target %s; balancer pid %d; lvsd control %q", name, b.lab.Prefix(), r.target, r.pid, r.ctl)
	logf("Ctrl-C tears the lab down")
	<-b.ctx.Done()
}

// devStats are the kernel's counters of lvsd's device, seen from lvsd:
// toLvsd is what the kernel handed lvsd (a TAP's TX, a veth end's RX; a TAP
// TX drop is a frame lost because lvsd did not read fast enough), fromLvsd
// what lvsd wrote.
type devStats struct {
	toLvsd, toLvsdDropped, fromLvsd, fromLvsdDropped uint64
}

// lvsdDev is the device of lvsd's run r and the namespace holding it.
func (b *bench) lvsdDev(r *running) (lab.NS, *lab.Topology) {
	if r.tp != nil {
		return r.tp.Director, r.tp
	}
	return b.tp.Director, b.tp
}

// devLine describes the counters' difference over one run.
func devLine(tp *lab.Topology, round int, d0, d1 devStats) string {
	if tp.Type == "tap" {
		return fmt.Sprintf("kernel side of %s during the workload (round %d): to lvsd %d frames, %d dropped because lvsd's queue was full; from lvsd %d frames, %d dropped\n",
			tp.Device, round+1, d1.toLvsd-d0.toLvsd, d1.toLvsdDropped-d0.toLvsdDropped, d1.fromLvsd-d0.fromLvsd, d1.fromLvsdDropped-d0.fromLvsdDropped)
	}
	return fmt.Sprintf("kernel counters of %s, lvsd's AF_PACKET veth, during the workload (round %d): received (for lvsd) %d frames; sent (by lvsd) %d frames, %d dropped\n",
		tp.Device, round+1, d1.toLvsd-d0.toLvsd, d1.fromLvsd-d0.fromLvsd, d1.fromLvsdDropped-d0.fromLvsdDropped)
}

func (b *bench) devStats(r *running) devStats {
	ns, tp := b.lvsdDev(r)
	out, err := runHost(b.ctx, cmdTimeout, "ip", "-n", string(ns), "-s", "-j", "link", "show", "dev", tp.Device)
	if err != nil {
		return devStats{}
	}
	var j []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
				Dropped uint64 `json:"dropped"`
			} `json:"rx"`
			TX struct {
				Packets uint64 `json:"packets"`
				Dropped uint64 `json:"dropped"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if json.Unmarshal([]byte(out), &j) != nil || len(j) == 0 {
		return devStats{}
	}
	s := j[0].Stats64
	if tp.Type == "tap" {
		return devStats{s.TX.Packets, s.TX.Dropped, s.RX.Packets, s.RX.Dropped}
	}
	return devStats{s.RX.Packets, s.RX.Dropped, s.TX.Packets, s.TX.Dropped}
}
