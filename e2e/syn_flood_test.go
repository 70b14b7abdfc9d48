package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// envInt returns the environment variable key as an integer >= 0, or def.
func envInt(t *testing.T, key string, def int) int {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		t.Fatalf("%s=%q: want an integer >= 0", key, s)
	}
	return v
}

// synproxyPort is the lab's service with the SYN proxy on.
const synproxyPort = 81

// synfloodPort runs labserver synflood in the client namespace against
// VIP:port at rate frames per second (0: as fast as it goes) for d, and
// returns the frames it sent.
func synfloodPort(t *testing.T, l *lab.Lab, tp *lab.Topology, bin lab.Binaries, port, rate int, d time.Duration) int64 {
	t.Helper()
	out, err := l.TryExec(tp.Client, d+30*time.Second, bin.Labserver, "synflood",
		"-dev", lab.GuestLink, "-dst-mac", tp.MAC, "-dst", lab.VIP.String(), "-port", strconv.Itoa(port),
		"-rate", strconv.Itoa(rate), "-duration", d.String(), "-count", "100000000")
	if err != nil {
		t.Errorf("synflood: %v: %s", err, out)
		return 0
	}
	var rep struct{ Sent int64 }
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Errorf("synflood report %q: %v", out, err)
	}
	return rep.Sent
}

