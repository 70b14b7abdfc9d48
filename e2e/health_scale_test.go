package e2e

import (
	"fmt"
	"os"
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

// TestHealthScale checks 1000 real servers (one lab server listening on
// 1000 ports) with an http check every second, and measures lvsd's CPU
// for it (no traffic is forwarded meanwhile) and how the probes spread
// over the second.
//
// It takes over a minute and loads the machine, so it runs only with
// LVSD_HEALTH_SCALE=1 (docs/health.md has its figures).
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
	extra := checkTable(`  type = "http"`, `  path = "/health"`, `  interval = "1s"`, `  timeout = "1s"`)
	for i := range n {
		extra = append(extra, "", "  [[virtual_server.real_server]]", fmt.Sprintf("  address = %q", rs1.Addr.String()),
			fmt.Sprintf("  port = %d", first+i))
	}
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
	k0, _ := checks(tp.Status())
	logStart := len(srv.Output())
	time.Sleep(window)
	c1, t1 := cpuTicks(t, p.Pid()), time.Now()
	k1, _ := checks(tp.Status())
	el := t1.Sub(t0).Seconds()
	cpu := float64(c1-c0) / 100 / el * 100 // clock ticks are 1/100 s
	rate := float64(k1-k0) / el
	load, _ := os.ReadFile("/proc/loadavg")
	perCheck := float64(c1-c0) * 10 / float64(k1-k0) // ms of CPU per check
	t.Logf("%d real servers, http check every 1 s: %.0f checks/s, lvsd CPU %.1f%% of one core, %.2f ms per check (load average %s)",
		n+3, rate, cpu, perCheck, strings.Fields(string(load))[0])
	// The machine is shared (8 agents on 2 vCPUs): the rate and the CPU
	// share depend on its load, the CPU per check much less. A starved lvsd
	// checks less often than asked; it must not stop checking.
	if rate < 0.3*float64(n) {
		t.Errorf("%.0f checks/s, want about %d", rate, n+3)
	}
	if perCheck > 1 {
		t.Errorf("lvsd used %.2f ms of CPU per check", perCheck)
	}

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
