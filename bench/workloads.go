//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// A workload is one kind of traffic; it yields one or more metrics.
var allWorkloads = []struct {
	name    string
	metrics []string
}{
	{"tcp1", []string{"tcp1"}},
	{"tcp4", []string{"tcp4"}},
	{"http", []string{"http"}},
	{"udp", []string{"udp-lossfree", "udp-overload"}},
}

func workloadNames() []string {
	var n []string
	for _, w := range allWorkloads {
		n = append(n, w.name)
	}
	return n
}

func workloadMetrics(w string) []string {
	for _, x := range allWorkloads {
		if x.name == w {
			return x.metrics
		}
	}
	return nil
}

// measurement is what one run of a workload measured for one metric.
type measurement struct {
	metric string
	value  float64 // in the metric's unit
	p50    float64 // http: latency percentiles, ms
	p99    float64
	errors int     // http: socket errors and non-2xx answers
	sent   float64 // udp: offered rate, kpps
	note   string
	cpu    cpuUse // during the measured run
}

// runWorkload runs workload w against a running contestant.
func (b *bench) runWorkload(w string, r *running) ([]measurement, error) {
	switch w {
	case "tcp1":
		return b.runIperf(r, 1)
	case "tcp4":
		return b.runIperf(r, 4)
	case "http":
		return b.runHTTP(r)
	case "udp":
		return b.runUDP(r)
	}
	return nil, fmt.Errorf("unknown workload %q", w)
}

// durationArg formats a duration in seconds for -t / -d arguments.
func secs(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Round(d.Seconds()))))
}

// runIperf runs iperf3 with n parallel streams to the target's iperf3 port
// (the first second omitted) and returns the receiver's throughput.
func (b *bench) runIperf(r *running, streams int) ([]measurement, error) {
	args := []string{"iperf3", "-c", r.target.String(), "-p", strconv.Itoa(iperfPort), "-t", secs(b.f.duration),
		"-O", "1", "-P", strconv.Itoa(streams), "-J"}
	var out string
	var err error
	cpu := b.measureCPU(r, func() {
		out, err = b.exec(b.client(r), b.f.duration+40*time.Second, args...)
	})
	gbps, retr, perr := parseIperf3(out)
	if perr != nil {
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, tailString(out, 1500))
		}
		return nil, perr
	}
	m := measurement{metric: fmt.Sprintf("tcp%d", streams), value: gbps, cpu: cpu, note: fmt.Sprintf("%d retransmits", retr)}
	return []measurement{m}, nil
}

// parseIperf3 reads iperf3's JSON: the received throughput (Gbit/s) and the
// sender's retransmissions.
func parseIperf3(out string) (gbps float64, retransmits int, err error) {
	var j struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
		} `json:"end"`
	}
	i := strings.IndexByte(out, '{')
	if i < 0 {
		return 0, 0, fmt.Errorf("iperf3: no JSON in output: %s", tailString(out, 1000))
	}
	if err := json.Unmarshal([]byte(out[i:]), &j); err != nil {
		return 0, 0, fmt.Errorf("iperf3: %w: %s", err, tailString(out, 1000))
	}
	if j.Error != "" {
		return 0, 0, fmt.Errorf("iperf3: %s", j.Error)
	}
	if j.End.SumReceived.BitsPerSecond <= 0 {
		return 0, 0, fmt.Errorf("iperf3: nothing received")
	}
	return j.End.SumReceived.BitsPerSecond / 1e9, j.End.SumSent.Retransmits, nil
}

// runHTTP runs wrk with Connection: close (a new TCP connection per
// request) against the target's nginx.
func (b *bench) runHTTP(r *running) ([]measurement, error) {
	port := r.port
	if port == 0 {
		port = httpPort
	}
	url := fmt.Sprintf("http://%s:%d/index.html", r.target, port)
	args := []string{"wrk", "-t", "2", "-c", strconv.Itoa(b.f.httpConns), "-d", secs(b.f.duration) + "s",
		"--timeout", "2s", "--latency", "-H", "Connection: close", url}
	var out string
	var err error
	cpu := b.measureCPU(r, func() {
		out, err = b.exec(b.client(r), b.f.duration+40*time.Second, args...)
	})
	w, perr := parseWrk(out)
	if perr != nil {
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, tailString(out, 1500))
		}
		return nil, perr
	}
	m := measurement{metric: "http", value: w.rps, p50: w.p50, p99: w.p99, errors: w.errors, cpu: cpu}
	if w.errors > 0 {
		m.note = w.errText
	}
	return []measurement{m}, nil
}

