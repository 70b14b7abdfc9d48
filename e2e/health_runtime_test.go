package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// TestHealthRuntimeAdd: a real server added at run time with `lvsd adm -a`
// to a service with an http check gets that check. rs3 has no listener
// (its kernel answers SYNs with RSTs) and is added to the service while a
// client sends requests: with alpha it starts out, so no request reaches
// it and every one succeeds; its health shows the http check, down. Once
// its HTTP server starts it comes in and serves, and a reload keeps it and
// its check's monitor. Removed again with `lvsd adm -d`, its check goes
// away.
func TestHealthRuntimeAdd(t *testing.T) {
	lab.Skip(t)
	t.Parallel()
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{})
	servers := tp.StartHTTP(bin, 8080)
	rs3 := tp.Reals[2]
	servers[2].Stop()
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr",
		Extra: checkTable(`  type = "http"`, `  path = "/"`, `  interval = "300ms"`, `  timeout = "1s"`, `  fall = 1`, `  warmup = "100ms"`, `  alpha = true`)}
	lvsd := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
	rs3Addr := rs3.Addr.String() + ":8080"
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
		hs := healthOf(st, "tcp", "198.18.1.100:80")
		if h := hs[rs3Addr]; h == nil || h.State != "down" || h.Checks == 0 {
			return fmt.Sprintf("rs3 from the file not checked down yet: %+v", h)
		}
		return ""
	})
	// rs3 leaves the service at run time, then comes back by -a: a new
	// real server for the running table.
	adm(t, bin, tp, "", "-d", "-t", "198.18.1.100:80", "-r", rs3Addr)
	waitHealth(t, tp, 5*time.Second, func(st *control.Status) string {
		if _, ok := healthOf(st, "tcp", "198.18.1.100:80")[rs3Addr]; ok {
			return "rs3 still listed"
		}
		return ""
	})

	load := make(chan lab.GetResult, 1)
	go func() { load <- tp.Get(bin, vipURL, 40, "-rate", "40") }()
	time.Sleep(200 * time.Millisecond)
	adm(t, bin, tp, "", "-a", "-t", "198.18.1.100:80", "-r", rs3Addr, "-m", "-w", "1")
	st := waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
		h := healthOf(st, "tcp", "198.18.1.100:80")[rs3Addr]
		if h == nil || h.Check != "http" || h.State != "down" || h.Checks == 0 || h.LastResult != "failed" {
			return fmt.Sprintf("rs3 added by adm -a not checked down yet: %+v", h)
		}
		return ""
	})
	t.Logf("rs3 after adm -a: %+v", healthOf(st, "tcp", "198.18.1.100:80")[rs3Addr])
	res := <-load
	if res.OK != 40 || res.Servers[rs3.Name] != 0 {
		t.Fatalf("requests while a dead server was added: %d of 40 ok, %v; errors: %s", res.OK, res.Servers, strings.Join(res.Errors, "; "))
	}
	if got := counts(t, tp, bin, 20); got[rs3.Name] != 0 {
		t.Fatalf("rs3 down but served: %v", got)
	}
	p := l.Start(rs3.NS, "rs3-again", bin.Labserver, "http", "-listen", ":8080", "-name", rs3.Name)
	if err := p.WaitOutput("listening", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
		if h := healthOf(st, "tcp", "198.18.1.100:80")[rs3Addr]; h == nil || h.State != "up" {
			return fmt.Sprintf("rs3 not up yet: %+v", h)
		}
		return ""
	})
	if got := counts(t, tp, bin, 30); got[rs3.Name] != 10 {
		t.Errorf("rs3 up: 30 requests went %v, want 10 to rs3 (rr over three)", got)
	}

	// A reload (SIGHUP, the file unchanged) keeps the runtime server and
	// its check's monitor: its probes go on counting.
	st = waitHealth(t, tp, 5*time.Second, func(*control.Status) string { return "" })
	before := healthOf(st, "tcp", "198.18.1.100:80")[rs3Addr].Checks
	if err := syscall.Kill(lvsd.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := lvsd.WaitOutput("msg=reloaded", 10*time.Second); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitHealth(t, tp, 5*time.Second, func(st *control.Status) string {
		h := healthOf(st, "tcp", "198.18.1.100:80")[rs3Addr]
		if h == nil || h.Check != "http" || h.State != "up" || h.Checks <= before {
			return fmt.Sprintf("rs3 after the reload: %+v, want its http check going on from %d probes", h, before)
		}
		return ""
	})
	adm(t, bin, tp, "", "-d", "-t", "198.18.1.100:80", "-r", rs3Addr)
	waitHealth(t, tp, 5*time.Second, func(st *control.Status) string {
		if _, ok := healthOf(st, "tcp", "198.18.1.100:80")[rs3Addr]; ok {
			return "rs3 still listed after -d"
		}
		return ""
	})
}
