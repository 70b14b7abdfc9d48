package health

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/config"
)

var errDown = errors.New("down")

func TestObserveRiseFall(t *testing.T) {
	type step struct {
		OK       bool
		WantUp   bool
		WantEdge bool
		WantNext time.Duration
	}
	c := &config.Check{Type: "tcp", Interval: time.Second, Rise: 3, Fall: 2, DelayBeforeRetry: 100 * time.Millisecond}
	tests := []struct {
		name  string
		start bool
		steps []step
	}{
		{"fall after two failures, retry delay between", true, []step{
			{true, true, false, time.Second},
			{false, true, false, 100 * time.Millisecond},
			{false, false, true, time.Second},
			{false, false, false, time.Second},
		}},
		{"one failure is forgiven", true, []step{
			{false, true, false, 100 * time.Millisecond},
			{true, true, false, time.Second},
			{false, true, false, 100 * time.Millisecond},
			{true, true, false, time.Second},
		}},
		{"rise after three successes", false, []step{
			{true, false, false, time.Second},
			{true, false, false, time.Second},
			{true, true, true, time.Second},
		}},
		{"flapping with rise 3 stays out", false, []step{
			{true, false, false, time.Second}, {false, false, false, time.Second},
			{true, false, false, time.Second}, {true, false, false, time.Second}, {false, false, false, time.Second},
			{true, false, false, time.Second}, {false, false, false, time.Second},
			{true, false, false, time.Second}, {true, false, false, time.Second}, {false, false, false, time.Second},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mon := &monitor[string]{spec: Spec[string]{Check: c}, st: Status{Up: tc.start, Weight: -1}}
			now := time.Unix(1000, 0)
			var ups, downs uint64
			for i, s := range tc.steps {
				r := pass
				if !s.OK {
					r = Result{Err: errDown, Weight: -1}
				}
				now = now.Add(time.Second)
				ev := mon.observe(r, now)
				st := mon.status()
				got := step{s.OK, st.Up, ev.edge, ev.next}
				if diff := cmp.Diff(s, got); diff != "" {
					t.Fatalf("step %d (-want +got):\n%s", i, diff)
				}
				if ev.edge && !st.LastChange.Equal(now) {
					t.Errorf("step %d: last change %v, want %v", i, st.LastChange, now)
				}
				if ev.edge && ev.up {
					ups++
				} else if ev.edge {
					downs++
				}
				if st.Ups != ups || st.Downs != downs {
					t.Errorf("step %d: transitions up %d down %d, want %d and %d", i, st.Ups, st.Downs, ups, downs)
				}
			}
		})
	}
}

// TestFlappingServerStaysOut drives a monitor with a fake clock: the
// server is up and down every 0.5 s, checked every 0.25 s, with rise 3.
func TestFlappingServerStaysOut(t *testing.T) {
	c := &config.Check{Type: "tcp", Interval: 250 * time.Millisecond, Rise: 3, Fall: 1}
	mon := &monitor[string]{spec: Spec[string]{Check: c}, st: Status{Up: true, Weight: -1}}
	clock := time.Unix(0, 0)
	var edges []bool
	for i := 0; i < 80; i++ { // 20 s of fake time
		up := (clock.UnixMilli()/500)%2 == 0
		r := pass
		if !up {
			r = Result{Err: errDown, Weight: -1}
		}
		ev := mon.observe(r, clock)
		if ev.edge {
			edges = append(edges, ev.up)
		}
		clock = clock.Add(ev.next)
	}
	if diff := cmp.Diff([]bool{false}, edges); diff != "" {
		t.Errorf("edges (-want +got):\n%s", diff)
	}
}