// wrkResult is what the bench reads from wrk's output.
type wrkResult struct {
	rps      float64
	p50, p99 float64 // ms
	errors   int
	errText  string
}

var (
	wrkRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkSockErr = regexp.MustCompile(`(?m)^\s+Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s+Non-2xx or 3xx responses: (\d+)`)
)

func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return w, fmt.Errorf("wrk: no Requests/sec in output: %s", tailString(out, 1000))
	}
	w.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		switch p[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if p[1] == "50" {
			w.p50 = v
		} else {
			w.p99 = v
		}
	}
	var parts []string
	if e := wrkSockErr.FindStringSubmatch(out); e != nil {
		for _, s := range e[1:] {
			n, _ := strconv.Atoi(s)
			w.errors += n
		}
		parts = append(parts, strings.TrimSpace(e[0]))
	}
	if e := wrkNon2xx.FindStringSubmatch(out); e != nil {
		n, _ := strconv.Atoi(e[1])
		w.errors += n
		parts = append(parts, strings.TrimSpace(e[0]))
	}
	w.errText = strings.Join(parts, "; ")
	return w, nil
}

// udpProbe is one run of the UDP generator at one offered rate.
type udpProbe struct {
	sent, recv float64 // datagrams
	secs       float64
}

func (p udpProbe) offeredKpps() float64   { return p.sent / p.secs / 1000 }
func (p udpProbe) deliveredKpps() float64 { return p.recv / p.secs / 1000 }
func (p udpProbe) loss() float64 {
	if p.sent == 0 {
		return 1
	}
	return math.Max(0, 1-p.recv/p.sent)
}

// udpStreams is the number of generator threads (iperf -P): one iperf 2
// thread sends about 300 kpps of 64-byte datagrams here, two about 500.
const udpStreams = 2

// overloadPPS is the per-thread rate asked for under overload: far above
// what a thread can send, so each sends as fast as it can.
const overloadPPS = 5_000_000

// runUDP measures 64-byte UDP: first the rate delivered to rs1 when the
// generator sends as fast as it can (overload), then the loss-free rate by
// bisection between 0 and the overload's offered rate. Both are counted at
// the receiver (rs1's nftables sink).
func (b *bench) runUDP(r *running) ([]measurement, error) {
	var over udpProbe
	var err error
	cpu := b.measureCPU(r, func() {
		over, err = b.udpProbe(b.client(r), r.target, overloadPPS, b.f.duration)
	})
	if err != nil {
		return nil, err
	}
	if over.recv == 0 {
		return nil, fmt.Errorf("udp: nothing reached the receiver (%.0f datagrams sent)", over.sent)
	}
	if over.deliveredKpps() < 10 {
		// Seen once in a full run (lvsd-nat): record what the client's
		// neighbour table and lvsd's TAP said.
		neigh, _ := b.exec(b.client(r), cmdTimeout, "ip", "neigh", "show")
		t := b.devStats(r)
		_, tp := b.lvsdDev(r)
		b.observations = append(b.observations, fmt.Sprintf(
			"udp overload to %s delivered only %.1f kpps of %.0f kpps offered. Client neighbours: %s. %s since it was attached: to lvsd %d frames, %d dropped",
			r.target, over.deliveredKpps(), over.offeredKpps(), strings.ReplaceAll(strings.TrimSpace(neigh), "\n", "; "), tp.Device, t.toLvsd, t.toLvsdDropped))
	}
	overM := measurement{metric: "udp-overload", value: over.deliveredKpps(), sent: over.offeredKpps(), cpu: cpu,
		note: fmt.Sprintf("offered %.0f kpps, %.1f%% lost", over.offeredKpps(), 100*over.loss())}

	// Bisection over the offered rate; each step a shorter run.
	step := udpStep(b.f.duration)
	lo, hi := 0.0, over.offeredKpps()*1000 // target pps
	best := udpProbe{}
	free := measurement{metric: "udp-lossfree", cpu: cpuUse{balancer: -1, system: -1, busy: -1, helpers: -1}}
	if over.loss() <= b.f.lossFree {
		best = over
		free.note = "no loss at the generator's top rate: the generator is the limit"
	} else {
		for i := 0; i < 7 && b.ctx.Err() == nil; i++ {
			rate := (lo + hi) / 2
			p, err := b.udpProbe(b.client(r), r.target, int(rate/udpStreams), step)
			if err != nil {
				return nil, err
			}
			if b.f.verbose {
				logf("  udp step %d: asked %.0f kpps, sent %.0f kpps, received %.0f kpps, loss %.3f%%", i+1, rate/1000, p.offeredKpps(), p.deliveredKpps(), 100*p.loss())
			}
			if p.loss() <= b.f.lossFree {
				lo = rate
				if best.secs == 0 || p.offeredKpps() > best.offeredKpps() {
					best = p
				}
			} else {
				hi = rate
			}
		}
		free.note = fmt.Sprintf("bisection, %s steps, loss <= %.2g%%", step, 100*b.f.lossFree)
	}
	free.value = best.offeredKpps()
	free.sent = best.offeredKpps()
	if best.secs == 0 {
		free.value = 0
	}
	return []measurement{free, overM}, nil
}

