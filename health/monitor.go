package health

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/lvsd/lvsd/config"
)

// Sink applies edges to the running table. Its methods are called from
// monitor goroutines (and from Sync), one call at a time per Manager, never
// with a lock of the Manager's caller held by the Manager.
type Sink[K comparable] interface {
	// SetHealth takes a real server out of scheduling (up false) or puts
	// it back; with inhibit its weight goes to 0 instead of removing it.
	SetHealth(k K, up, inhibit bool)
	// SetWeight sets the weight an exec check with dynamic asked for.
	SetWeight(k K, w int32)
}

// Spec is one real server to check.
type Spec[K comparable] struct {
	Key    K
	Target Target
	// Group names the real server's virtual server, for its quorum;
	// Weight is its configured weight.
	Group  string
	Weight int32
	// Check is the server's check; nil: the server is not checked and is
	// up.
	Check *config.Check
	// Down is the state the server is in now (for a new monitor: its
	// starting state; alpha servers start down).
	Down bool
}

// Status is what a monitor knows of its server, for the control socket.
type Status struct {
	// Up is the state the server is in for scheduling.
	Up bool
	// Checks counts the probes done; LastOK and LastError are the last
	// one's result ("" when it passed).
	Checks    uint64
	LastOK    bool
	LastError string
	// OKRun and FailRun are the current runs of consecutive successes and
	// failures (one of them is 0).
	OKRun, FailRun int
	// LastCheck is the time of the last probe and LastChange of the last
	// transition (or of the monitor's start); zero before any.
	LastCheck, LastChange time.Time
	// Weight is the last dynamic weight of an exec check, -1 for none.
	Weight int32
	// Ups and Downs count the transitions to up and to down of the real
	// server's checks since the server came under this Manager: they go
	// on across a restart of its check (a reload that changes it, a check
	// removed and given again), so that a counter made of them never goes
	// down while the server exists.
	Ups, Downs uint64
	// Probes counts the probes of the real server's checks since the
	// server came under this Manager: Checks restarts with its check,
	// Probes goes on as Ups and Downs do.
	Probes uint64
}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Net is where probes leave from.
	Net Net
	// Now is the clock of Status times (default time.Now).
	Now func() time.Time
	// NotifyTimeout bounds notify commands (default 30 s).
	NotifyTimeout time.Duration
}

// Manager owns the monitors of one director.
type Manager[K comparable] struct {
	log  *slog.Logger
	sink Sink[K]
	opts Options

	// emitMu serialises calls into the Sink and guards the check that the
	// calling monitor is still the one in force, so that a monitor replaced
	// by Sync reports nothing more.
	emitMu sync.Mutex

	mu sync.Mutex
	// monitors are the monitors in force by key. Guarded by mu.
	monitors map[K]*monitor[K]
	// ctx is Run's context, nil before Run. Guarded by mu.
	ctx context.Context
	// wg counts monitor and notify goroutines.
	wg sync.WaitGroup
	// members are every real server of the last Sync, checked or not, for
	// the quorums. Guarded by mu.
	members map[K]member
	// quorums are the quorums by group. Guarded by mu.
	quorums map[string]*quorumState
	// transitions keeps the transition counts of the real servers of the
	// last Sync whose monitor was stopped (their check removed), for the
	// monitor a later Sync gives them. Guarded by mu.
	transitions map[K]transitions
	// newChecker replaces NewChecker in tests.
	newChecker func(*config.Check, Target, Net) (Checker, error)
}

// NewManager returns a Manager that reports to sink.
func NewManager[K comparable](sink Sink[K], o Options) *Manager[K] {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NotifyTimeout <= 0 {
		o.NotifyTimeout = 30 * time.Second
	}
	return &Manager[K]{log: o.Logger, sink: sink, opts: o, monitors: make(map[K]*monitor[K]),
		quorums: make(map[string]*quorumState), transitions: make(map[K]transitions)}
}

// transitions are a real server's Status.Ups, Downs and Probes.
type transitions struct{ ups, downs, probes uint64 }

