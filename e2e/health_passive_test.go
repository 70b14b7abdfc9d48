package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// TestHealthPassive kills one of three real servers' HTTP server (its
// kernel then answers SYNs with RST) during a steady load of
// Connection: close requests, with no active check, twice: without
// passive detection every request scheduled to it fails until the end of
// the load; with passive detection (3 failures, observed every 2 s) the
// failed requests stop within the observation period and number far
// fewer.
func TestHealthPassive(t *testing.T) {
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	const (
		rate = 50.0 // requests per second
		n    = 500  // 10 s of load
		kill = 3 * time.Second
	)
	run := func(t *testing.T, passive bool) (failed int, first, last float64, st *control.Status) {
		l := lab.New(t)
		tp := l.NATLab(lab.Options{})
		servers := tp.StartHTTP(bin, 8080)
		svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr"}
		if passive {
			svc.Extra = []string{"", "  [virtual_server.passive]", "  enabled = true", "  failures = 3",
				`  interval = "10s"`, `  base_ejection_time = "60s"`}
		}
		tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
		waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
			if hs := healthOf(st, "tcp", "198.18.1.100:80"); len(hs) != 3 {
				return fmt.Sprintf("%d real servers, want 3", len(hs))
			}
			return ""
		})
		load := startLoad(l, tp.Client, bin, vipURL, n, rate)
		time.Sleep(kill)
		servers[1].Stop() // rs2
		res := load.wait(t)
		failed, first, last = failWindow(res)
		t.Logf("passive=%v: %d requests at %.0f/s, %d failed, from %.2fs to %.2fs; by server %v",
			passive, res.Requests, rate, failed, first, last, res.Servers)
		if failed == 0 {
			t.Fatal("no request failed: the kill did not happen during the load")
		}
		return failed, first, last, waitHealth(t, tp, 5*time.Second, func(*control.Status) string { return "" })
	}

	// Both labs at once (each is mostly waiting); the comparison of their
	// failures waits for both.
	var offFailed, onFailed int
	t.Run("labs", func(t *testing.T) {
		t.Run("off", func(t *testing.T) {
			t.Parallel()
			failed, first, last, _ := run(t, false)
			offFailed = failed
			// Every third request fails from the kill to the end of the load.
			if end := float64(n) / rate; last < end-1 {
				t.Errorf("without detection the failures stopped at %.2fs of %.0fs (first %.2fs)", last, end, first)
			}
		})
		t.Run("on", func(t *testing.T) {
			t.Parallel()
			failed, first, last, st := run(t, true)
			onFailed = failed
			// Detection: 3 failures (a tenth of a second at this rate), then
			// the next observation, at most conntrack.EstimateInterval (2 s)
			// later, and the change's own time.
			const bound = 2.5
			if last-first > bound {
				t.Errorf("requests failed for %.2fs, longer than the detection bound %.1fs", last-first, bound)
			}
			if max := rate / 3 * bound; float64(failed) > max {
				t.Errorf("%d failed requests, more than rs2's rate × detection time = %.0f", failed, max)
			}
			var ejected []string
			for ra, h := range healthOf(st, "tcp", "198.18.1.100:80") {
				if h != nil && h.Passive != nil && h.Passive.State == "ejected" {
					ejected = append(ejected, ra)
					if h.Passive.Failures < 3 || h.Passive.Ejections != 1 || h.Passive.EjectionsTotal != 1 || h.State != "down" {
						t.Errorf("%s: %+v %+v", ra, h, h.Passive)
					}
				}
			}
			if len(ejected) != 1 {
				t.Errorf("ejected real servers %v, want rs2 alone", ejected)
			}
		})
	})
	if offFailed > 0 && onFailed*2 > offFailed {
		t.Errorf("%d failed requests with passive detection, %d without: not fewer than half", onFailed, offFailed)
	}
}
