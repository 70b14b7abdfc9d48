package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/control"
)

type fakeSource struct{ st control.Status }

func (f *fakeSource) Status() control.Status { return f.st }

type fakeTable struct{ ts conntrack.StatsSnapshot }

func (f *fakeTable) Stats() conntrack.StatsSnapshot { return f.ts }

type fakeReloads struct{}

func (fakeReloads) ReloadCounts() (uint64, uint64) { return 4, 1 }

func testStatus() control.Status {
	return control.Status{
		Version: "test", Connections: 7, ConfigStale: true, ReloadFailures: 1,
		Table: control.Table{Max: 1000, Evicted: 3, Refused: 2, Unestablished: 4, Reused: 5, SourceLimited: 6},
		Services: []control.Service{{
			Protocol: "tcp", Address: "192.0.2.100:80", Scheduler: "wrr",
			Stats: control.Stats{Conns: 10, InPkts: 100, OutPkts: 90, InBytes: 5000, OutBytes: 9000},
			Reals: []control.Real{
				{Address: "192.0.2.11:8080", Method: "nat", Weight: 3, ActiveConn: 2, InactConn: 5, Available: true,
					Stats: control.Stats{Conns: 6, InPkts: 60, OutPkts: 50, InBytes: 3000, OutBytes: 5000}},
				{Address: "192.0.2.12:8080", Method: "nat", Weight: 1, Overloaded: true,
					Health: &control.Health{Check: "tcp", State: "down", Checks: 9, ChecksTotal: 11, LastChange: time.Unix(1700000000, 0), TransitionsUp: 2, TransitionsDown: 3,
						Passive: &control.Passive{State: "in", Ejections: 1, EjectionsTotal: 4}},
					Stats: control.Stats{Conns: 4, InPkts: 40, OutPkts: 40, InBytes: 2000, OutBytes: 4000}},
			},
		}, {
			Protocol: "udp", Address: "[2001:db8::100]:53", Scheduler: "rr",
			// Passive detection without a check: ejections, no check series.
			Reals: []control.Real{{Address: "[2001:db8::11]:5353", Method: "dr", Weight: 1, Available: true,
				Health: &control.Health{Passive: &control.Passive{State: "in", EjectionsTotal: 2}}}},
		}},
		Interfaces: []control.Interface{{
			Name: "lvttap0", Type: "tap", ForwardedIn: 100, ForwardedOut: 90, ToStack: 3, NewConns: 10,
			KernelDrops: 6, KernelSYN: 70, SynCookies: 40, SynproxyOpened: 4, NeighborHeld: 9, NeighborSent: 8,
			Drops:  map[string]uint64{"no-conn": 2, "truncated": 0},
			Queues: []control.Queue{{RxFrames: 150, TxFrames: 140}, {RxFrames: 43, TxFrames: 50}},
		}},
	}
}

func scrape(t *testing.T, h http.Handler) map[string]*model.Sample {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	dec := expfmt.SampleDecoder{
		Dec:  expfmt.NewDecoder(rec.Body, expfmt.NewFormat(expfmt.TypeTextPlain)),
		Opts: &expfmt.DecodeOptions{Timestamp: model.Now()},
	}
	var v model.Vector
	out := make(map[string]*model.Sample)
	for {
		if err := dec.Decode(&v); err != nil {
			if err == io.EOF {
				break
			}
			t.Fatalf("decode: %v", err)
		}
		for _, s := range v {
			out[s.Metric.String()] = s
		}
	}
	return out
}

