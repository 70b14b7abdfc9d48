package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// loadRun is a paced `labserver get` started in the background.
type loadRun struct {
	done chan struct{}
	out  string
	err  error
}

func startLoad(l *lab.Lab, ns lab.NS, bin lab.Binaries, url string, n int, rate float64) *loadRun {
	r := &loadRun{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.out, r.err = l.TryExec(ns, time.Duration(float64(n)/rate*float64(time.Second))+time.Minute,
			bin.Labserver, "get", "-url", url, "-n", fmt.Sprint(n), "-rate", fmt.Sprint(rate),
			"-timeout", "2s", "-json", "-events")
	}()
	return r
}

func (r *loadRun) wait(t *testing.T) lab.GetResult {
	t.Helper()
	<-r.done
	res, err := lab.ParseGetResult(r.out)
	if err != nil {
		t.Fatalf("load: %v (command: %v)\n%s", err, r.err, r.out)
	}
	return res
}

// failWindow returns the failed requests of res and the time from the
// first to the last of them.
func failWindow(res lab.GetResult) (failed int, first, last float64) {
	first = -1
	for _, e := range res.Events {
		if e.Server == "" {
			failed++
			if first < 0 {
				first = e.T
			}
			last = e.T
		}
	}
	return failed, first, last
}

// TestHealthKillHTTP kills one real server's HTTP server during a steady
// load of Connection: close requests, with an http check every 1 s and
// fall 2: failed requests stop once the check has taken the server out,
// and are at most the load's rate times the detection time. Then the
// server comes back and takes traffic again, ramping up through slow start.
func TestHealthKillHTTP(t *testing.T) {
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	servers := tp.StartHTTP(bin, 8080)
	const (
		interval = time.Second
		fall     = 2
		rate     = 50.0 // requests per second
		n        = 700  // 14 s of load
	)
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "wrr", Extra: append([]string{`slow_start = "4s"`},
		checkTable(`  type = "http"`, `  interval = "1s"`, `  timeout = "500ms"`, `  fall = 2`,
			`  delay_before_retry = "1s"`, `  rise = 1`)...)}
	tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string { return allUp(st, "198.18.1.100:80", 3) })

	load := startLoad(l, tp.Client, bin, vipURL, n, rate)
	time.Sleep(3 * time.Second)
	servers[1].Stop() // rs2
	time.Sleep(4 * time.Second)
	rs2 := tp.Reals[1]
	p := l.Start(rs2.NS, "rs2-http-again", bin.Labserver, "http", "-listen", ":8080", "-name", rs2.Name)
	if err := p.WaitOutput("listening", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	res := load.wait(t)

	failed, first, last := failWindow(res)
	// Detection: the failing check, then its retry after delay_before_retry
	// (here the interval): fall × interval, plus the probe's own time.
	bound := float64(fall)*interval.Seconds() + 0.5
	t.Logf("%d requests at %.0f/s, %d failed, from %.2fs to %.2fs (detection %.2fs, bound %.1fs; rate × bound = %.0f)",
		res.Requests, rate, failed, first, last, last-first, bound, rate*bound)
	if failed == 0 {
		t.Fatal("no request failed: the kill did not happen during the load")
	}
	if last-first > bound+0.3 {
		t.Errorf("requests failed for %.2fs, longer than the detection bound %.1fs", last-first, bound)
	}
	if max := rate * bound; float64(failed) > max {
		t.Errorf("%d failed requests, more than rate × detection time = %.0f", failed, max)
	}

	// rs2 came back: its answers after its return ramp up (slow start 4 s):
	// its share of the first second is below its share of the last two.
	var back float64 = -1
	for _, e := range res.Events {
		if e.T > last && e.Server == "rs2" {
			back = e.T
			break
		}
	}
	if back < 0 {
		t.Fatalf("rs2 took no request after it came back: %v", res.Servers)
	}
	end := res.Events[len(res.Events)-1].T
	share := func(from, to float64) (float64, int) {
		var all, rs int
		for _, e := range res.Events {
			if e.T >= from && e.T < to && e.Server != "" {
				all++
				if e.Server == "rs2" {
					rs++
				}
			}
		}
		if all == 0 {
			return 0, 0
		}
		return float64(rs) / float64(all), all
	}
	early, ne := share(back, back+1)
	late, nl := share(end-2, end+1)
	t.Logf("rs2 back at %.2fs: share %.2f of %d requests in its first second, %.2f of %d in the last two", back, early, ne, late, nl)
	if early >= late || late < 0.2 {
		t.Errorf("no slow start visible: rs2's share %.2f in its first second, %.2f at the end", early, late)
	}
}