type monitor[K comparable] struct {
	key     K
	spec    Spec[K]
	checker Checker
	cancel  context.CancelFunc
	log     *slog.Logger

	mu sync.Mutex
	// st is the state. Guarded by mu.
	st Status
}

// Sync makes the monitors match specs, after a start or a reload:
//   - a server whose target and check are unchanged keeps its monitor, its
//     state and its counts (no flap, no new warmup);
//   - a server whose check changed, or that is new, gets a new monitor in
//     the state the caller says it is in (Spec.Down);
//   - monitors of servers not in specs, or no longer checked, stop.
//
// Sync never calls the Sink: the caller applies initial states itself (it
// may hold a lock the Sink takes). It returns the errors of checks that
// cannot be built (their servers are left unchecked).
func (m *Manager[K]) Sync(specs []Spec[K]) []error {
	var errs []error
	m.mu.Lock()
	want := make(map[K]bool, len(specs))
	m.members = make(map[K]member, len(specs))
	for _, s := range specs {
		want[s.Key] = true
		m.members[s.Key] = member{group: s.Group, weight: s.Weight}
		old := m.monitors[s.Key]
		if old != nil && old.spec.Target == s.Target && reflect.DeepEqual(old.spec.Check, s.Check) {
			continue
		}
		if old != nil {
			old.cancel()
			delete(m.monitors, s.Key)
			st := old.status()
			m.transitions[s.Key] = transitions{st.Ups, st.Downs, st.Probes}
		}
		if s.Check == nil {
			continue
		}
		newChecker := m.newChecker
		if newChecker == nil {
			newChecker = NewChecker
		}
		ch, err := newChecker(s.Check, s.Target, m.opts.Net)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mon := &monitor[K]{key: s.Key, spec: s, checker: ch, cancel: func() {},
			log: m.log.With("real", s.Target.Real.String(), "virtual", s.Target.Virtual.String(), "check", s.Check.Type)}
		tr := m.transitions[s.Key]
		delete(m.transitions, s.Key)
		mon.st = Status{Up: !s.Down, Weight: -1, LastChange: m.opts.Now(), Ups: tr.ups, Downs: tr.downs, Probes: tr.probes}
		m.monitors[s.Key] = mon
		if m.ctx != nil {
			m.start(mon)
		}
	}
	for k, mon := range m.monitors {
		if !want[k] {
			mon.cancel()
			delete(m.monitors, k)
		}
	}
	for k := range m.transitions {
		if !want[k] || m.monitors[k] != nil {
			// The server is gone (its counters' series with it), or its
			// monitor took them.
			delete(m.transitions, k)
		}
	}
	var first []string
	groups := make(map[string]bool)
	for _, s := range specs {
		groups[s.Group] = true
	}
	for g, q := range m.quorums {
		if !q.evaluated {
			q.evaluated = true
			first = append(first, g)
		}
	}
	m.mu.Unlock()
	for g := range groups {
		m.evalQuorum(g, slices.Contains(first, g))
	}
	return errs
}