// TestSYNFloodEstablished floods the VIP of an AF_PACKET NAT lab with SYNs
// from random sources of 198.18.4.0-198.19.255.255 (a real process sending
// raw frames from the client namespace) while a 200 Mbit/s download,
// paced by its reader, runs through the VIP, and a client opens a new
// connection every 100 ms. The download must keep at least half its rate
// in every second, at least 90 % of the new connections must succeed, the
// table stays within its limit and lvsd's RSS within 256 MiB, the kernel
// drops nothing of the established queue, no frame is dropped for want of
// a real server's MAC (no-neighbor), and after the flood new connections
// all succeed. Before it, on the empty table, a 1 s flood of the lab's
// SYN-proxy service (synproxyFlood) must create no entry while transfers
// and new connections through it succeed.
//
// The flood's rate is a multiple of the rate that saturates lvsd's
// reader, measured first: a flood as fast as the generator goes, with
// nothing else running, of which lvsd takes in at most R SYNs per second over any half second (1.5 s).
// The flood then runs at LVSD_FLOOD_X times R (3 by default); the test
// logs the multiple it reached (SYNs sent over SYNs taken in, which varies
// with the machine's load) and fails if the flood did not saturate the
// reader (the kernel dropped no SYN). LVSD_FLOOD_RATE sets a rate (frames
// per second, 0 = as fast as the generator goes) instead, and
// LVSD_FLOOD_SECONDS the flood's length (5 s by default; the figures in
// docs/defence.md are of 30 s runs).
func TestSYNFloodEstablished(t *testing.T) {
	lab.Skip(t)
	fixedRate := os.Getenv("LVSD_FLOOD_RATE") != ""
	rate := envInt(t, "LVSD_FLOOD_RATE", 0)
	times := envInt(t, "LVSD_FLOOD_X", 3)
	flood := time.Duration(max(envInt(t, "LVSD_FLOOD_SECONDS", 5), 1)) * time.Second
	const (
		maxConns  = 200_000
		maxRSS    = 256 << 20
		pace      = 25_000_000 // bytes per second: 200 Mbit/s
		before    = 2 * time.Second
		after     = 3 * time.Second
		newEvery  = 100 * time.Millisecond
		newWithin = 5 * time.Second // SYN retransmissions at 1 s and 3 s
	)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{Packet: true})
	tp.StartHTTP(bin, 8080)
	tp.Globals = []string{"[connections]", fmt.Sprintf("max = %d", maxConns)}
	lvsd := tp.StartLvsd(bin, lab.LvsdOptions{}, lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr"},
		lab.Service{Port: synproxyPort, RealPort: 8080, Scheduler: "rr", Extra: []string{"synproxy = true"}})

	synflood := func(rate int, d time.Duration) (sent int64) {
		return synfloodPort(t, l, tp, bin, 80, rate, d)
	}
	newConns := func() (n uint64) {
		for _, i := range tp.Status().Interfaces {
			n += i.NewConns
		}
		return n
	}
	synDropped := func() (n uint64) {
		for _, i := range tp.Status().Interfaces {
			n += i.KernelSYN
		}
		return n
	}
	// The control socket may come up just after the VIP answers.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(tp.Control); err == nil {
			break
		}
	}
	// The SYN proxy's service first, on an empty table.
	synproxyFlood(t, l, tp, bin, time.Second, newEvery/2, newWithin)
	// Every real server has been used (rr over some 20 connections): its
	// MAC is known. A frame dropped as no-neighbor from here on is one
	// whose MAC lvsd forgot (and could not resolve again).
	noNeighbor := func(st *control.Status) (n uint64) {
		for _, i := range st.Interfaces {
			n += i.Drops["no-neighbor"]
		}
		return n
	}
	baseStatus := tp.Status()
	if !fixedRate {
		// The saturating rate: what lvsd takes in of a flood it cannot.
		// (Not the SYN proxy's: a SYN it answers costs less than one that
		// makes an entry, and a flood at three times that rate is one
		// lvsd takes in a sixth of, which is not the test's 3×.)
		// R is the fastest lvsd took SYNs in over half a second of it,
		// sampled every 100 ms: the flood's start (the generator's exec
		// on a loaded machine), the table's growth in the first second
		// and what lvsd reads after the generator stopped do not dilute
		// it, as they did the 2 s average (a 1.0× flood, not 3×).
		before := newConns()
		done := make(chan int64, 1)
		go func() { done <- synflood(0, 1500*time.Millisecond) }()
		type sample struct {
			at time.Time
			n  uint64
		}
		var samples []sample
		var sent int64
	poll:
		for {
			samples = append(samples, sample{time.Now(), newConns()})
			select {
			case sent = <-done:
				break poll
			case <-time.After(100 * time.Millisecond):
			}
		}
		taken := newConns() - before
		var best float64
		for i := range samples {
			for j := i + 1; j < len(samples); j++ {
				if d := samples[j].at.Sub(samples[i].at); d >= 500*time.Millisecond {
					best = max(best, float64(samples[j].n-samples[i].n)/d.Seconds())
					break
				}
			}
		}
		rate = times * int(best)
		t.Logf("saturating rate: lvsd took in %.0f SYNs a second at most (%d of %d in 1.5 s); flooding at %d times that, %d/s", best, taken, sent, times, rate)
		if rate == 0 || uint64(sent) < taken*5/4 {
			t.Fatalf("the 1.5 s flood (%d SYNs) did not saturate lvsd (%d taken in)", sent, taken)
		}
		time.Sleep(500 * time.Millisecond) // the SYN queue drains in less
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// The download, read at 200 Mbit/s: a token bucket refilled every
	// 10 ms that holds at most 50 ms of credit, so that a stall is not
	// made up for afterwards. perSec[i] is the bytes read in second i.
	total := before + flood + after + time.Second
	perSec := make([]atomic.Int64, int(total/time.Second)+1)
	start := time.Now()
	var dlErr atomic.Value
	hc := &http.Client{Transport: &http.Transport{DialContext: lab.DialContext(tp.Client)}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%sbytes?n=%d", vipURL, int64(pace)*int64(total/time.Second+2)), nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	defer resp.Body.Close()
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		credit := 0
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			credit = min(credit+pace/100, pace/20)
			for credit > 0 {
				n, err := resp.Body.Read(buf[:min(len(buf), credit)])
				credit -= n
				if s := int(time.Since(start) / time.Second); s < len(perSec) {
					perSec[s].Add(int64(n))
				}
				if err != nil {
					if ctx.Err() == nil {
						dlErr.Store(err.Error())
					}
					return
				}
			}
		}
	})

	// New connections, one every 100 ms, each with 5 s to complete.
	type attempt struct {
		at  time.Duration
		err error
	}
	var amu sync.Mutex
	var attempts []attempt
	nc := &http.Client{Timeout: newWithin, Transport: &http.Transport{DialContext: lab.DialContext(tp.Client), DisableKeepAlives: true}}
	wg.Go(func() {
		tick := time.NewTicker(newEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			at := time.Since(start)
			if at > total-time.Second {
				return
			}
			wg.Go(func() {
				r, err := nc.Get(vipURL)
				if err == nil {
					_, err = io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
				amu.Lock()
				attempts = append(attempts, attempt{at, err})
				amu.Unlock()
			})
		}
	})

	// The flood.
	time.Sleep(before - time.Since(start))
	floodStart := time.Since(start)
	var rep struct {
		Sent    int64
		Seconds float64
	}
	baseNew, baseDrops := newConns(), synDropped()
	rep.Sent = synflood(rate, flood)
	rep.Seconds = flood.Seconds()
	floodEnd := time.Since(start)
	during := tp.Status()
	rss := lab.RSS(lvsd.Pid())
	time.Sleep(after + time.Second)
	cancel()
	// Seconds of the download that ended before cancel: the last one
	// that did not is cut short.
	whole := min(int(time.Since(start)/time.Second), len(perSec))
	wg.Wait()
	resp.Body.Close()
	afterStatus := tp.Status()

	// What lvsd took in of the flood: the connections it created (the
	// flood's, and the 100 or so of the test's own clients).
	var taken uint64
	for _, i := range during.Interfaces {
		taken += i.NewConns
	}
	taken -= baseNew
	ratio := float64(rep.Sent) / float64(max(taken, 1))
	t.Logf("flood: %d SYNs in %.0f s (%.0f/s, rate %d/s, 0 = as fast as it goes); lvsd took in %d (%.0f/s): the flood is %.1f times that",
		rep.Sent, rep.Seconds, float64(rep.Sent)/rep.Seconds, rate, taken, float64(taken)/rep.Seconds, ratio)
	t.Logf("before the flood (the SYN proxy's and the measuring flood): %d new connections, %d SYNs dropped by the kernel", baseNew, baseDrops)
	var synDrops uint64
	for _, i := range during.Interfaces {
		synDrops += i.KernelSYN
	}
	synDrops -= baseDrops
	// Saturated: the reader left SYNs for the kernel to drop.
	if (!fixedRate || rate == 0) && synDrops == 0 {
		t.Errorf("the flood (%d SYNs) did not saturate lvsd's reader (%d taken in, none dropped): the test proves nothing", rep.Sent, taken)
	}
	t.Logf("table during: %d/%d (%d unestablished, %d evicted, %d refused); RSS %d MiB", during.Connections, during.Table.Max,
		during.Table.Unestablished, during.Table.Evicted, during.Table.Refused, rss>>20)
	for _, i := range during.Interfaces {
		t.Logf("interface %s: rx %d, new %d, dropped by the kernel before lvsd read them: %d established, %d SYN",
			i.Name, i.RxFrames, i.NewConns, i.KernelDrops, i.KernelSYN)
		// The flood overflows its own queue, never the other.
		if i.KernelDrops != 0 {
			t.Errorf("interface %s: the kernel dropped %d frames of the established queue", i.Name, i.KernelDrops)
		}
	}
	// The real servers all answer: a flood that fills the queues must not
	// make lvsd forget their MACs (docs/defence.md).
	t.Logf("neighbours: %d lost, %d failed, %d unconfirmed; %d frames dropped as no-neighbor before the floods of the plain service",
		afterStatus.Neighbors.Lost, afterStatus.Neighbors.Failed, afterStatus.Neighbors.Unconfirmed, noNeighbor(baseStatus))
	if n := noNeighbor(afterStatus) - noNeighbor(baseStatus); n != 0 {
		t.Errorf("%d frames dropped as no-neighbor during the floods, with every real server answering", n)
	}
	if v := dlErr.Load(); v != nil {
		t.Errorf("download failed: %v", v)
	}
	var secs []string
	for s := range whole {
		b := perSec[s].Load()
		secs = append(secs, fmt.Sprintf("%d:%.0f", s, float64(b)*8/1e6))
		if b < pace/2 && s > 0 {
			in := time.Duration(s)*time.Second+time.Second > floodStart && time.Duration(s)*time.Second < floodEnd
			t.Errorf("second %d (flood %v): %.0f Mbit/s, under half of 200", s, in, float64(b)*8/1e6)
		}
	}
	t.Logf("download Mbit/s by second: %s", strings.Join(secs, " "))
	// After the flood: its rate again (logged; each second is judged above
	// with the others, since on a shared machine a second's rate varies).
	var post, npost int64
	for s := int(floodEnd/time.Second) + 2; s < whole; s++ {
		post += perSec[s].Load()
		npost++
	}
	t.Logf("download after the flood: %.0f Mbit/s (%d whole seconds); before: %.0f", float64(post)*8/1e6/float64(max(npost, 1)), npost, float64(perSec[1].Load())*8/1e6)

	var inOK, inAll, postOK, postAll int
	var errs []string
	for _, a := range attempts {
		switch {
		case a.at >= floodStart && a.at < floodEnd:
			inAll++
			if a.err == nil {
				inOK++
			} else if len(errs) < 5 {
				errs = append(errs, a.err.Error())
			}
		case a.at >= floodEnd+time.Second:
			postAll++
			if a.err == nil {
				postOK++
			}
		}
	}
	t.Logf("new connections: %d of %d during the flood, %d of %d after", inOK, inAll, postOK, postAll)
	if inAll < 10 || inOK*10 < inAll*9 {
		t.Errorf("new connections during the flood: %d of %d, want at least 90 %%: %s", inOK, inAll, strings.Join(errs, "; "))
	}
	if postAll == 0 || postOK != postAll {
		t.Errorf("new connections after the flood: %d of %d, want all", postOK, postAll)
	}
	if during.Connections > maxConns || afterStatus.Connections > maxConns {
		t.Errorf("table %d then %d connections, over its limit %d", during.Connections, afterStatus.Connections, maxConns)
	}
	if rss == 0 || rss > maxRSS {
		t.Errorf("lvsd RSS %d MiB, want 1 to %d", rss>>20, maxRSS>>20)
	}
}

