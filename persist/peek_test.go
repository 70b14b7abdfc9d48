package persist

import (
	"testing"
	"time"
)

// TestPeek: Peek returns the template Get would, without acquiring it,
// restarting its timer or removing an invalid one.
func TestPeek(t *testing.T) {
	e := newEnv(32)
	a := dest(1)
	k := e.pol.Key(tuple("192.0.2.10", 1, 80))
	if tp := e.tab.Peek(&k, e.clk.now()); tp != nil {
		t.Fatalf("Peek without a template: %v", tp)
	}
	tp := e.connect(t, tuple("192.0.2.10", 1, 80), a)
	tp.Release() // its connection ended: the timer alone keeps it
	deadline := tp.Deadline()
	e.clk.advance(time.Minute)
	for range 3 {
		if got := e.tab.Peek(&k, e.clk.now()); got != tp {
			t.Fatalf("Peek = %v, want the template", got)
		}
	}
	if tp.Controlled() != 0 || tp.Deadline() != deadline {
		t.Errorf("after Peek: controls %d (want 0), deadline moved %v", tp.Controlled(), time.Duration(tp.Deadline()-deadline))
	}

	// Unusable: Peek says none, as Get would, but leaves it in the table.
	a.Available.Store(false)
	if got := e.tab.Peek(&k, e.clk.now()); got != nil {
		t.Errorf("Peek of an unusable server's template = %v", got)
	}
	if tp.Removed() || e.tab.Len() != 1 {
		t.Errorf("Peek removed the template: removed %v, len %d", tp.Removed(), e.tab.Len())
	}
	a.Available.Store(true)
	// Expired (its timer ran out with no connection).
	e.clk.advance(300 * time.Second)
	if got := e.tab.Peek(&k, e.clk.now()); got != nil {
		t.Errorf("Peek of an expired template = %v", got)
	}
	if got := e.tab.Get(&k, e.clk.now()); got != nil {
		t.Errorf("Get of an expired template = %v", got)
	}
}
