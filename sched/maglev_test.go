package sched

import (
	"math"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// maglevSlots counts the slots of each destination of ds in s's table.
func maglevSlots(ds []*lvs.Dest, s *maglevTable) []int {
	n := make([]int, len(ds))
	for _, b := range s.table {
		n[index(ds, s.backends[b])]++
	}
	return n
}

// TestMaglevShares checks that slot shares follow the weights within 1%
// (relative), and that every backend is within one slot of its exact share.
func TestMaglevShares(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		size    uint32
	}{
		{name: "weights 1 to 10", weights: []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "equal weights", weights: []int32{5, 5, 5, 5, 5, 5, 5}},
		{name: "one heavy", weights: []int32{1000, 1, 1, 1}},
		{name: "ipvsadm extremes", weights: []int32{65535, 1, 32768}},
		{name: "small table", weights: []int32{3, 1, 2}, size: 251},
		{name: "many backends", weights: func() []int32 {
			ws := make([]int32, 100)
			for i := range ws {
				ws[i] = int32(10 + i*7%50)
			}
			return ws
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			s := table[maglevTable](mustNew(t, "maglev", ds, Options{MaglevSize: tt.size}))
			m := float64(len(s.table))
			var total float64
			for _, w := range tt.weights {
				total += float64(w)
			}
			for i, n := range maglevSlots(ds, s) {
				want := m * float64(tt.weights[i]) / total
				if math.Abs(float64(n)-want) > 1 {
					t.Errorf("%s (weight %d): %d slots, want %.1f±1", label(ds, ds[i]), tt.weights[i], n, want)
				}
				if want >= 100 && math.Abs(float64(n)-want)/want > 0.01 {
					t.Errorf("%s (weight %d): share %.4f%%, want %.4f%% within 1%%",
						label(ds, ds[i]), tt.weights[i], 100*float64(n)/m, 100*want/m)
				}
			}
		})
	}
}

// TestMaglevEveryBackendHasASlot checks that a backend whose share rounds to
// no slot still gets one.
func TestMaglevEveryBackendHasASlot(t *testing.T) {
	ds := testDests(65535, 1, 65535)
	s := table[maglevTable](mustNew(t, "maglev", ds, Options{MaglevSize: 251}))
	want := []int{125, 1, 125}
	if diff := cmp.Diff(want, maglevSlots(ds, s)); diff != "" {
		t.Errorf("slots (-want +got):\n%s", diff)
	}
}

// TestMaglevListOrder checks that the table does not depend on the order of
// the destination list.
func TestMaglevListOrder(t *testing.T) {
	ds := testDests(3, 1, 4, 1, 5, 9, 2, 6)
	a := table[maglevTable](mustNew(t, "maglev", ds, Options{}))
	rev := slices.Clone(ds)
	slices.Reverse(rev)
	b := table[maglevTable](mustNew(t, "maglev", rev, Options{}))
	for i := range a.table {
		if a.backends[a.table[i]] != b.backends[b.table[i]] {
			t.Fatalf("slot %d: %v in list order, %v reversed", i, a.backends[a.table[i]], b.backends[b.table[i]])
		}
	}
}

// TestMaglevFallback makes backends unusable one after another: only their
// flows move, each to a usable backend, spread over all the others, and
// always to the same one.
func TestMaglevFallback(t *testing.T) {
	ds := equalWeights(10)
	s := mustNew(t, "maglev", ds, Options{})
	ts := flows(20000)
	home := make([]int, len(ts))
	for i, tp := range ts {
		home[i] = index(ds, s.Schedule(tp))
	}
	downs := []func(d *lvs.Dest){
		func(d *lvs.Dest) { d.Available.Store(false) },
		func(d *lvs.Dest) { d.Weight.Store(0) },
		func(d *lvs.Dest) { d.Overloaded.Store(true) },
	}
	down := map[int]bool{}
	for k, markDown := range downs {
		markDown(ds[k])
		down[k] = true
		moved := make([]int, len(ds))
		for i, tp := range ts {
			got := index(ds, s.Schedule(tp))
			switch {
			case got < 0 || down[got]:
				t.Fatalf("%d down: flow %d went to %d", len(down), i, got)
			case !down[home[i]] && got != home[i]:
				t.Fatalf("%d down: flow %d moved from %d to %d", len(down), i, home[i], got)
			case down[home[i]]:
				moved[got]++
				if again := index(ds, s.Schedule(tp)); again != got {
					t.Fatalf("flow %d went to %d then %d", i, got, again)
				}
			}
		}
		for i, n := range moved {
			if !down[i] && n == 0 {
				t.Errorf("%d down: no moved flow went to %d: %v", len(down), i, moved)
			}
		}
	}
	for _, d := range ds {
		d.Available.Store(false)
	}
	if d := s.Schedule(ts[0]); d != nil {
		t.Errorf("all down: got %v", d)
	}
}

func TestMaglevEmpty(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
	}{
		{name: "no destinations"},
		{name: "all quiescent", weights: []int32{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			s := mustNew(t, "maglev", ds, Options{})
			if d := s.Schedule(flow(clientAddr(1), 1)); d != nil {
				t.Errorf("got %v, want nil", d)
			}
		})
	}
}

// TestMaglevQuiescentAtBuild checks that a destination of weight 0 at New has
// no slot, so a later weight does not bring it flows before a rebuild.
func TestMaglevQuiescentAtBuild(t *testing.T) {
	ds := testDests(1, 0, 1)
	s := table[maglevTable](mustNew(t, "maglev", ds, Options{}))
	want := []int{32769, 0, 32768}
	if diff := cmp.Diff(want, maglevSlots(ds, s)); diff != "" {
		t.Errorf("slots (-want +got):\n%s", diff)
	}
}

func TestMaglevHashesTheFiveTuple(t *testing.T) {
	ds := equalWeights(16)
	s := mustNew(t, "maglev", ds, Options{})
	src := clientAddr(3)
	seen := map[*lvs.Dest]bool{}
	for p := range uint16(64) {
		seen[s.Schedule(flow(src, 40000+p))] = true
	}
	if len(seen) < 12 {
		t.Errorf("64 ports of one client reached %d destinations, want most of 16", len(seen))
	}
	base := flow(src, 1234)
	for _, tt := range []struct {
		name   string
		change func(tp *lvs.Tuple)
	}{
		{name: "protocol", change: func(tp *lvs.Tuple) { tp.Proto = lvs.UDP }},
		{name: "destination port", change: func(tp *lvs.Tuple) { tp.DPort = 443 }},
		{name: "destination address", change: func(tp *lvs.Tuple) { tp.Dst[15]++ }},
	} {
		tp := *base
		tt.change(&tp)
		if flowHash(&tp) == flowHash(base) {
			t.Errorf("changing the %s does not change the flow hash", tt.name)
		}
	}
}
