package director

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// changeCounter counts the running table's changes (their log line).
type changeCounter struct{ n atomic.Int64 }

func (c *changeCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *changeCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "running table changed" {
		c.n.Add(1)
	}
	return nil
}
func (c *changeCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *changeCounter) WithGroup(string) slog.Handler      { return c }

// edgeTestDirector is a rr service of .21 to .26, counting its changes
// from now on.
func edgeTestDirector(t *testing.T) (*testDirector, *changeCounter) {
	td := newTestDirector(t, strings.Replace(realsConf("",
		"192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1", "192.0.2.24 1", "192.0.2.25 1", "192.0.2.26 1"),
		`scheduler = "wrr"`, `scheduler = "rr"`, 1))
	c := new(changeCounter)
	td.d.mu.Lock()
	td.d.log = slog.New(c)
	td.d.mu.Unlock()
	return td, c
}

// edge is one step of a scenario: real server .addr up or down (with
// inhibit: weight 0).
type edge struct {
	addr    string
	up      bool
	inhibit bool
}

func (e edge) healthEdge() healthEdge {
	up, inhibit := e.up, e.inhibit
	return healthEdge{k: realKey("192.0.2." + e.addr), origin: "health", edit: func(s *realState) {
		s.down, s.inhibit = !up, !up && inhibit
	}}
}

// TestEdgeBatchesSorryAndInhibit: the sorry server and inhibit_on_failure
// come out of a batch as out of the same edges one by one.
func TestEdgeBatchesSorryAndInhibit(t *testing.T) {
	conf := realsConf(`sorry_server = "192.0.2.99:8080"`, "192.0.2.21 2", "192.0.2.22 1", "192.0.2.23 1")
	batched, seq := newTestDirector(t, conf), newTestDirector(t, conf)
	c := new(changeCounter)
	batched.d.mu.Lock()
	batched.d.log = slog.New(c)
	batched.d.mu.Unlock()
	waves := []struct {
		edges []edge
		runs  int64
		list  string
	}{
		{[]edge{{"22", false, false}, {"21", false, false}, {"23", false, false}}, 1, "99"},
		{[]edge{{"23", true, false}, {"21", true, false}}, 1, "21 23"},
		// Weight 0 then removal: an update, then an unlink, cut.
		{[]edge{{"21", false, true}, {"23", false, false}, {"22", true, false}}, 2, "22 21"},
		{[]edge{{"21", true, false}, {"22", false, true}}, 1, "22 21"},
	}
	port := uint16(1000)
	for i, w := range waves {
		before := c.n.Load()
		var batch []healthEdge
		for _, e := range w.edges {
			batch = append(batch, e.healthEdge())
			mustOK(t, seq.d.SetRealHealth(realKey("192.0.2."+e.addr), e.up, e.inhibit))
		}
		batched.d.mu.Lock()
		batched.d.applyEdges(batch)
		batched.d.mu.Unlock()
		if got := c.n.Load() - before; got != w.runs {
			t.Errorf("wave %d: %d changes, want %d", i, got, w.runs)
		}
		if b, s := batched.list(), seq.list(); b != w.list || s != w.list {
			t.Errorf("wave %d: list %q batched, %q one by one; want %q", i, b, s, w.list)
		}
		if b, s := batched.connects(port, 6), seq.connects(port, 6); b != s {
			t.Errorf("wave %d: wrr picks %q batched, %q one by one", i, b, s)
		}
		port += 100
	}
}