// udpStep is the length of one step of the loss-free search for runs of d:
// a quarter of d, at least 1 s (the search's 7 steps take 1.4 runs' time).
// At 200 kpps a 1.25 s step carries 250,000 datagrams, so the 0.1% loss
// threshold is 250 of them: well above a counting error.
func udpStep(d time.Duration) time.Duration { return max(time.Second, d/4) }

// udpProbe sends 64-byte datagrams from the client to target:9 with iperf
// 2 (udpStreams threads at perThreadPPS each, for d), and counts what rs1's
// sink received.
func (b *bench) udpProbe(client lab.NS, target netip.Addr, perThreadPPS int, d time.Duration) (udpProbe, error) {
	before, err := b.sinkCount()
	if err != nil {
		return udpProbe{}, err
	}
	args := []string{"iperf", "-c", target.String(), "-p", strconv.Itoa(udpPort), "-u", "-l", "64",
		"-b", fmt.Sprintf("%dpps", max(1, perThreadPPS)), "-P", strconv.Itoa(udpStreams), "-t", fmt.Sprintf("%g", d.Seconds()), "--no-udp-fin"}
	out, runErr := b.exec(client, d+40*time.Second, args...)
	sent, secs, perr := parseIperf2(out)
	if perr != nil {
		if runErr != nil {
			return udpProbe{}, fmt.Errorf("%w: %s", runErr, tailString(out, 1500))
		}
		return udpProbe{}, perr
	}
	// Let what is still queued (in lvsd, in the backlog) arrive.
	time.Sleep(300 * time.Millisecond)
	after, err := b.sinkCount()
	if err != nil {
		return udpProbe{}, err
	}
	if secs <= 0 {
		secs = d.Seconds()
	}
	return udpProbe{sent: sent, recv: float64(after - before), secs: secs}, nil
}

var (
	iperf2Sent   = regexp.MustCompile(`(?m)^\[\s*(\d+|SUM[-0-9]*)\]\s+Sent (\d+) datagrams`)
	iperf2Period = regexp.MustCompile(`(?m)^\[\s*(?:\d+)\]\s+0\.0+-([0-9.]+) sec`)
)

// parseIperf2 reads the datagrams sent (the SUM line, or the sum of the
// threads' lines) and the longest thread's sending time from iperf 2.
func parseIperf2(out string) (sent, secs float64, err error) {
	var sum, threads float64
	haveSum := false
	n := 0
	for _, m := range iperf2Sent.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if strings.HasPrefix(m[1], "SUM") {
			sum, haveSum = v, true
		} else {
			threads += v
			n++
		}
	}
	if n == 0 && !haveSum {
		return 0, 0, fmt.Errorf("iperf: no \"Sent N datagrams\" in output: %s", tailString(out, 1000))
	}
	sent = threads
	if haveSum {
		sent = sum
	}
	for _, m := range iperf2Period.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		secs = math.Max(secs, v)
	}
	return sent, secs, nil
}

var nftPackets = regexp.MustCompile(`packets (\d+)`)

// sinkCount reads rs1's sink counter.
func (b *bench) sinkCount() (uint64, error) {
	out, err := b.exec(b.tp.Reals[0].NS, cmdTimeout, "nft", "list", "counter", "ip", sinkTable, "rx")
	if err != nil {
		return 0, fmt.Errorf("udp sink: %w: %s", err, out)
	}
	m := nftPackets.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("udp sink: no packet count in %q", out)
	}
	return strconv.ParseUint(m[1], 10, 64)
}
