package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// TestHealthReuseConnection: an http check with reuse_connection sends its
// GETs on one kept connection (each real server's HTTP server sees many
// checks from one client port), the servers stay up and serve traffic, and
// a server whose HTTP server is stopped (its kept connection closed, new
// ones refused) is taken down within its fall, and comes back when it is
// started again.
func TestHealthReuseConnection(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	servers := tp.StartHTTP(bin, 8080)
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr",
		Extra: checkTable(`  type = "http"`, `  path = "/health"`, `  interval = "200ms"`, `  fall = 2`,
			`  delay_before_retry = "200ms"`, `  warmup = "100ms"`, `  reuse_connection = true`)}
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
	const checks = 10
	waitHealth(t, tp, 15*time.Second, func(st *control.Status) string {
		if why := allUp(st, "198.18.1.100:80", 3); why != "" {
			return why
		}
		for ra, h := range healthOf(st, "tcp", "198.18.1.100:80") {
			if h.Checks < checks {
				return fmt.Sprintf("%s: %d checks", ra, h.Checks)
			}
		}
		return ""
	})
	for i, s := range servers {
		ports := checkPorts(s.Output())
		n := 0
		for _, c := range ports {
			n += c
		}
		// Well within maxConnAge (30 s): one connection.
		if n < checks || len(ports) != 1 {
			t.Errorf("%s: %d checks from %d client ports %v, want at least %d from one", tp.Reals[i].Name, n, len(ports), ports, checks)
		}
	}
	if res := tp.Get(bin, vipURL, 6); res.OK != 6 || res.Servers["rs2"] != 2 {
		t.Fatalf("with every server up: %d ok, %v", res.OK, res.Servers)
	}

	rs2 := tp.Reals[1]
	servers[1].Stop()
	stopped := time.Now()
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
		if h := healthOf(st, "tcp", "198.18.1.100:80")[rs2.Addr.String()+":8080"]; h == nil || h.State != "down" {
			return fmt.Sprintf("rs2 not down yet: %+v", h)
		}
		return ""
	})
	// fall 2 at 200 ms (the retry delay after the first failure), plus a
	// status poll: well under 2 s on a quiet machine.
	t.Logf("rs2 down %v after its server stopped", time.Since(stopped).Round(time.Millisecond))
	if !strings.Contains(p.Output(), "real server down") {
		t.Errorf("no down line in lvsd's log")
	}
	if res := tp.Get(bin, vipURL, 6); res.OK != 6 || res.Servers["rs2"] != 0 {
		t.Errorf("rs2 down: %d ok, %v; want 6, none from rs2", res.OK, res.Servers)
	}

	again := l.Start(rs2.NS, "rs2-again", bin.Labserver, "http", "-listen", ":8080", "-name", rs2.Name)
	if err := again.WaitOutput("listening", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
		if h := healthOf(st, "tcp", "198.18.1.100:80")[rs2.Addr.String()+":8080"]; h == nil || h.State != "up" {
			return "rs2 not up yet"
		}
		return ""
	})
	time.Sleep(time.Second)
	if ports := checkPorts(again.Output()); len(ports) != 1 {
		t.Errorf("rs2 back: checks from %d client ports %v, want one kept connection", len(ports), ports)
	}
}

// checkPorts counts a lab HTTP server's GET /health lines by the client's
// address (one per connection).
func checkPorts(log string) map[string]int {
	ports := make(map[string]int)
	for line := range strings.Lines(log) {
		if _, after, ok := strings.Cut(line, "GET /health from "); ok {
			ports[strings.TrimSpace(after)]++
		}
	}
	return ports
}
