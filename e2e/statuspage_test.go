package e2e

import (
	"context"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lvsd/lvsd/internal/lab"
)

// browser is the headless Chromium the status page test drives (Debian's
// chromium-headless-shell, which `make lab-deps` and .ci/run install).
const browser = "chromium-headless-shell"

// proxyInto listens on the test's own loopback and forwards each
// connection to addr inside ns: the browser runs in the test's namespace
// and reaches the metrics listener of an lvsd in the lab's director
// namespace through it. The listener closes with the test.
func proxyInto(t *testing.T, ns lab.NS, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dial := lab.DialContext(ns)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				u, err := dial(ctx, "tcp", addr)
				cancel()
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{})
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite(); close(done) }()
				io.Copy(c, u)
				c.(*net.TCPConn).CloseWrite()
				<-done
			})
		}
	})
	return ln.Addr().String()
}

// TestStatusPageBrowser opens lvsd's status page in a real headless
// browser: the page loads, shows the lab's service and real servers, and a
// real server's connection-rate plot grows, with non-zero values, while
// HTTP traffic flows through lvsd.
func TestStatusPageBrowser(t *testing.T) {
	lab.Skip(t)
	lab.NeedTools(t, browser)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{})
	withMetrics(tp)
	tp.StartHTTP(bin, 8080)
	tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP)
	page := "http://" + proxyInto(t, tp.Director, metricsAddr) + "/"

	path, _ := execLookPath(browser)
	actx, cancel := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser, which lives as long as its
	// context: no timeout on that one; each step below has its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 30*time.Second) }

	sctx, scancel := step()
	err := chromedp.Do(sctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`table.service`)))
	var services string
	if err == nil {
		services, err = chromedp.Run(sctx, chromedp.Text(chromedp.CSS(`#services`)))
	}
	scancel()
	if err != nil {
		t.Fatalf("load %s: %v", page, err)
	}
	for _, want := range []string{"TCP 198.18.1.100:80 wrr", "198.18.2.11:8080", "198.18.2.12:8080", "198.18.2.13:8080", "nat"} {
		if !strings.Contains(services, want) {
			t.Errorf("the page's services lack %q:\n%s", want, services)
		}
	}

	// rs1's plot: points and the largest connection rate drawn.
	sel := chromedp.CSS(`svg.plot[data-real="tcp 198.18.1.100:80 198.18.2.11:8080"] polyline.cps`)
	plot := func() (points int, top float64) {
		t.Helper()
		sctx, scancel := step()
		defer scancel()
		count, err := chromedp.Run(sctx, chromedp.AttributeValue(sel, "data-count"))
		if err != nil || !count.Exists {
			t.Fatalf("read the plot %s: %v (attribute found: %v)", sel, err, count.Exists)
		}
		max, err := chromedp.Run(sctx, chromedp.AttributeValue(sel, "data-max"))
		if err != nil {
			t.Fatalf("read the plot %s: %v", sel, err)
		}
		points, _ = strconv.Atoi(count.Value)
		top, _ = strconv.ParseFloat(max.Value, 64)
		return points, top
	}
	p0, _ := plot()

	// Traffic for a few sample periods (2 s each) while the page polls.
	tctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for tctx.Err() == nil {
			tp.Get(bin, vipURL, 60)
		}
	})
	var p1 int
	var top float64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		p1, top = plot()
		if p1 >= p0+3 && top > 0 {
			break
		}
	}
	stop()
	wg.Wait()
	t.Logf("rs1's plot: %d points before the traffic, %d during it, top %.1f connections/s", p0, p1, top)
	if p1 < p0+3 {
		t.Errorf("the plot did not grow: %d points, then %d", p0, p1)
	}
	if top <= 0 {
		t.Errorf("the plot shows no connection while traffic flows (top %v)", top)
	}
}

func execLookPath(name string) (string, error) { return exec.LookPath(name) }
