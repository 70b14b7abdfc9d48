package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// metricsAddr is where the labs' lvsd serves metrics, in the director
// namespace.
const metricsAddr = "127.0.0.1:9812"

// withMetrics turns lvsd's metrics listener on in the topology's config.
func withMetrics(tp *lab.Topology) {
	tp.Globals = append(tp.Globals, "[metrics]", fmt.Sprintf("listen = %q", metricsAddr))
}

// scrapeMetrics reads /metrics of the lab's lvsd; series by their
// name{labels} string.
func scrapeMetrics(t *testing.T, tp *lab.Topology) map[string]float64 {
	t.Helper()
	m, err := scrape(tp)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return m
}

func scrape(tp *lab.Topology) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext(tp.Director)}}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("%s\n%s", resp.Status, b)
	}
	dec := expfmt.SampleDecoder{
		Dec:  expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header)),
		Opts: &expfmt.DecodeOptions{Timestamp: model.Now()},
	}
	out := make(map[string]float64)
	for {
		var v model.Vector
		if err := dec.Decode(&v); err != nil {
			if err == io.EOF {
				break
			}
			return nil, fmt.Errorf("decode: %w", err)
		}
		for _, s := range v {
			out[s.Metric.String()] = float64(s.Value)
		}
	}
	return out, nil
}

// sumPrefix sums the series whose name{labels} starts with prefix and
// contains every one of has.
func sumPrefix(m map[string]float64, prefix string, has ...string) float64 {
	var sum float64
next:
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		for _, h := range has {
			if !strings.Contains(k, h) {
				continue next
			}
		}
		sum += v
	}
	return sum
}

