package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// cpuTicks returns the user+system CPU time of pid in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// sysCalls returns the read and write system calls pid made so far
// (/proc/PID/io's syscr and syscw): on a TUN each frame is one call.
func sysCalls(t *testing.T, pid int) (r, w int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			r = n
		case "syscw":
			w = n
		}
	}
	return r, w
}

// ctxSwitches returns the context switches of every thread of pid so far
// (voluntary and not): each is a thread that slept and woke, or was
// preempted.
func ctxSwitches(t *testing.T, pid int) int64 {
	t.Helper()
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, d.Name()))
		if err != nil {
			continue // the thread ended
		}
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// TestHealthScale checks 1000 real servers (one lab server listening on
// 1000 ports) with an http check every second, and measures lvsd's CPU
// for it (no traffic is forwarded meanwhile) and how the probes spread
// over the second.
//
// It takes over a minute and loads the machine, so it runs only with
// LVSD_HEALTH_SCALE=1 (docs/health.md has its figures); with
// LVSD_HEALTH_SCALE_REUSE=1 as well, the checks keep their connections
// (reuse_connection).
func TestHealthScale(t *testing.T) {
	lab.Skip(t)
	if os.Getenv("LVSD_HEALTH_SCALE") == "" {
		t.Skip("set LVSD_HEALTH_SCALE=1 to measure 1000 health checks a second")
	}
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	const n, first = 1000, 10000
	rs1 := tp.Reals[0]
	srv := l.Start(rs1.NS, "rs1-many", bin.Labserver, "http", "-listen", fmt.Sprintf(":%d", first), "-ports", fmt.Sprint(n), "-name", "many")
	if err := srv.WaitOutput("listening", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// The default timeout (3 s): on a loaded machine a 1 s timeout lets a
	// SYN lost in a full backlog fail a check, and the state changes that
	// follow cost more than the checks.
	extra := checkTable(`  type = "http"`, `  path = "/health"`, `  interval = "1s"`)
	reuse := os.Getenv("LVSD_HEALTH_SCALE_REUSE") != ""
	if reuse {
		// The same checks with a kept connection each (reuse_connection).
		extra = append(extra, `  reuse_connection = true`)
	}
	for i := range n {
		extra = append(extra, "", "  [[virtual_server.real_server]]", fmt.Sprintf("  address = %q", rs1.Addr.String()),
			fmt.Sprintf("  port = %d", first+i))
	}
	withMetrics(tp) // the Go runtime's allocation and GC counters
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, lab.Service{Port: 80, RealPort: 8080, Scheduler: "wrr", Extra: extra})
	checks := func(st *control.Status) (sum uint64, up int) {
		for _, s := range st.Services {
			for _, r := range s.Reals {
				if r.Health != nil {
					sum += r.Health.Checks
					if r.Health.State == "up" && r.Health.Checks > 0 {
						up++
					}
				}
			}
		}
		return sum, up
	}
	waitHealth(t, tp, 30*time.Second, func(st *control.Status) string {
		if _, up := checks(st); up < n+3 {
			return fmt.Sprintf("%d of %d real servers checked and up", up, n+3)
		}
		return ""
	})
	time.Sleep(2 * time.Second)

	const window = 20 * time.Second
	c0, t0 := cpuTicks(t, p.Pid()), time.Now()
	r0, w0 := sysCalls(t, p.Pid())
	x0 := ctxSwitches(t, p.Pid())
	m0, err0 := scrape(tp)
	k0, _ := checks(tp.Status())
	logStart := len(srv.Output())
	lvsdLog := len(p.Output())
	if out := os.Getenv("LVSD_HEALTH_SCALE_PERF"); out != "" {
		// A profile of lvsd over the window, for finding what a check
		// costs (perf must be installed; it adds its own overhead).
		cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", fmt.Sprint(p.Pid()), "-o", out,
			"--", "sleep", fmt.Sprint(window.Seconds()))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Logf("perf: %v: %s", err, b)
		}
	} else {
		time.Sleep(window)
	}
	c1, t1 := cpuTicks(t, p.Pid()), time.Now()
	r1, w1 := sysCalls(t, p.Pid())
	x1 := ctxSwitches(t, p.Pid())
	m1, err1 := scrape(tp)
	k1, _ := checks(tp.Status())
	el := t1.Sub(t0).Seconds()
	cpu := float64(c1-c0) / 100 / el * 100 // clock ticks are 1/100 s
	rate := float64(k1-k0) / el
	load, _ := os.ReadFile("/proc/loadavg")
	perCheck := float64(c1-c0) * 10 / float64(k1-k0) // ms of CPU per check
	t.Logf("%d real servers, http check every 1 s (reuse_connection %t): %.0f checks/s, lvsd CPU %.1f%% of one core, %.3f ms per check (load average %s)",
		n+3, reuse, rate, cpu, perCheck, strings.Fields(string(load))[0])
	t.Logf("per check: %.1f read and %.1f write system calls, %.1f context switches",
		float64(r1-r0)/float64(k1-k0), float64(w1-w0)/float64(k1-k0), float64(x1-x0)/float64(k1-k0))
	// Allocations and collections do not depend on the machine's load as
	// the CPU does. (The two scrapes of /metrics are counted too: a few
	// thousand allocations against twenty thousand checks.)
	if err := errors.Join(err0, err1); err != nil {
		// A starved lvsd may answer too late: the figures below are extras.
		t.Logf("metrics: %v", err)
	} else {
		delta := func(name string) float64 { return m1[name] - m0[name] }
		t.Logf("per check: %.0f allocations, %.0f bytes; %.1f garbage collections a second",
			delta("go_memstats_mallocs_total")/float64(k1-k0), delta("go_memstats_alloc_bytes_total")/float64(k1-k0),
			delta("go_gc_duration_seconds_count")/el)
	}
	// The machine is shared (8 agents on 2 vCPUs): the rate and the CPU
	// share depend on its load, the CPU per check much less. A starved lvsd
	// checks less often than asked; it must not stop checking.
	if rate < 0.3*float64(n) {
		t.Errorf("%.0f checks/s, want about %d", rate, n+3)
	}
	if perCheck > 1 {
		t.Errorf("lvsd used %.2f ms of CPU per check", perCheck)
	}

	// A server that fails its checks (a starved lvsd's probes time out)
	// changes state, and each change rebuilds the running table: count
	// them, they cost more than the checks.
	downs := 0
	var firstDown string
	for line := range strings.Lines(p.Output()[lvsdLog:]) {
		if strings.Contains(line, "real server down") {
			if downs == 0 {
				firstDown = line
			}
			downs++
		}
	}
	t.Logf("%d real servers went down during the measure %s", downs, strings.TrimSpace(firstDown))

	// Spread: the probes' arrival times within the second, in 10 bins.
	var bins [10]int
	total := 0
	for line := range strings.Lines(srv.Output()[logStart:]) {
		if !strings.Contains(line, "GET /health") {
			continue
		}
		ts, err := time.Parse("15:04:05.000000", strings.Fields(line)[0])
		if err != nil {
			continue
		}
		bins[ts.Nanosecond()/100_000_000]++
		total++
	}
	maxBin := 0
	for _, b := range bins {
		maxBin = max(maxBin, b)
	}
	t.Logf("probes per 100 ms of the second: %v (%d in all)", bins, total)
	if total == 0 || float64(maxBin) > 2*float64(total)/10 {
		t.Errorf("probes bunch up within the second: %v", bins)
	}
}
