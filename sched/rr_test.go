package sched

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		setup   func(ds []*lvs.Dest)
		want    string
	}{
		{name: "list order", weights: []int32{1, 1, 1}, want: "ABCABCA"},
		{name: "weights above 0 do not matter", weights: []int32{5, 1, 3}, want: "ABCABC"},
		{name: "quiescent skipped", weights: []int32{1, 0, 1}, want: "ACACA"},
		{
			name: "unavailable skipped", weights: []int32{1, 1, 1},
			setup: func(ds []*lvs.Dest) { ds[1].Available.Store(false) },
			want:  "ACAC",
		},
		{
			name: "overloaded skipped", weights: []int32{1, 1, 1},
			setup: func(ds []*lvs.Dest) { ds[0].Overloaded.Store(true) },
			want:  "BCBC",
		},
		{name: "none usable", weights: []int32{0, 0}, want: "--"},
		{name: "no destinations", weights: nil, want: "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			if tt.setup != nil {
				tt.setup(ds)
			}
			s := mustNew(t, "rr", ds, Options{})
			got := sequence(s, ds, flow(clientAddr(0), 1), len(tt.want))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sequence (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRoundRobinPosition checks that the position survives destinations
// becoming unusable and usable again, as the kernel's list cursor does.
func TestRoundRobinPosition(t *testing.T) {
	ds := testDests(1, 1, 1)
	s := mustNew(t, "rr", ds, Options{})
	tp := flow(clientAddr(0), 1)
	var got []string
	got = append(got, sequence(s, ds, tp, 2)) // A B
	ds[2].Weight.Store(0)
	got = append(got, sequence(s, ds, tp, 2)) // C skipped: A B
	ds[2].Weight.Store(1)
	got = append(got, sequence(s, ds, tp, 2)) // resumes after B: C A
	want := []string{"AB", "AB", "CA"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sequences (-want +got):\n%s", diff)
	}
}