// TestEdgeBatchesMatchSequentialEdges: a batch of edges applied together
// costs one change per run (unlinks, then links; a server twice cuts the
// run) and leaves the list, and rr's cursor, exactly as the same edges
// applied one by one (separate ipvsadm -d / -a commands).
func TestEdgeBatchesMatchSequentialEdges(t *testing.T) {
	waves := []struct {
		edges []edge
		runs  int64
	}{
		{[]edge{{"22", false, false}, {"24", false, false}, {"21", false, false}}, 1},
		// Links in the order they happened: .21 ends at the head.
		{[]edge{{"24", true, false}, {"21", true, false}}, 1},
		// An unlink after a link cuts the run: rr's cursor moves as it
		// would between separate commands.
		{[]edge{{"26", false, false}, {"22", true, false}, {"25", false, false}, {"23", false, false}, {"26", true, false}}, 2},
		// A bounce within a batch: .24 goes to the head, as -d then -a.
		{[]edge{{"24", false, false}, {"24", true, false}}, 2},
	}
	batched, bc := edgeTestDirector(t)
	seq, _ := edgeTestDirector(t)
	port := uint16(1000)
	for i, w := range waves {
		before := bc.n.Load()
		var batch []healthEdge
		for _, e := range w.edges {
			batch = append(batch, e.healthEdge())
			mustOK(t, seq.d.SetRealHealth(realKey("192.0.2."+e.addr), e.up, false))
		}
		batched.d.mu.Lock()
		batched.d.applyEdges(batch)
		batched.d.mu.Unlock()
		if got := bc.n.Load() - before; got != w.runs {
			t.Errorf("wave %d: %d changes, want %d", i, got, w.runs)
		}
		if b, s := batched.list(), seq.list(); b != s {
			t.Errorf("wave %d: list %q batched, %q one by one", i, b, s)
		}
		if b, s := batched.connects(port, 7), seq.connects(port, 7); b != s {
			t.Errorf("wave %d: rr picks %q batched, %q one by one", i, b, s)
		}
		port += 100
	}

	// An unlink after a link is a run of its own even when the two could
	// share a change's del-then-add: with rr's cursor on the head, -a X
	// then -d head leaves the cursor on X (the head's predecessor by
	// then), while -d head then -a X would leave it at the list's start.
	head := strings.Fields(seq.list())[0]
	for range 10 {
		if batched.connects(port, 1) == head && seq.connects(port, 1) == head {
			break
		}
		port++
	}
	before := bc.n.Load()
	batch := []healthEdge{edge{"25", true, false}.healthEdge(), edge{head, false, false}.healthEdge()}
	mustOK(t, seq.d.SetRealHealth(realKey("192.0.2.25"), true, false))
	mustOK(t, seq.d.SetRealHealth(realKey("192.0.2."+head), false, false))
	batched.d.mu.Lock()
	batched.d.applyEdges(batch)
	batched.d.mu.Unlock()
	if got := bc.n.Load() - before; got != 2 {
		t.Errorf("link then unlink: %d changes, want 2", got)
	}
	port += 100
	if b, s := batched.connects(port, 7), seq.connects(port, 7); b != s {
		t.Errorf("link then unlink of the head under rr's cursor: picks %q batched, %q one by one", b, s)
	}
}

// TestSimultaneousEdgesOneChange: edges that arrive while a change runs
// (here: while d.mu is held) are applied together by one change, in the
// background: the sink does not wait for it.
func TestSimultaneousEdgesOneChange(t *testing.T) {
	td, c := edgeTestDirector(t)
	sink := (*healthSink)(td.d)
	keys := []RealKey{realKey("192.0.2.21"), realKey("192.0.2.23"), realKey("192.0.2.25"), realKey("192.0.2.26")}
	td.d.mu.Lock()
	done := make(chan struct{})
	go func() { healthWave(sink, keys, false); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		td.d.edges.mu.Lock()
		n := len(td.d.edges.pending)
		td.d.edges.mu.Unlock()
		if n == len(keys) {
			break
		}
		if time.Now().After(deadline) {
			td.d.mu.Unlock()
			t.Fatalf("%d edges queued, want %d", n, len(keys))
		}
		time.Sleep(time.Millisecond)
	}
	before := c.n.Load()
	td.d.mu.Unlock()
	<-done
	if got := c.n.Load() - before; got != 1 {
		t.Errorf("%d simultaneous edges: %d changes, want 1", len(keys), got)
	}
	if got := td.list(); got != "24 22" {
		t.Errorf("list %q, want 24 22", got)
	}
	// A lone edge is applied at once, by its own change.
	before = c.n.Load()
	sink.SetHealth(realKey("192.0.2.23"), true, false)
	td.d.waitEdges()
	if got := td.list(); got != "23 24 22" || c.n.Load()-before != 1 {
		t.Errorf("lone edge: list %q after %d changes, want 23 24 22 after 1", got, c.n.Load()-before)
	}
}
