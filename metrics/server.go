package metrics

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lvsd/lvsd/control"
)

// Options configure a Server. Source is required.
type Options struct {
	// Source gives the status snapshots (the director).
	Source Source
	// Table, when set, gives the connection table's totals, limit and
	// evictions (director.Table()).
	Table TableSource
	// Reloads, when set, counts reload outcomes.
	Reloads ReloadSource
	// Version is the lvsd version reported by lvsd_build_info.
	Version string
	// Interval is the status page's sample period; 0 means 2 s (the
	// period at which the connection table folds its counters).
	Interval time.Duration
	// Window is how much history the page keeps; 0 means 10 minutes.
	Window time.Duration
	Logger *slog.Logger
}

//go:embed page/index.html
var pageFS embed.FS

// Server is the metrics listener's handler and its history sampler.
type Server struct {
	opts    Options
	handler http.Handler
	hist    *history
}

// New returns a Server; nothing runs until Run (the sampler) and Serve.
func New(o Options) *Server {
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(o.Source, o.Table, o.Reloads, o.Version))
	reg.MustRegister(collectors.NewGoCollector())
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s := &Server{opts: o, hist: newHistory(int(o.Window / o.Interval))}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn), Registry: reg,
	}))
	mux.HandleFunc("GET /api/status", s.apiStatus)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page, _ := pageFS.ReadFile("page/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The page loads nothing from anywhere: say so to the browser.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
		w.Write(page)
	})
	s.handler = mux
	return s
}

// Handler returns the listener's HTTP handler: /metrics, / and /api/status.
func (s *Server) Handler() http.Handler { return s.handler }

// Run samples the status every Interval for the page's plots until ctx
// ends.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	s.hist.add(time.Now(), s.opts.Source.Status())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.hist.add(now, s.opts.Source.Status())
		}
	}
}

// Serve answers on ln until ctx ends, and runs the sampler; it closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.Run(sctx) })
	wg.Go(func() {
		<-sctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut)
	})
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics listener: %w", err)
	}
	return nil
}

// apiStatus answers the page: the status now and the sampled history.
func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	st := s.opts.Source.Status()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(struct {
		Status     control.Status `json:"status"`
		IntervalMS int64          `json:"interval_ms"`
		WindowMS   int64          `json:"window_ms"`
		History    []Sample       `json:"history"`
	}{st, s.opts.Interval.Milliseconds(), s.opts.Window.Milliseconds(), s.hist.samples()})
}

// Sample is one point of the page's plots.
type Sample struct {
	// T is the sample's time, Unix milliseconds.
	T int64 `json:"t"`
	// Reals maps RealKey to the real server's rates over the period that
	// ends at T.
	Reals map[string]RealRate `json:"reals"`
}

// RealRate is a real server's activity over one sample period, from the
// differences of its exact counters.
type RealRate struct {
	CPS float64 `json:"cps"` // new connections per second
	BPS float64 `json:"bps"` // bytes per second, both directions
}

// RealKey names a real server of a service on the page:
// "PROTO VIP:PORT RIP:PORT".
func RealKey(s control.Service, r control.Real) string {
	return s.Protocol + " " + s.Address + " " + r.Address
}

// history is a ring of samples. mu guards every field.
type history struct {
	mu   sync.Mutex
	max  int
	ring []Sample
	last time.Time
	prev map[string]control.Stats
}

func newHistory(max int) *history { return &history{max: max} }

// add records the rates since the previous call; the first call only
// remembers the counters.
func (h *history) add(now time.Time, st control.Status) {
	cur := make(map[string]control.Stats)
	for _, s := range st.Services {
		for _, r := range s.Reals {
			cur[RealKey(s, r)] = r.Stats
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.prev != nil {
		dt := now.Sub(h.last).Seconds()
		smp := Sample{T: now.UnixMilli(), Reals: make(map[string]RealRate, len(cur))}
		for k, c := range cur {
			p, ok := h.prev[k]
			if !ok || dt <= 0 || c.Conns < p.Conns {
				smp.Reals[k] = RealRate{}
				continue
			}
			smp.Reals[k] = RealRate{
				CPS: float64(c.Conns-p.Conns) / dt,
				BPS: float64(c.InBytes+c.OutBytes-p.InBytes-p.OutBytes) / dt,
			}
		}
		if len(h.ring) == h.max {
			copy(h.ring, h.ring[1:])
			h.ring = h.ring[:h.max-1]
		}
		h.ring = append(h.ring, smp)
	}
	h.prev, h.last = cur, now
}

func (h *history) samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Sample(nil), h.ring...)
}