// TestMetricsScrape scrapes lvsd's /metrics while a client sends UDP flows
// through a NAT service, and checks that the IPVS connection, packet and
// byte counters grew by exactly what the client sent and received.
func TestMetricsScrape(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	withMetrics(tp)
	tp.StartUDP(bin, 5353)
	tp.StartLvsd(bin, lab.LvsdOptions{}, lab.Service{Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "rr", Method: "nat"})

	// Warm up: one answered flow per real server (round robin), so that
	// lvsd knows every real server's MAC and the exact counts below meet
	// no datagram waiting for one (a first datagram to a real server being
	// resolved waits for its MAC: docs/modes.md).
	vip := netip.AddrPortFrom(lab.VIP, 53)
	for range tp.Reals {
		deadline := time.Now().Add(10 * time.Second)
		for lab.ProbeUDP(tp.Client, vip) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("no answer from %s", vip)
			}
		}
	}
	before := scrapeMetrics(t, tp)
	for _, name := range []string{
		"lvsd_ipvs_connections_total", "lvsd_ipvs_incoming_bytes_total", "lvsd_conntrack_limit",
		`lvsd_build_info{`, `lvsd_device_frames_total{direction="rx", interface="lvttap0", queue="0"}`,
	} {
		if sumPrefix(before, name) == 0 && !strings.HasSuffix(name, "total") {
			t.Errorf("no %s in the scrape", name)
		}
	}

	// flows new UDP flows (a socket each) of msgs datagrams of payload
	// bytes; each waits for its echo. A scraper reads /metrics meanwhile.
	const flows, msgs, payload = 6, 20, 100
	var inBytes, outBytes, replies int
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	scrapes := 0
	wg.Go(func() {
		for ctx.Err() == nil {
			if _, err := scrape(tp); err != nil {
				t.Errorf("scrape during the traffic: %v", err)
				return
			}
			scrapes++
			time.Sleep(50 * time.Millisecond)
		}
	})
	msg := strings.Repeat("m", payload)
	for f := 0; f < flows; f++ {
		err := lab.Do(tp.Client, func() error {
			c, err := net.Dial("udp", lab.VIP.String()+":53")
			if err != nil {
				return err
			}
			defer c.Close()
			buf := make([]byte, 2048)
			for i := 0; i < msgs; i++ {
				if _, err := c.Write([]byte(msg)); err != nil {
					return err
				}
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					return fmt.Errorf("flow %d message %d: %w", f, i, err)
				}
				mu.Lock()
				inBytes += 28 + payload // IPv4 and UDP headers: IPVS counts IP bytes
				outBytes += 28 + n
				replies++
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if scrapes == 0 {
		t.Errorf("no scrape during the traffic")
	}
	after := scrapeMetrics(t, tp)
	delta := func(name string, has ...string) float64 {
		return sumPrefix(after, name, has...) - sumPrefix(before, name, has...)
	}
	checks := []struct {
		name string
		got  float64
		want int
	}{
		{"lvsd_ipvs_connections_total", delta("lvsd_ipvs_connections_total"), flows},
		{"lvsd_ipvs_incoming_packets_total", delta("lvsd_ipvs_incoming_packets_total"), flows * msgs},
		{"lvsd_ipvs_outgoing_packets_total", delta("lvsd_ipvs_outgoing_packets_total"), replies},
		{"lvsd_ipvs_incoming_bytes_total", delta("lvsd_ipvs_incoming_bytes_total"), inBytes},
		{"lvsd_ipvs_outgoing_bytes_total", delta("lvsd_ipvs_outgoing_bytes_total"), outBytes},
		{"sum of lvsd_ipvs_backend_connections_total", delta("lvsd_ipvs_backend_connections_total{", `proto="UDP"`, `local_port="53"`), flows},
		{"sum of lvsd_ipvs_backend_incoming_bytes_total", delta("lvsd_ipvs_backend_incoming_bytes_total{"), inBytes},
		{`lvsd_forwarded_packets_total{direction="in"}`, delta(`lvsd_forwarded_packets_total{direction="in"`), flows * msgs},
	}
	for _, c := range checks {
		if c.got != float64(c.want) {
			t.Errorf("%s grew by %v, want %d (what the client sent and received)", c.name, c.got, c.want)
		}
	}
	// Round robin over three real servers: two new flows each.
	for _, r := range tp.Reals {
		k := fmt.Sprintf(`remote_address="%s"`, r.Addr)
		if got := delta("lvsd_ipvs_backend_connections_total{", k); got != flows/3 {
			t.Errorf("real server %s: %v new connections, want %d", r.Addr, got, flows/3)
		}
		if w := sumPrefix(after, "lvsd_ipvs_backend_weight{", k); w != 1 {
			t.Errorf("real server %s: lvsd_ipvs_backend_weight %v, want 1", r.Addr, w)
		}
	}
	if got := sumPrefix(after, "lvsd_ipvs_backend_connections_inactive{"); got < flows {
		t.Errorf("lvsd_ipvs_backend_connections_inactive sums to %v, want at least the %d UDP flows", got, flows)
	}
	t.Logf("%d scrapes during the traffic; %d datagrams, %d bytes in, %d bytes out", scrapes, flows*msgs, inBytes, outBytes)
}

// TestMetricsHealthTransitions stops one real server's HTTP server under a
// tcp check (every 200 ms, fall 1, rise 1), starts it again, and checks
// /metrics: lvsd_ipvs_backend_health_transitions_total counts its one
// transition down and its one up, health_up follows, and the other real
// servers have no transition.
func TestMetricsHealthTransitions(t *testing.T) {
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{})
	withMetrics(tp)
	servers := tp.StartHTTP(bin, 8080)
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr", Extra: checkTable(`  type = "tcp"`,
		`  interval = "200ms"`, `  timeout = "150ms"`, `  fall = 1`, `  rise = 1`)}
	tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
	addr := lab.VIP.String() + ":80"
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string { return allUp(st, addr, 3) })

	rs2 := tp.Reals[1]
	series := func(m map[string]float64, name, to string) float64 {
		return sumPrefix(m, name+"{", `remote_address="`+rs2.Addr.String()+`"`, `to="`+to+`"`)
	}
	servers[1].Stop()
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string {
		if h := healthOf(st, "tcp", addr)[rs2.Addr.String()+":8080"]; h == nil || h.State != "down" {
			return fmt.Sprintf("rs2 not down yet: %+v", h)
		}
		return ""
	})
	m := scrapeMetrics(t, tp)
	if got := series(m, "lvsd_ipvs_backend_health_transitions_total", "down"); got != 1 {
		t.Errorf("rs2's transitions to down after it stopped: %v, want 1", got)
	}
	if got := sumPrefix(m, "lvsd_ipvs_backend_health_up{", `remote_address="`+rs2.Addr.String()+`"`); got != 0 {
		t.Errorf("rs2's health_up while down: %v", got)
	}

	p := l.Start(rs2.NS, "rs2-http-again", bin.Labserver, "http", "-listen", ":8080", "-name", rs2.Name)
	if err := p.WaitOutput("listening", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, tp, 10*time.Second, func(st *control.Status) string { return allUp(st, addr, 3) })
	m = scrapeMetrics(t, tp)
	if up, down := series(m, "lvsd_ipvs_backend_health_transitions_total", "up"), series(m, "lvsd_ipvs_backend_health_transitions_total", "down"); up != 1 || down != 1 {
		t.Errorf("rs2's transitions after it came back: up %v down %v, want 1 and 1", up, down)
	}
	if all := sumPrefix(m, "lvsd_ipvs_backend_health_transitions_total{"); all != 2 {
		t.Errorf("transitions of all real servers: %v, want rs2's 2", all)
	}
	if got := sumPrefix(m, "lvsd_ipvs_backend_health_up{", `remote_address="`+rs2.Addr.String()+`"`); got != 1 {
		t.Errorf("rs2's health_up after it came back: %v", got)
	}
}
