package health

import (
	"slices"
	"testing"
	"time"

	"github.com/lvsd/lvsd/config"
)

var passiveCfg = config.Passive{Enabled: true, Failures: 3, Interval: 10 * time.Second,
	BaseEjection: 30 * time.Second, MaxEjection: 100 * time.Second, MaxEjectedPercent: 50}

// passiveRig observes servers "a".."d" of one group every 2 s on a fake
// clock; fails holds their cumulative failure counts.
type passiveRig struct {
	p     *Passive[string]
	now   time.Time
	fails map[string]uint64
	down  map[string]bool
	keys  []string
	cfg   config.Passive
}

func newPassiveRig(keys ...string) *passiveRig {
	r := &passiveRig{p: NewPassive[string](), now: time.Unix(1e9, 0), fails: map[string]uint64{}, down: map[string]bool{}, keys: keys, cfg: passiveCfg}
	r.step(0) // the first observation sets the baselines
	return r
}

func (r *passiveRig) step(d time.Duration) []PassiveEdge[string] {
	r.now = r.now.Add(d)
	var obs []PassiveObs[string]
	for _, k := range r.keys {
		obs = append(obs, PassiveObs[string]{Key: k, Group: "svc", Failures: r.fails[k], Down: r.down[k], Config: r.cfg})
	}
	return r.p.Observe(r.now, obs)
}

func TestPassiveThreshold(t *testing.T) {
	r := newPassiveRig("a", "b", "c", "d")
	r.fails["a"] = 2
	if e := r.step(2 * time.Second); len(e) != 0 {
		t.Fatalf("edges below the threshold: %v", e)
	}
	// The window ends: two more failures in the next do not add to it.
	r.step(9 * time.Second)
	r.fails["a"] = 4
	if e := r.step(2 * time.Second); len(e) != 0 {
		t.Fatalf("edges with failures spread over two windows: %v", e)
	}
	r.fails["a"] = 5
	e := r.step(2 * time.Second)
	if want := []PassiveEdge[string]{{Key: "a", Eject: true, For: 30 * time.Second}}; !slices.Equal(e, want) {
		t.Fatalf("edges %v, want %v", e, want)
	}
	st, ok := r.p.StatusOf("a")
	if !ok || !st.Ejected || st.Failures != 5 || st.Ejections != 1 || !st.Until.Equal(r.now.Add(30*time.Second)) {
		t.Errorf("status %+v", st)
	}
	// Failures during the ejection change nothing; it ends on time.
	r.fails["a"] = 50
	if e := r.step(28 * time.Second); len(e) != 0 {
		t.Fatalf("edges during the ejection: %v", e)
	}
	if e := r.step(2 * time.Second); !slices.Equal(e, []PassiveEdge[string]{{Key: "a"}}) {
		t.Fatalf("edges at the end of the ejection: %v", e)
	}
	if _, ok := r.p.StatusOf("x"); ok {
		t.Error("status of an unknown server")
	}
}

// TestPassiveBackoff: each ejection in a series doubles, up to the
// maximum; a server in service for the maximum starts again.
func TestPassiveBackoff(t *testing.T) {
	r := newPassiveRig("a", "b")
	var got []time.Duration
	for range 4 {
		r.fails["a"] += 3
		e := r.step(2 * time.Second)
		if len(e) != 1 || !e[0].Eject {
			t.Fatalf("edges %v", e)
		}
		got = append(got, e[0].For)
		if e := r.step(e[0].For); len(e) != 1 || e[0].Eject {
			t.Fatalf("no return: %v", e)
		}
	}
	if want := []time.Duration{30 * time.Second, 60 * time.Second, 100 * time.Second, 100 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("ejection times %v, want %v", got, want)
	}
	r.step(100 * time.Second)
	r.fails["a"] += 3
	if e := r.step(2 * time.Second); len(e) != 1 || e[0].For != 30*time.Second {
		t.Errorf("after a quiet max_ejection_time: %v, want a base ejection", e)
	}
	// The series started again; the total (the metric's counter) did not.
	if st, _ := r.p.StatusOf("a"); st.Ejections != 1 || st.Total != 5 {
		t.Errorf("ejections %d, total %d; want 1 in the new series, 5 in all", st.Ejections, st.Total)
	}
}

// TestPassiveMaxShare: at most MaxEjectedPercent of a group, and never its
// last server in service (a server down by its check counts as out).
func TestPassiveMaxShare(t *testing.T) {
	r := newPassiveRig("a", "b", "c", "d")
	for _, k := range r.keys {
		r.fails[k] = 3
	}
	e := r.step(2 * time.Second)
	if want := []PassiveEdge[string]{{Key: "a", Eject: true, For: 30 * time.Second}, {Key: "b", Eject: true, For: 30 * time.Second}}; !slices.Equal(e, want) {
		t.Fatalf("edges %v, want %v (half of four)", e, want)
	}
	if st, _ := r.p.StatusOf("c"); st.Ejected || st.Held != 1 {
		t.Errorf("c: %+v, want held", st)
	}

	r = newPassiveRig("a", "b")
	r.cfg.MaxEjectedPercent = 100
	r.down["b"] = true // out by its active check
	r.fails["a"] = 3
	if e := r.step(2 * time.Second); len(e) != 0 {
		t.Fatalf("ejected the last server in service: %v", e)
	}
	r.down["b"] = false
	r.fails["a"] = 6
	if e := r.step(2 * time.Second); len(e) != 1 || e[0].Key != "a" {
		t.Fatalf("edges %v, want a ejected", e)
	}
	r.fails["b"] = 3
	if e := r.step(2 * time.Second); len(e) != 0 {
		t.Fatalf("ejected every server: %v", e)
	}

	r = newPassiveRig("a")
	r.fails["a"] = 100
	if e := r.step(2 * time.Second); len(e) != 0 {
		t.Fatalf("ejected a service's only server: %v", e)
	}
}

// TestPassiveConfirmAndDown: an active check's up edge ends an ejection
// without a passive edge; an ejection that ends while the check holds the
// server down ends without a return; a server dropped while ejected
// returns.
func TestPassiveConfirmAndDown(t *testing.T) {
	r := newPassiveRig("a", "b", "c")
	r.cfg.MaxEjectedPercent = 100
	r.fails["a"], r.fails["b"] = 3, 3
	if e := r.step(2 * time.Second); len(e) != 2 {
		t.Fatalf("edges %v", e)
	}
	r.p.Confirm("a", r.now)
	if st, _ := r.p.StatusOf("a"); st.Ejected {
		t.Error("a still ejected after its check confirmed it")
	}
	r.down["b"] = true
	if e := r.step(30 * time.Second); len(e) != 0 {
		t.Fatalf("edges %v, want none (a confirmed, b down by its check)", e)
	}
	r.down["b"] = false
	r.fails["c"] = 3
	if e := r.step(2 * time.Second); len(e) != 1 || e[0].Key != "c" || !e[0].Eject {
		t.Fatalf("edges %v", e)
	}
	r.keys = []string{"a", "b"}
	if e := r.step(2 * time.Second); !slices.Equal(e, []PassiveEdge[string]{{Key: "c"}}) {
		t.Fatalf("edges %v, want c returned when it leaves", e)
	}
}
