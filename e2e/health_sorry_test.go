package e2e

import (
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// TestHealthSorryServer: while every real server is down the sorry server
// (a lab server on another port of rs1) answers; when one comes back it
// takes the traffic again.
func TestHealthSorryServer(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	servers := tp.StartHTTP(bin, 8080)
	rs1 := tp.Reals[0]
	sorry := l.Start(rs1.NS, "sorry", bin.Labserver, "http", "-listen", ":9090", "-name", "sorry")
	if err := sorry.WaitOutput("listening", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "wrr",
		Extra: append([]string{`sorry_server = "` + rs1.Addr.String() + `:9090"`},
			checkTable(`  type = "tcp"`, `  interval = "300ms"`, `  fall = 1`, `  warmup = "100ms"`)...)}
	tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string { return allUp(st, "198.18.1.100:80", 3) })
	if res := tp.Get(bin, vipURL, 6); res.OK != 6 || res.Servers["sorry"] != 0 {
		t.Fatalf("with every server up: %+v", res.Servers)
	}
	for _, s := range servers {
		s.Stop()
	}
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
		for ra, h := range healthOf(st, "tcp", "198.18.1.100:80") {
			if h == nil || h.State != "down" {
				return ra + " not down yet"
			}
		}
		return ""
	})
	res := tp.Get(bin, vipURL, 6)
	if res.OK != 6 || res.Servers["sorry"] != 6 {
		t.Errorf("every server down: %d ok, %v; want 6 from the sorry server", res.OK, res.Servers)
	}
	rs2 := tp.Reals[1]
	p := l.Start(rs2.NS, "rs2-again", bin.Labserver, "http", "-listen", ":8080", "-name", rs2.Name)
	if err := p.WaitOutput("listening", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
		if h := healthOf(st, "tcp", "198.18.1.100:80")[rs2.Addr.String()+":8080"]; h == nil || h.State != "up" {
			return "rs2 not up yet"
		}
		return ""
	})
	res = tp.Get(bin, vipURL, 6)
	if res.OK != 6 || res.Servers["rs2"] != 6 {
		t.Errorf("rs2 back: %d ok, %v; want 6 from rs2", res.OK, res.Servers)
	}
}
