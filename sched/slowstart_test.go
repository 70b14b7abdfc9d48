package sched

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// rampDur is a slow start of 63 s: the ramp is then 1 + whole seconds since
// StartRamp (1 at the start, 64 = lvs.RampSteps from 63 s on).
const rampDur = 63 * int64(time.Second)

// rampAt returns destinations of equal weight whose last one (B of A, B)
// started slow start at clock 0, and a clock set so that its ramp is r.
func rampAt(t *testing.T, n int, r int64) ([]*lvs.Dest, *fakeClock) {
	t.Helper()
	ds := equalWeights(n)
	last := ds[n-1]
	last.SlowStart.Store(rampDur)
	last.StartRamp(0)
	clk := &fakeClock{}
	clk.advance((r - 1) * int64(time.Second))
	if got := last.Ramp(clk.now()); got != r {
		t.Fatalf("ramp %d, want %d", got, r)
	}
	return ds, clk
}

// simulate schedules n new connections, each of which stays: it counts as
// active for sed and nq (which look at active connections only) and as
// inactive otherwise. It returns the picks per destination.
func simulate(t *testing.T, s Scheduler, ds []*lvs.Dest, n int, active bool) []int {
	t.Helper()
	got := make([]int, len(ds))
	for i := range n {
		d := s.Schedule(flow(clientAddr(i), uint16(1024+i%50000)))
		j := index(ds, d)
		if j < 0 {
			t.Fatalf("pick %d: no destination", i)
		}
		got[j]++
		if active {
			d.ActiveConns.Add(1)
		} else {
			d.InactiveConns.Add(1)
		}
	}
	return got
}

// TestSlowStartShares checks each weighted scheduler's share for a
// destination in slow start, against an equal partner: r/(64+r) of the new
// connections at ramp r, then half once the ramp is over.
func TestSlowStartShares(t *testing.T) {
	tests := []struct {
		sched  string
		active bool    // connections count as active (sed, nq)
		tol    float64 // allowed deviation of the share
	}{
		{sched: "wlc", tol: 0.001},
		{sched: "lc", tol: 0.001},
		{sched: "sed", active: true, tol: 0.001},
		{sched: "nq", active: true, tol: 0.001},
		{sched: "wrr", tol: 0.001},
		{sched: "twos", tol: 0.01},
	}
	for _, tt := range tests {
		for _, r := range []int64{1, 16, 32, 48, lvs.RampSteps} {
			t.Run(fmt.Sprintf("%s/ramp=%d", tt.sched, r), func(t *testing.T) {
				ds, clk := rampAt(t, 2, r)
				s := mustNew(t, tt.sched, ds, Options{Clock: clk.now})
				const n = 64 * 130
				got := simulate(t, s, ds, n, tt.active)
				want := float64(r) / float64(lvs.RampSteps+r)
				share := float64(got[1]) / n
				if math.Abs(share-want) > tt.tol {
					t.Errorf("share of the ramping destination %.4f (%d of %d), want %.4f", share, got[1], n, want)
				}
			})
		}
	}
}

// TestSlowStartWRRCycle checks wrr's exact cycle during and after a ramp: at
// ramp 16 of weights 1 and 1 a cycle gives B 16 of every 80; once the ramp is
// over the kernel's sequence comes back.
func TestSlowStartWRRCycle(t *testing.T) {
	ds, clk := rampAt(t, 2, 16)
	s := mustNew(t, "wrr", ds, Options{Clock: clk.now})
	tp := flow(clientAddr(0), 1)
	for c := range 3 {
		seq := sequence(s, ds, tp, 80)
		if a, b := countRune(seq, 'A'), countRune(seq, 'B'); a != 64 || b != 16 {
			t.Fatalf("cycle %d: A %d, B %d in %q; want 64 and 16", c, a, b, seq)
		}
	}
	// The end of the ramp is seen when the walk reaches B (the kernel's
	// update restarts the cycle from the head), and the kernel's alternation
	// comes back.
	clk.advance(rampDur)
	if got := sequence(s, ds, tp, 8); got != "AABABABA" {
		t.Errorf("after the ramp: %q, want AABABABA", got)
	}

	// Weights 4, 3, 2 with slow start configured but over: the kernel's cycle.
	ds = testDests(4, 3, 2)
	for _, d := range ds {
		d.SlowStart.Store(rampDur)
		d.StartRamp(0)
	}
	s = mustNew(t, "wrr", ds, Options{Clock: clk.now})
	if got := sequence(s, ds, tp, 18); got != "AABABCABCAABABCABC" {
		t.Errorf("weights 4 3 2 after their ramps: %q, want AABABCABC twice", got)
	}
	// A ramp that begins in the middle of a cycle is seen at once: C starts
	// over at 1/64 of its weight.
	ds[2].StartRamp(clk.now())
	seq := sequence(s, ds, tp, 4*64+3*64+2)
	if c := countRune(seq, 'C'); c != 2 {
		t.Errorf("C chosen %d times in %d picks at ramp 1, want 2: %q", c, len(seq), seq)
	}
}

