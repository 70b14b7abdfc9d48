package sched

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// server is one row of a least-connection table.
type server struct {
	weight, active, inactive int32
	down, overloaded         bool
}

func servers(rows ...server) []*lvs.Dest {
	ds := make([]*lvs.Dest, len(rows))
	for i, r := range rows {
		ds[i] = lvs.NewDest(destAddr(i), 80, lvs.DR, r.weight)
		conns(ds[i], r.active, r.inactive)
		ds[i].Available.Store(!r.down)
		ds[i].Overloaded.Store(r.overloaded)
	}
	return ds
}

func TestLeastConnFamily(t *testing.T) {
	tests := []struct {
		name    string
		sched   string
		servers []server
		want    string
	}{
		// lc: fewest active*256 + inactive, weight only as quiescence.
		{name: "lc fewest", sched: "lc", servers: []server{{1, 10, 0, false, false}, {1, 5, 0, false, false}, {1, 7, 0, false, false}}, want: "B"},
		{name: "lc inactive weighs 1/256", sched: "lc", servers: []server{{1, 1, 0, false, false}, {1, 0, 300, false, false}}, want: "A"},
		{name: "lc inactive breaks active tie", sched: "lc", servers: []server{{1, 1, 9, false, false}, {1, 1, 8, false, false}}, want: "B"},
		{name: "lc tie goes to the first", sched: "lc", servers: []server{{1, 2, 3, false, false}, {1, 2, 3, false, false}, {1, 2, 3, false, false}}, want: "A"},
		{name: "lc ignores weight", sched: "lc", servers: []server{{100, 5, 0, false, false}, {1, 4, 0, false, false}}, want: "B"},
		{name: "lc skips quiescent", sched: "lc", servers: []server{{0, 0, 0, false, false}, {1, 9, 0, false, false}}, want: "B"},
		{name: "lc skips unavailable", sched: "lc", servers: []server{{1, 0, 0, true, false}, {1, 9, 0, false, false}}, want: "B"},
		{name: "lc skips overloaded", sched: "lc", servers: []server{{1, 0, 0, false, true}, {1, 9, 0, false, false}}, want: "B"},
		{name: "lc none usable", sched: "lc", servers: []server{{0, 0, 0, false, false}, {1, 0, 0, true, false}}, want: "-"},

		// wlc: least (active*256 + inactive) / weight.
		{name: "wlc by ratio", sched: "wlc", servers: []server{{1, 10, 0, false, false}, {2, 15, 0, false, false}}, want: "B"},
		{name: "wlc equal ratio goes to the first", sched: "wlc", servers: []server{{1, 1, 0, false, false}, {2, 2, 0, false, false}}, want: "A"},
		{name: "wlc idle tie goes to the first", sched: "wlc", servers: []server{{1, 0, 0, false, false}, {10, 0, 0, false, false}}, want: "A"},
		{name: "wlc inactive counts", sched: "wlc", servers: []server{{1, 1, 0, false, false}, {1, 0, 257, false, false}}, want: "A"},
		{name: "wlc skips quiescent with fewer", sched: "wlc", servers: []server{{1, 9, 0, false, false}, {0, 0, 0, false, false}}, want: "A"},
		{name: "wlc skips unusable first", sched: "wlc", servers: []server{{5, 0, 0, true, false}, {5, 0, 0, false, true}, {1, 50, 0, false, false}}, want: "C"},
		{name: "wlc none usable", sched: "wlc", servers: []server{{0, 0, 0, false, false}}, want: "-"},

		// sed: least (active+1) / weight; inactive ignored.
		{name: "sed by expected delay", sched: "sed", servers: []server{{1, 1, 0, false, false}, {2, 2, 0, false, false}}, want: "B"},
		{name: "sed prefers the heavier idle server", sched: "sed", servers: []server{{1, 0, 0, false, false}, {10, 0, 0, false, false}}, want: "B"},
		{name: "sed ignores inactive", sched: "sed", servers: []server{{1, 0, 1000, false, false}, {1, 1, 0, false, false}}, want: "A"},
		{name: "sed tie goes to the first", sched: "sed", servers: []server{{2, 3, 0, false, false}, {1, 1, 0, false, false}}, want: "A"},
		{name: "sed skips unusable", sched: "sed", servers: []server{{9, 0, 0, false, true}, {1, 4, 0, false, false}}, want: "B"},

		// nq: an idle server at once, else as sed.
		{name: "nq prefers an idle server", sched: "nq", servers: []server{{10, 5, 0, false, false}, {1, 0, 0, false, false}}, want: "B"},
		{name: "nq first idle server", sched: "nq", servers: []server{{1, 3, 0, false, false}, {1, 0, 0, false, false}, {5, 0, 0, false, false}}, want: "B"},
		{name: "nq idle despite inactive", sched: "nq", servers: []server{{1, 1, 0, false, false}, {1, 0, 500, false, false}}, want: "B"},
		{name: "nq without idle is sed", sched: "nq", servers: []server{{1, 2, 0, false, false}, {3, 2, 0, false, false}}, want: "B"},
		{name: "nq sed tie goes to the first", sched: "nq", servers: []server{{2, 3, 0, false, false}, {1, 1, 0, false, false}}, want: "A"},
		{name: "nq idle but quiescent", sched: "nq", servers: []server{{0, 0, 0, false, false}, {1, 4, 0, false, false}}, want: "B"},
		{name: "nq idle but unavailable", sched: "nq", servers: []server{{1, 0, 0, true, false}, {1, 4, 0, false, false}}, want: "B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := servers(tt.servers...)
			s := mustNew(t, tt.sched, ds, Options{})
			got := label(ds, s.Schedule(flow(clientAddr(0), 1)))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("choice (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWeightedLeastConnShares feeds each choice back into the counters and
// checks that the active connections end proportional to the weights: exactly
// for wlc, within one for sed and nq, whose cost counts the new connection.
func TestWeightedLeastConnShares(t *testing.T) {
	weights := []int32{1, 2, 3, 4}
	want := []int32{100, 200, 300, 400}
	tests := []struct {
		name      string
		tolerance int32
	}{
		{name: "wlc", tolerance: 0},
		{name: "sed", tolerance: 1},
		{name: "nq", tolerance: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(weights...)
			s := mustNew(t, tt.name, ds, Options{})
			for range 1000 {
				s.Schedule(nil).ActiveConns.Add(1)
			}
			for i, d := range ds {
				if got := d.ActiveConns.Load(); got < want[i]-tt.tolerance || got > want[i]+tt.tolerance {
					t.Errorf("%s: %d active connections, want %d±%d", label(ds, d), got, want[i], tt.tolerance)
				}
			}
		})
	}
}