// Run starts the monitors and keeps them (and those later Syncs add)
// running until ctx ends, then waits for every goroutine of the Manager.
func (m *Manager[K]) Run(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	for _, mon := range m.monitors {
		m.start(mon)
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.wg.Wait()
}

// Status returns the state of the monitor of k; false when k is not
// checked.
func (m *Manager[K]) Status(k K) (Status, bool) {
	m.mu.Lock()
	mon := m.monitors[k]
	m.mu.Unlock()
	if mon == nil {
		return Status{}, false
	}
	return mon.status(), true
}

// start runs mon's loop.
//
// Preconditions: m.mu is held; m.ctx is set.
func (m *Manager[K]) start(mon *monitor[K]) {
	ctx, cancel := context.WithCancel(m.ctx)
	mon.cancel = cancel
	m.wg.Go(func() { m.loop(ctx, mon) })
}

func (m *Manager[K]) loop(ctx context.Context, mon *monitor[K]) {
	c := mon.spec.Check
	first := c.Warmup
	if first <= 0 {
		first = c.Interval
	}
	t := time.NewTimer(onTick(time.Now(), rand.N(first)+1))
	defer t.Stop()
	if cl, ok := mon.checker.(io.Closer); ok {
		// A checker that keeps a connection between checks
		// (reuse_connection) ends it with its monitor.
		defer cl.Close()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		r := mon.checker.Check(ctx)
		if ctx.Err() != nil {
			return
		}
		ev := mon.observe(r, m.opts.Now())
		m.emit(mon, ev)
		// Checks start every interval (not an interval after the last one
		// ended), so that slow answers do not stretch the period; on the
		// probe grid (tick.go).
		t.Reset(onTick(start, ev.next))
	}
}

// event is what one probe's result changes.
type event struct {
	edge   bool // the state changed
	up     bool // the new state, when edge
	weight int32
	next   time.Duration // delay to the next probe
}

// observe folds one result into the state (rise, fall, retry delay).
func (mon *monitor[K]) observe(r Result, now time.Time) event {
	c := mon.spec.Check
	rise, fall := max(c.Rise, 1), max(c.Fall, 1)
	mon.mu.Lock()
	defer mon.mu.Unlock()
	st := &mon.st
	st.Checks++
	st.Probes++
	st.LastCheck = now
	ev := event{weight: -1, next: c.Interval}
	if r.Err == nil {
		st.LastOK, st.LastError = true, ""
		st.OKRun++
		st.FailRun = 0
		if !st.Up && st.OKRun >= rise {
			st.Up, st.LastChange = true, now
			st.Ups++
			ev.edge, ev.up = true, true
		}
		if r.Weight >= 0 && r.Weight != st.Weight {
			st.Weight = r.Weight
			ev.weight = r.Weight
		}
	} else {
		st.LastOK, st.LastError = false, r.Err.Error()
		st.FailRun++
		st.OKRun = 0
		if st.Up && st.FailRun >= fall {
			st.Up, st.LastChange = false, now
			st.Downs++
			ev.edge, ev.up = true, false
		} else if st.Up && c.DelayBeforeRetry > 0 {
			// A retry before the server is declared down.
			ev.next = c.DelayBeforeRetry
		}
	}
	if ev.next <= 0 {
		ev.next = config.DefaultCheckInterval
	}
	return ev
}

func (mon *monitor[K]) status() Status {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	return mon.st
}

// emit reports ev to the Sink, unless mon has been replaced meanwhile.
func (m *Manager[K]) emit(mon *monitor[K], ev event) {
	if !ev.edge && ev.weight < 0 {
		return
	}
	m.emitMu.Lock()
	defer m.emitMu.Unlock()
	m.mu.Lock()
	current := m.monitors[mon.key] == mon
	m.mu.Unlock()
	if !current {
		return
	}
	c := mon.spec.Check
	defer m.evalQuorum(mon.spec.Group, false)
	if ev.weight >= 0 {
		mon.log.Info("dynamic weight", "weight", ev.weight)
		m.sink.SetWeight(mon.key, ev.weight)
	}
	if !ev.edge {
		return
	}
	st := mon.status()
	if ev.up {
		mon.log.Info("real server up", "checks", st.Checks)
		m.sink.SetHealth(mon.key, true, c.InhibitOnFailure)
		m.notify(c.NotifyUp, mon, "up")
	} else {
		mon.log.Warn("real server down", "err", st.LastError, "checks", st.Checks)
		m.sink.SetHealth(mon.key, false, c.InhibitOnFailure)
		m.notify(c.NotifyDown, mon, "down")
	}
}

// StatusOf is Status with the check's type.
func (m *Manager[K]) StatusOf(k K) (Status, string, bool) {
	m.mu.Lock()
	mon := m.monitors[k]
	m.mu.Unlock()
	if mon == nil {
		return Status{}, "", false
	}
	return mon.status(), mon.spec.Check.Type, true
}
