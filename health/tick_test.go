package health

import (
	"testing"
	"time"
)

func TestTickDelay(t *testing.T) {
	const grid = 10 * time.Millisecond
	base := time.Unix(1_700_000_000, 0) // on the grid
	for _, tc := range []struct {
		name string
		now  time.Time
		from time.Time
		d    time.Duration
		grid time.Duration
		want time.Duration
	}{
		// A probe that started 2 ms late (timer slack) is due again one
		// interval after its grid point, not 2 ms later: no drift.
		{name: "late start keeps the period", now: base.Add(5 * time.Millisecond), from: base.Add(2 * time.Millisecond),
			d: time.Second, grid: grid, want: time.Second - 5*time.Millisecond},
		{name: "rounds up past half a tick", now: base, from: base, d: 6 * time.Millisecond, grid: grid, want: grid},
		{name: "rounds down below half a tick", now: base, from: base, d: 14 * time.Millisecond, grid: grid, want: grid},
		{name: "at least a millisecond", now: base.Add(9 * time.Millisecond), from: base, d: 3 * time.Millisecond, grid: grid,
			want: time.Millisecond},
		{name: "no grid", now: base.Add(3 * time.Millisecond), from: base, d: 7 * time.Millisecond, grid: 0, want: 4 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tickDelay(tc.now, tc.from, tc.d, tc.grid)
			if got != tc.want {
				t.Fatalf("tickDelay = %v, want %v", got, tc.want)
			}
			if tc.grid > 0 && got > time.Millisecond && tc.now.Add(got).UnixNano()%int64(tc.grid) != 0 {
				t.Fatalf("fires at %v, off the %v grid", tc.now.Add(got), tc.grid)
			}
		})
	}
	// Over many periods the probes of one monitor stay on one slot.
	now := base.Add(3 * time.Millisecond)
	for range 100 {
		start := now.Add(time.Duration(now.UnixNano()%3) * time.Millisecond) // 0 to 2 ms of slack
		next := start.Add(tickDelay(start.Add(time.Millisecond), start, time.Second, grid) + time.Millisecond)
		now = next
	}
	if off := now.Sub(base) - 100*time.Second; off < 0 || off > grid {
		t.Fatalf("after 100 periods of 1 s: %v past the start's slot, want within one tick", off)
	}
}
