package health

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lvsd/lvsd/config"
)

// A real server's transition counts go on across a restart of its check
// (a changed check, a check removed and given again), and start again at 0
// only for a server removed and added again.
func TestTransitionsSurviveCheckRestart(t *testing.T) {
	sink := newFakeSink()
	m := NewManager[string](sink, Options{})
	var mu sync.Mutex
	var last *scripted
	m.newChecker = func(*config.Check, Target, Net) (Checker, error) {
		mu.Lock()
		defer mu.Unlock()
		last = &scripted{}
		return last, nil
	}
	chk := func(interval time.Duration) *config.Check {
		return &config.Check{Type: "tcp", Interval: interval, Warmup: time.Millisecond, Rise: 1, Fall: 1}
	}
	spec := Spec[string]{Key: "a", Target: Target{Real: mustAP("192.0.2.11:80")}, Check: chk(10 * time.Millisecond)}
	m.Sync([]Spec[string]{spec})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	mu.Lock()
	last.set(errDown)
	mu.Unlock()
	if c := waitCall(t, sink); c.up {
		t.Fatalf("call %+v, want a down", c)
	}
	downs := func() uint64 {
		st, ok := m.Status("a")
		if !ok {
			t.Fatal("a is not checked")
		}
		return st.Downs
	}
	if n := downs(); n != 1 {
		t.Fatalf("%d transitions down, want 1", n)
	}
	// Probes (the checks_total counter) go on as well.
	var probes uint64
	for probes < 5 {
		time.Sleep(10 * time.Millisecond)
		st, _ := m.Status("a")
		probes = st.Probes
	}
	// A changed check: a new monitor (down, as the director says).
	spec.Down = true
	spec.Check = chk(20 * time.Millisecond)
	m.Sync([]Spec[string]{spec})
	if n := downs(); n != 1 {
		t.Errorf("after a changed check: %d transitions down, want 1", n)
	}
	if st, _ := m.Status("a"); st.Probes < probes {
		t.Errorf("after a changed check: probes %d, want at least the first check's %d", st.Probes, probes)
	}
	// The check removed, then given again.
	spec.Check = nil
	m.Sync([]Spec[string]{spec})
	if _, ok := m.Status("a"); ok {
		t.Fatal("a is checked without a check")
	}
	spec.Check = chk(10 * time.Millisecond)
	m.Sync([]Spec[string]{spec})
	if n := downs(); n != 1 {
		t.Errorf("after the check was removed and given again: %d transitions down, want 1", n)
	}
	// The server removed: its counts go with it.
	m.Sync(nil)
	m.Sync([]Spec[string]{spec})
	if n := downs(); n != 0 {
		t.Errorf("a server removed and added again: %d transitions down, want 0", n)
	}
}