func TestDynamicWeightEdge(t *testing.T) {
	c := &config.Check{Type: "exec", Interval: time.Second, Rise: 1, Fall: 1, Dynamic: true}
	mon := &monitor[string]{spec: Spec[string]{Check: c}, st: Status{Up: true, Weight: -1}}
	var got []int32
	for _, w := range []int32{5, 5, 3, -1, 3} {
		ev := mon.observe(Result{Weight: w}, time.Unix(0, 0))
		got = append(got, ev.weight)
	}
	if diff := cmp.Diff([]int32{5, -1, 3, -1, -1}, got); diff != "" {
		t.Errorf("reported weights (-want +got):\n%s", diff)
	}
}

func waitCall(t *testing.T, s *fakeSink) call {
	t.Helper()
	select {
	case c := <-s.ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no sink call")
	}
	return call{}
}

func TestManagerEdgesAndReload(t *testing.T) {
	before := runtime.NumGoroutine()
	sink := newFakeSink()
	m := NewManager[string](sink, Options{})
	checkers := map[string]*scripted{}
	m.newChecker = func(c *config.Check, tg Target, _ Net) (Checker, error) {
		s := &scripted{}
		checkers[tg.Real.String()] = s
		return s, nil
	}
	chk := func(inhibit bool) *config.Check {
		return &config.Check{Type: "tcp", Interval: 10 * time.Millisecond, Warmup: time.Millisecond,
			Rise: 1, Fall: 2, InhibitOnFailure: inhibit}
	}
	tgt := func(s string) Target {
		return Target{Real: mustAP(s), Virtual: mustAP("192.0.2.100:80")}
	}
	specs := []Spec[string]{
		{Key: "a", Target: tgt("192.0.2.11:80"), Check: chk(false)},
		// Starts down (alpha): the first success brings it up.
		{Key: "b", Target: tgt("192.0.2.12:80"), Check: chk(true), Down: true},
	}
	if errs := m.Sync(specs); len(errs) > 0 {
		t.Fatal(errs)
	}
	if st, _ := m.Status("b"); st.Up {
		t.Fatal("b starts up, want down")
	}
	if len(sink.Calls()) != 0 {
		t.Fatalf("Sync called the sink: %+v", sink.Calls())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()

	if c := waitCall(t, sink); c != (call{key: "b", up: true, inhibit: true, weight: -1}) {
		t.Fatalf("call %+v, want b up after its first success", c)
	}
	checkers["192.0.2.11:80"].set(errDown)
	if c := waitCall(t, sink); c != (call{key: "a", up: false, weight: -1}) {
		t.Fatalf("call %+v, want a down", c)
	}
	st, ok := m.Status("a")
	if !ok || st.Up || st.FailRun < 2 || st.LastError != "down" {
		t.Fatalf("status of a: %+v", st)
	}

	// A reload with the same checks keeps the monitors and their state.
	m.mu.Lock()
	monA := m.monitors["a"]
	m.mu.Unlock()
	specs[0].Down = true
	m.Sync(specs)
	m.mu.Lock()
	same := m.monitors["a"] == monA
	m.mu.Unlock()
	if !same {
		t.Fatal("unchanged check got a new monitor")
	}
	// A changed check restarts, in the state the director has (down).
	specs[0].Check = chk(false)
	specs[0].Check.Fall = 3
	m.Sync(specs)
	m.mu.Lock()
	same = m.monitors["a"] == monA
	m.mu.Unlock()
	if same {
		t.Fatal("changed check kept its monitor")
	}
	if st, _ := m.Status("a"); st.Up || st.Checks != 0 {
		t.Fatalf("restarted monitor: %+v, want down with no checks", st)
	}
	checkers["192.0.2.11:80"].set(nil)
	if c := waitCall(t, sink); c != (call{key: "a", up: true, weight: -1}) {
		t.Fatalf("call %+v, want a up", c)
	}
	// Unchecked and removed servers have no monitor.
	specs[0].Check = nil
	m.Sync(specs[:1])
	if _, ok := m.Status("a"); ok {
		t.Fatal("monitor of an unchecked server")
	}
	if _, ok := m.Status("b"); ok {
		t.Fatal("monitor of a removed server still in force")
	}
	cancel()
	<-done
	time.Sleep(10 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after Run, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
