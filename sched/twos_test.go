package sched

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// TestTwoChoicesPick drives the kernel's selection with chosen draws. With
// weights 1, 2, 3 the draws are reduced modulo 7 and pick A for 0-1, B for
// 2-3 and C for 4-6.
func TestTwoChoicesPick(t *testing.T) {
	tests := []struct {
		name   string
		r1, r2 uint32
		setup  func(ds []*lvs.Dest)
		want   string
	}{
		{name: "draw 0 is the first", r1: 0, r2: 0, want: "A"},
		{name: "draw at a boundary", r1: 1, r2: 1, want: "A"},
		{name: "draws reduced modulo total+1", r1: 7 + 2, r2: 7 + 3, want: "B"},
		{name: "last draw is the last", r1: 6, r2: 6, want: "C"},
		{name: "equal load keeps the first draw", r1: 2, r2: 4, want: "B"},
		{
			name: "second draw less loaded by weight", r1: 2, r2: 4,
			setup: func(ds []*lvs.Dest) { conns(ds[1], 1, 0); conns(ds[2], 1, 0) }, // 256/2 vs 256/3
			want:  "C",
		},
		{
			name: "first draw less loaded by weight", r1: 4, r2: 0,
			setup: func(ds []*lvs.Dest) { conns(ds[0], 1, 0); conns(ds[2], 2, 0) }, // 512/3 vs 256/1
			want:  "C",
		},
		{
			name: "unusable destinations take no draw", r1: 0, r2: 0,
			setup: func(ds []*lvs.Dest) { ds[0].Available.Store(false) }, // modulo 6: B for 0-2
			want:  "B",
		},
		{
			name: "nothing usable", r1: 3, r2: 5,
			setup: func(ds []*lvs.Dest) {
				for _, d := range ds {
					d.Weight.Store(0)
				}
			},
			want: "-",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(1, 2, 3)
			if tt.setup != nil {
				tt.setup(ds)
			}
			s := table[twoChoices](mustNew(t, "twos", ds, Options{}))
			if diff := cmp.Diff(tt.want, label(ds, s.pick(tt.r1, tt.r2))); diff != "" {
				t.Errorf("choice (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTwoChoicesDistribution checks the shares with equal load, where the
// first draw wins: (weight+1)/(total+1) for the first destination and
// weight/(total+1) for the others.
func TestTwoChoicesDistribution(t *testing.T) {
	ds := testDests(1, 2, 3)
	s := mustNew(t, "twos", ds, Options{})
	const n = 70000
	counts := make([]float64, len(ds))
	for range n {
		counts[index(ds, s.Schedule(nil))]++
	}
	for i, want := range []float64{2.0 / 7, 2.0 / 7, 3.0 / 7} {
		if got := counts[i] / n; math.Abs(got-want) > 0.01 {
			t.Errorf("%s: share %.3f, want %.3f", label(ds, ds[i]), got, want)
		}
	}
}

// TestTwoChoicesBalances feeds the choices back as active connections: the
// loads end near the weights.
func TestTwoChoicesBalances(t *testing.T) {
	ds := testDests(1, 2, 3, 4)
	s := mustNew(t, "twos", ds, Options{})
	for range 10000 {
		s.Schedule(nil).ActiveConns.Add(1)
	}
	for i, d := range ds {
		want := 1000 * float64(i+1)
		if got := float64(d.ActiveConns.Load()); math.Abs(got-want)/want > 0.05 {
			t.Errorf("%s: %v active, want %v±5%%", label(ds, d), got, want)
		}
	}
}

// TestTwoChoicesReproducible checks that two instances draw alike.
func TestTwoChoicesReproducible(t *testing.T) {
	a, b := testDests(1, 2, 3, 4, 5), testDests(1, 2, 3, 4, 5)
	sa, sb := mustNew(t, "twos", a, Options{}), mustNew(t, "twos", b, Options{})
	for i := range 1000 {
		if x, y := index(a, sa.Schedule(nil)), index(b, sb.Schedule(nil)); x != y {
			t.Fatalf("call %d: %d and %d", i, x, y)
		}
	}
}