// TestMetricNames checks the exposition: node_exporter's IPVS names and
// labels under lvsd_, and lvsd's own series, with the status's values.
func TestMetricNames(t *testing.T) {
	src := &fakeSource{st: testStatus()}
	tbl := &fakeTable{ts: conntrack.StatsSnapshot{
		Total: conntrack.Counters{Conns: 12, InPkts: 110, OutPkts: 95, InBytes: 5500, OutBytes: 9100}}}
	s := New(Options{Source: src, Table: tbl, Reloads: fakeReloads{}, Version: "v1.2.3"})
	got := scrape(t, s.Handler())
	be := `{local_address="192.0.2.100", local_mark="", local_port="80", proto="TCP", remote_address="192.0.2.11", remote_port="8080"}`
	be2 := `{local_address="192.0.2.100", local_mark="", local_port="80", proto="TCP", remote_address="192.0.2.12", remote_port="8080"}`
	be6 := `{local_address="2001:db8::100", local_mark="", local_port="53", proto="UDP", remote_address="2001:db8::11", remote_port="5353"}`
	want := map[string]float64{
		"lvsd_ipvs_connections_total":                                              12,
		"lvsd_ipvs_incoming_packets_total":                                         110,
		"lvsd_ipvs_outgoing_packets_total":                                         95,
		"lvsd_ipvs_incoming_bytes_total":                                           5500,
		"lvsd_ipvs_outgoing_bytes_total":                                           9100,
		"lvsd_ipvs_backend_connections_active" + be:                                2,
		"lvsd_ipvs_backend_connections_inactive" + be:                              5,
		"lvsd_ipvs_backend_weight" + be:                                            3,
		"lvsd_ipvs_backend_weight" + be2:                                           1,
		"lvsd_ipvs_backend_weight" + be6:                                           1,
		"lvsd_ipvs_backend_connections_total" + be:                                 6,
		"lvsd_ipvs_backend_incoming_bytes_total" + be2:                             2000,
		"lvsd_ipvs_backend_outgoing_packets_total" + be:                            50,
		"lvsd_ipvs_backend_available" + be:                                         1,
		"lvsd_ipvs_backend_available" + be2:                                        0,
		"lvsd_ipvs_backend_overloaded" + be2:                                       1,
		"lvsd_ipvs_backend_health_up" + be2:                                        0,
		"lvsd_ipvs_backend_health_checks_total" + be2:                              11,
		"lvsd_ipvs_backend_health_last_change_timestamp_seconds" + be2:             1700000000,
		"lvsd_ipvs_backend_health_transitions_total" + beTo(be2, "up"):             2,
		"lvsd_ipvs_backend_health_transitions_total" + beTo(be2, "down"):           3,
		"lvsd_ipvs_backend_passive_ejections_total" + be2:                          4,
		"lvsd_ipvs_backend_passive_ejections_total" + be6:                          2,
		`lvsd_drops_total{interface="lvttap0", reason="no-conn"}`:                  2,
		`lvsd_drops_total{interface="lvttap0", reason="truncated"}`:                0,
		`lvsd_forwarded_packets_total{direction="in", interface="lvttap0"}`:        100,
		`lvsd_forwarded_packets_total{direction="out", interface="lvttap0"}`:       90,
		`lvsd_device_frames_total{direction="rx", interface="lvttap0", queue="1"}`: 43,
		`lvsd_device_frames_total{direction="tx", interface="lvttap0", queue="0"}`: 140,
		`lvsd_kernel_drops_total{interface="lvttap0", queue="established"}`:        6,
		`lvsd_kernel_drops_total{interface="lvttap0", queue="syn"}`:                70,
		`lvsd_syn_cookies_total{interface="lvttap0"}`:                              40,
		`lvsd_synproxy_opened_total{interface="lvttap0"}`:                          4,
		`lvsd_neighbor_held_frames_total{interface="lvttap0", outcome="held"}`:     9,
		`lvsd_neighbor_held_frames_total{interface="lvttap0", outcome="sent"}`:     8,
		"lvsd_conntrack_entries":                                                   7,
		"lvsd_conntrack_limit":                                                     1000,
		"lvsd_conntrack_evictions_total":                                           3,
		"lvsd_conntrack_refused_total":                                             2,
		`lvsd_reloads_total{result="applied"}`:                                     4,
		`lvsd_reloads_total{result="refused"}`:                                     1,
		"lvsd_reload_failures_total":                                               1,
		"lvsd_config_stale":                                                        1,
	}
	for name, v := range want {
		s, ok := got[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if float64(s.Value) != v {
			t.Errorf("%s = %v, want %v", name, s.Value, v)
		}
	}
	for name := range got {
		if strings.HasPrefix(name, "lvsd_ipvs_backend_health_") && strings.Contains(name, `remote_address="2001:db8::11"`) {
			t.Errorf("%s: a server with passive detection and no check has no check series", name)
		}
	}
	var build bool
	for name := range got {
		if strings.HasPrefix(name, `lvsd_build_info{`) && strings.Contains(name, `version="v1.2.3"`) {
			build = true
		}
	}
	if !build {
		t.Errorf("no lvsd_build_info with version v1.2.3")
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Errorf("no Go runtime metrics")
	}
}

// beTo is the label set be with the label to="state" (labels sort by name:
// "to" comes last).
func beTo(be, state string) string {
	return strings.TrimSuffix(be, "}") + `, to="` + state + `"}`
}

// TestHistory checks the page's samples: rates from counter differences,
// and a ring bounded by the window.
func TestHistory(t *testing.T) {
	h := newHistory(3)
	st := testStatus()
	t0 := time.Unix(1000, 0)
	h.add(t0, st)
	if n := len(h.samples()); n != 0 {
		t.Fatalf("%d samples after the first call, want 0", n)
	}
	st.Services[0].Reals[0].Stats.Conns += 10
	st.Services[0].Reals[0].Stats.InBytes += 3000
	st.Services[0].Reals[0].Stats.OutBytes += 1000
	h.add(t0.Add(2*time.Second), st)
	smp := h.samples()
	key := RealKey(st.Services[0], st.Services[0].Reals[0])
	if len(smp) != 1 || smp[0].Reals[key] != (RealRate{CPS: 5, BPS: 2000}) {
		t.Fatalf("samples %+v, want one with %s at 5 cps, 2000 B/s", smp, key)
	}
	if r := smp[0].Reals[RealKey(st.Services[0], st.Services[0].Reals[1])]; r != (RealRate{}) {
		t.Errorf("idle real: %+v, want zero", r)
	}
	for i := 3; i < 10; i++ {
		h.add(t0.Add(time.Duration(i)*time.Second), st)
	}
	if smp := h.samples(); len(smp) != 3 || smp[2].T != t0.Add(9*time.Second).UnixMilli() {
		t.Errorf("ring: %d samples, last at %d; want 3, the last at 9 s", len(smp), smp[len(smp)-1].T)
	}
}

// TestPage checks that the page is served, self-contained, and that the
// API gives the status and the history.
func TestPage(t *testing.T) {
	s := New(Options{Source: &fakeSource{st: testStatus()}})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, "<title>lvsd status</title>") {
		t.Fatalf("GET /: %d\n%.200s", rec.Code, body)
	}
	for _, ext := range []string{"src=\"http", "href=\"http", "@import", "//cdn"} {
		if strings.Contains(body, ext) {
			t.Errorf("the page refers to an external asset (%q)", ext)
		}
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/status", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"address":"192.0.2.100:80"`) ||
		!strings.Contains(rec.Body.String(), `"interval_ms":2000`) {
		t.Errorf("GET /api/status: %d %.300s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/nothing", nil))
	if rec.Code != 404 {
		t.Errorf("GET /nothing: %d, want 404", rec.Code)
	}
}
