package sched

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

func TestWeightedRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		setup   func(ds []*lvs.Dest)
		want    string
	}{
		{
			name:    "kernel cycle for 4 3 2",
			weights: []int32{4, 3, 2},
			want:    strings.Repeat("AABABCABC", 3),
		},
		{name: "equal weights are round robin", weights: []int32{1, 1, 1}, want: "ABCABC"},
		{name: "cw steps by the gcd", weights: []int32{4, 2}, want: "AABAAB"},
		{name: "gcd of large weights", weights: []int32{300, 200, 100}, want: "AABABC" + "AABABC"},
		{name: "quiescent never chosen", weights: []int32{3, 0, 1}, want: "AAAC" + "AAAC"},
		{
			// An unavailable destination counts as removed: the cycle is
			// the one for weights 3 and 2.
			name: "unavailable leaves the cycle", weights: []int32{4, 3, 2},
			setup: func(ds []*lvs.Dest) { ds[0].Available.Store(false) },
			want:  "BBCBC" + "BBCBC",
		},
		{
			// An overloaded destination stays in the cycle's arithmetic
			// (the kernel's list keeps it) but is never chosen.
			name: "overloaded skipped", weights: []int32{4, 3, 2},
			setup: func(ds []*lvs.Dest) { ds[0].Overloaded.Store(true) },
			want:  "BBCBC" + "BBCBC",
		},
		{name: "all quiescent", weights: []int32{0, 0}, want: "---"},
		{name: "no destinations", weights: nil, want: "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			if tt.setup != nil {
				tt.setup(ds)
			}
			s := mustNew(t, "wrr", ds, Options{})
			got := sequence(s, ds, flow(clientAddr(0), 1), len(tt.want))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sequence (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWeightedRoundRobinWeightChange follows the kernel's update on a
// weight change (restart from the head, new gcd and maximum, cw kept when
// valid), which wrr applies when its walk next reaches the changed
// destination.
func TestWeightedRoundRobinWeightChange(t *testing.T) {
	tests := []struct {
		name   string
		before []int32
		picks  int // before the change
		change func(ds []*lvs.Dest)
		want   string // after the change
	}{
		{
			// B is reached (and the change seen) on the second call: the
			// first still uses the old cycle. Then B A-cycle of 3:1.
			name:   "weight raised",
			before: []int32{1, 1}, picks: 2,
			change: func(ds []*lvs.Dest) { ds[1].Weight.Store(3) },
			want:   "A" + "ABBB" + "ABBB",
		},
		{
			name:   "weight dropped to zero",
			before: []int32{4, 3, 2}, picks: 4,
			change: func(ds []*lvs.Dest) { ds[0].Weight.Store(0) },
			// B and C finish the pass for cw 2; A is seen at 0 on the
			// next walk, which then runs the 3 2 cycle from cw 1.
			want: "BC" + "BC" + "BBCBC",
		},
		{
			name:   "all quiescent then one back",
			before: []int32{0, 0}, picks: 2,
			change: func(ds []*lvs.Dest) { ds[1].Weight.Store(2) },
			want:   "BBB",
		},
		{
			name:   "destination becomes unavailable",
			before: []int32{1, 1}, picks: 1,
			change: func(ds []*lvs.Dest) { ds[0].Available.Store(false) },
			want:   "BBB",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.before...)
			s := mustNew(t, "wrr", ds, Options{})
			tp := flow(clientAddr(0), 1)
			sequence(s, ds, tp, tt.picks)
			tt.change(ds)
			got := sequence(s, ds, tp, len(tt.want))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sequence after the change (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWeightedRoundRobinShares checks the counts over whole cycles against
// the weights.
func TestWeightedRoundRobinShares(t *testing.T) {
	weights := []int32{7, 5, 3, 3, 1, 0}
	ds := testDests(weights...)
	s := mustNew(t, "wrr", ds, Options{})
	const cycles = 10
	got := make([]int32, len(ds))
	for range 19 * cycles {
		got[index(ds, s.Schedule(nil))]++
	}
	want := make([]int32, len(ds))
	for i, w := range weights {
		want[i] = w * cycles
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}