func countRune(s string, r rune) int {
	n := 0
	for _, c := range s {
		if c == r {
			n++
		}
	}
	return n
}

// TestSlowStartOffIsKernel checks that destinations with slow start
// configured but not ramping get the kernel's choices: the same sequence as
// without slow start, for every scheduler.
func TestSlowStartOffIsKernel(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			plain := benchDests(16)
			slow := benchDests(16)
			for _, d := range slow {
				d.SlowStart.Store(rampDur)
				d.StartRamp(0)
			}
			clk := &fakeClock{}
			clk.advance(2 * rampDur)
			opts := v.opts
			opts.Clock = clk.now
			a := mustNew(t, v.sched, plain, opts)
			b := mustNew(t, v.sched, slow, opts)
			for i, tp := range benchFlows() {
				da, db := a.Schedule(tp), b.Schedule(tp)
				if index(plain, da) != index(slow, db) {
					t.Fatalf("flow %d: %s without slow start, %s with it over", i, label(plain, da), label(slow, db))
				}
				if da != nil {
					da.InactiveConns.Add(1)
					db.InactiveConns.Add(1)
				}
			}
		})
	}
}

// TestSlowStartAllocs fails if a scheduler allocates while destinations ramp.
func TestSlowStartAllocs(t *testing.T) {
	for _, name := range []string{"wrr", "lc", "wlc", "sed", "nq", "twos", "lblc", "lblcr"} {
		t.Run(name, func(t *testing.T) {
			ds := benchDests(16)
			for i, d := range ds {
				if i%2 == 0 {
					d.SlowStart.Store(rampDur)
					d.StartRamp(0)
				}
			}
			clk := &fakeClock{}
			clk.advance(rampDur / 3)
			s := mustNew(t, name, ds, Options{Clock: clk.now})
			ts := benchFlows()
			for _, tp := range ts {
				s.Schedule(tp)
			}
			i := 0
			if n := testing.AllocsPerRun(1000, func() { s.Schedule(ts[i%len(ts)]); i++ }); n > 0 {
				t.Errorf("Schedule allocates %v times per call during slow start", n)
			}
		})
	}
}

// TestMHQuiesceKeepsFlows checks that a destination quiesced with weight 0
// keeps its mh slots when the table is rebuilt (as the director rebuilds
// schedulers on reload): no other flow moves, and its own flows find no
// destination (or, with mh-fallback, another one) until its weight returns.
func TestMHQuiesceKeepsFlows(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			var opts Options
			if fallback {
				opts.Flags = []string{"mh-fallback"}
			}
			ds := equalWeights(4)
			before := mustNew(t, "mh", ds, opts)
			ts := flows(4000)
			want := make([]*lvs.Dest, len(ts))
			for i, tp := range ts {
				want[i] = before.Schedule(tp)
			}
			ds[1].SetWeight(0, 0)
			if got := ds[1].LastWeight.Load(); got != 1 {
				t.Fatalf("LastWeight after quiescing: %d, want 1", got)
			}
			after := mustNew(t, "mh", ds, opts)
			moved := 0
			for i, tp := range ts {
				got := after.Schedule(tp)
				switch {
				case want[i] != ds[1] && got != want[i]:
					moved++
				case want[i] == ds[1] && !fallback && got != nil:
					t.Fatalf("flow %d of the quiesced destination went to %s", i, label(ds, got))
				case want[i] == ds[1] && fallback && (got == nil || got == ds[1]):
					t.Fatalf("flow %d of the quiesced destination: %s, want a fallback", i, label(ds, got))
				}
			}
			if moved != 0 {
				t.Errorf("%d flows of other destinations moved when B was quiesced", moved)
			}
			ds[1].SetWeight(1, 0)
			back := mustNew(t, "mh", ds, opts)
			for i, tp := range ts {
				if got := back.Schedule(tp); got != want[i] {
					t.Fatalf("flow %d after B's weight returned: %s, want %s", i, label(ds, got), label(ds, want[i]))
				}
			}
		})
	}
}

// BenchmarkScheduleSlowStart is BenchmarkSchedule with half of 128
// destinations in slow start (the clock is read once per call), for the
// schedulers that honour it.
func BenchmarkScheduleSlowStart(b *testing.B) {
	for _, name := range []string{"wrr", "lc", "wlc", "sed", "nq", "twos"} {
		b.Run(name, func(b *testing.B) {
			ds := benchDests(128)
			for i, d := range ds {
				if i%2 == 0 {
					d.SlowStart.Store(rampDur)
					d.StartRamp(0)
				}
			}
			clk := &fakeClock{}
			clk.advance(rampDur / 3)
			s := mustNew(b, name, ds, Options{Clock: clk.now})
			ts := benchFlows()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s.Schedule(ts[i&255])
			}
		})
	}
}
