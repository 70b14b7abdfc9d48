package sched

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

func TestFailover(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		setup   func(ds []*lvs.Dest)
		want    string
	}{
		{name: "highest weight", weights: []int32{1, 3, 2}, want: "BBB"},
		{name: "first of equals", weights: []int32{1, 3, 3}, want: "BBB"},
		{
			name: "next when highest is unavailable", weights: []int32{1, 3, 3},
			setup: func(ds []*lvs.Dest) { ds[1].Available.Store(false) },
			want:  "CCC",
		},
		{
			name: "lowest when the others are overloaded", weights: []int32{1, 3, 3},
			setup: func(ds []*lvs.Dest) { ds[1].Overloaded.Store(true); ds[2].Overloaded.Store(true) },
			want:  "AAA",
		},
		{name: "connections do not matter", weights: []int32{2, 1},
			setup: func(ds []*lvs.Dest) { conns(ds[0], 1000, 0) }, want: "AA"},
		{name: "all quiescent", weights: []int32{0, 0}, want: "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			if tt.setup != nil {
				tt.setup(ds)
			}
			s := mustNew(t, "fo", ds, Options{})
			got := sequence(s, ds, nil, len(tt.want))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sequence (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOverflow counts each choice as a new active connection: a destination
// takes connections until it has weight+1 active ones, in weight order.
func TestOverflow(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		setup   func(ds []*lvs.Dest)
		want    string
	}{
		{name: "fills by weight order", weights: []int32{2, 3, 1}, want: "BBBB" + "AAA" + "CC" + "--"},
		{name: "first of equals first", weights: []int32{2, 2}, want: "AAA" + "BBB" + "-"},
		{
			name: "existing connections count", weights: []int32{2, 3},
			setup: func(ds []*lvs.Dest) { conns(ds[1], 3, 50) },
			want:  "B" + "AAA" + "-",
		},
		{
			name: "skips overloaded", weights: []int32{1, 3},
			setup: func(ds []*lvs.Dest) { ds[1].Overloaded.Store(true) },
			want:  "AA-",
		},
		{name: "skips quiescent", weights: []int32{0, 1}, want: "BB-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			if tt.setup != nil {
				tt.setup(ds)
			}
			s := mustNew(t, "ovf", ds, Options{})
			var got []byte
			for range len(tt.want) {
				d := s.Schedule(nil)
				got = append(got, label(ds, d)...)
				if d != nil {
					d.ActiveConns.Add(1)
				}
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("sequence (-want +got):\n%s", diff)
			}
		})
	}
}