// synproxyFlood floods the lab's SYN-proxy service (port synproxyPort,
// synproxy = true) for the time flood, as fast as the generator goes,
// while a client uploads and downloads through it (the bytes counted at
// both ends) and opens a new connection every newEvery: the flood's SYNs
// must create no connection entry (the proxy answers them with cookies),
// the table holds no more unestablished entries than the test's own
// handshakes, the transfers arrive whole, and at least 90 % of the new
// connections succeed within newWithin. It returns the SYNs sent and the
// SYNs lvsd answered (took in).
func synproxyFlood(t *testing.T, l *lab.Lab, tp *lab.Topology, bin lab.Binaries, flood, newEvery, newWithin time.Duration) (sent int64, taken uint64) {
	const (
		upload   = 4 << 20
		download = 16 << 20
	)
	url := fmt.Sprintf("http://%s:%d/", lab.VIP, synproxyPort)
	sum := func(st *control.Status) (newConns, cookies, opened, synDrops, badCookie uint64) {
		for _, i := range st.Interfaces {
			newConns += i.NewConns
			cookies += i.SynCookies
			opened += i.SynproxyOpened
			synDrops += i.KernelSYN
			badCookie += i.Drops["synproxy-cookie"]
		}
		return
	}
	base := tp.Status()
	baseNew, baseCookies, baseOpened, baseSYN, _ := sum(base)

	start := time.Now()
	var wg sync.WaitGroup
	var nsent atomic.Int64
	wg.Go(func() { nsent.Store(synfloodPort(t, l, tp, bin, synproxyPort, 0, flood)) })
	time.Sleep(100 * time.Millisecond) // the flood under way

	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext(tp.Client), DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	var xferErr []string
	var xmu sync.Mutex
	fail := func(format string, args ...any) {
		xmu.Lock()
		xferErr = append(xferErr, fmt.Sprintf(format, args...))
		xmu.Unlock()
	}
	wg.Go(func() {
		body := strings.Repeat("synproxy", upload/8)
		r, err := hc.Post(url+"upload", "application/octet-stream", strings.NewReader(body))
		if err != nil {
			fail("upload: %v", err)
			return
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		if f := strings.Fields(string(b)); r.StatusCode != 200 || len(f) != 3 || f[2] != strconv.Itoa(upload) {
			fail("upload: %s %q, want the server to count %d bytes", r.Status, b, upload)
		}
	})
	wg.Go(func() {
		r, err := hc.Get(fmt.Sprintf("%sbytes?n=%d", url, download))
		if err != nil {
			fail("download: %v", err)
			return
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n"
		if err != nil || len(b) != download || strings.Trim(string(b), alphabet) != "" {
			fail("download: %d bytes (%v), want %d of the server's pattern", len(b), err, download)
		}
	})
	var ok, all atomic.Int32
	var errMu sync.Mutex
	var errs []string
	nc := &http.Client{Timeout: newWithin, Transport: &http.Transport{DialContext: lab.DialContext(tp.Client), DisableKeepAlives: true}}
	for time.Since(start) < flood {
		all.Add(1)
		wg.Go(func() {
			r, err := nc.Get(url)
			if err == nil {
				_, err = io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			if err == nil {
				ok.Add(1)
			} else {
				errMu.Lock()
				if len(errs) < 5 {
					errs = append(errs, err.Error())
				}
				errMu.Unlock()
			}
		})
		time.Sleep(newEvery)
	}
	during := tp.Status()
	wg.Wait()
	nc.CloseIdleConnections()
	sent = nsent.Load()
	_, all1, _, _, _ := sum(tp.Status())
	taken = all1 - baseCookies

	newC, cookies, opened, synDrops, bad := sum(during)
	t.Logf("synproxy flood: %d SYNs in %v; lvsd answered %d with cookies, opened %d connections (%d new entries), the kernel dropped %d SYNs, %d ACKs with bad cookies",
		sent, flood, cookies-baseCookies, opened-baseOpened, newC-baseNew, synDrops-baseSYN, bad)
	t.Logf("synproxy flood: table %d connections, %d unestablished (before: %d, %d); new connections %d of %d",
		during.Connections, during.Table.Unestablished, base.Connections, base.Table.Unestablished, ok.Load(), all.Load())
	for _, e := range xferErr {
		t.Error(e)
	}
	if sent == 0 || cookies-baseCookies < uint64(sent)/10 {
		t.Errorf("the proxy answered %d of %d SYNs with cookies", cookies-baseCookies, sent)
	}
	// Entries: the test's own connections only, each opened by a cookie.
	own := uint64(all.Load()) + 2
	if n := newC - baseNew; n > own*2 {
		t.Errorf("%d new entries during the flood, for %d connections of the test's own: the flood's SYNs cost entries", n, own)
	}
	if opened-baseOpened > own*2 {
		t.Errorf("%d connections opened by cookies, for %d of the test's own", opened-baseOpened, own)
	}
	// The half-open entries of the earlier flood (port 80) are still in
	// the table until their SYN_RECV timeout: the SYN proxy's flood must
	// not add to them.
	if during.Table.Unestablished > base.Table.Unestablished+int(own) {
		t.Errorf("unestablished entries %d during the flood, %d before: the flood's SYNs left half-open entries", during.Table.Unestablished, base.Table.Unestablished)
	}
	if a := all.Load(); a < 10 || ok.Load()*10 < a*9 {
		t.Errorf("new connections through the SYN proxy during the flood: %d of %d, want at least 90 %%: %s", ok.Load(), a, strings.Join(errs, "; "))
	}
	return sent, taken
}
