package sched

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// origin is destination address i of a cache cluster (the flow's Dst):
// 192.0.2.200+i for i < 50, 2001:db8:e::i beyond.
func origin(i int) lvs.Addr {
	if i < 50 {
		return lvs.AddrFromNetip(netip.AddrFrom4([4]byte{192, 0, 2, byte(200 + i)}))
	}
	var a [16]byte
	copy(a[:], netip.MustParseAddr("2001:db8:e::").AsSlice())
	binary.BigEndian.PutUint32(a[12:], uint32(i))
	return lvs.Addr(a)
}

// toOrigin is a flow from a fixed client to origin i.
func toOrigin(i int) *lvs.Tuple {
	tp := flow(clientAddr(0), 1)
	tp.Dst = origin(i)
	return tp
}

// localityStep changes the servers, then schedules a flow to origin dst.
type localityStep struct {
	do   func(ds []*lvs.Dest)
	dst  int
	want string
}

func runLocality(t *testing.T, s Scheduler, ds []*lvs.Dest, steps []localityStep) {
	t.Helper()
	var got, want []string
	for _, st := range steps {
		if st.do != nil {
			st.do(ds)
		}
		got = append(got, label(ds, s.Schedule(toOrigin(st.dst))))
		want = append(want, st.want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("choices (-want +got):\n%s", diff)
	}
}

func TestLBLC(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		steps   []localityStep
	}{
		{
			name: "first choice is wlc", weights: []int32{1, 1},
			steps: []localityStep{{do: func(ds []*lvs.Dest) { conns(ds[0], 5, 0); conns(ds[1], 1, 0) }, want: "B"}},
		},
		{
			name: "cached server kept while not overloaded", weights: []int32{4, 4},
			steps: []localityStep{
				{want: "A"},
				{do: func(ds []*lvs.Dest) { conns(ds[0], 4, 100) }, want: "A"},
			},
		},
		{
			name: "overloaded by the kernel's rule moves", weights: []int32{2, 4},
			steps: []localityStep{
				{want: "A"},
				// A has 3 > 2 active; B has 1*2 < 4: B is less loaded.
				{do: func(ds []*lvs.Dest) { conns(ds[0], 3, 0); conns(ds[1], 1, 0) }, want: "B"},
				// The entry now holds B.
				{do: func(ds []*lvs.Dest) { conns(ds[0], 0, 0) }, want: "B"},
			},
		},
		{
			name: "over weight without a less loaded server stays", weights: []int32{2, 2},
			steps: []localityStep{
				{want: "A"},
				{do: func(ds []*lvs.Dest) { conns(ds[0], 3, 0); conns(ds[1], 1, 0) }, want: "A"},
			},
		},
		{
			name: "cached quiescent moves", weights: []int32{1, 1},
			steps: []localityStep{
				{want: "A"},
				{do: func(ds []*lvs.Dest) { ds[0].Weight.Store(0) }, want: "B"},
				{do: func(ds []*lvs.Dest) { ds[0].Weight.Store(1) }, want: "B"},
			},
		},
		{
			name: "cached unavailable moves", weights: []int32{1, 1},
			steps: []localityStep{
				{want: "A"},
				{do: func(ds []*lvs.Dest) { ds[0].Available.Store(false) }, want: "B"},
			},
		},
		{
			// The kernel's lblc does not test IP_VS_DEST_F_OVERLOAD for
			// the cached server; the first choice (wlc) does.
			name: "cached over threshold stays", weights: []int32{1, 1},
			steps: []localityStep{
				{want: "A"},
				{do: func(ds []*lvs.Dest) { ds[0].Overloaded.Store(true) }, want: "A"},
				{dst: 1, want: "B"},
			},
		},
		{
			name: "addresses are independent", weights: []int32{1, 1},
			steps: []localityStep{
				{dst: 0, want: "A"},
				{do: func(ds []*lvs.Dest) { conns(ds[0], 1, 0) }, dst: 1, want: "B"},
				{dst: 0, want: "A"},
				{dst: 60, want: "B"}, // IPv6
				{dst: 60, want: "B"},
			},
		},
		{
			name: "nothing usable", weights: []int32{0, 0},
			steps: []localityStep{{want: "-"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			runLocality(t, mustNew(t, "lblc", ds, Options{}), ds, tt.steps)
		})
	}
}

func TestLBLCR(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		steps   []localityStep
	}{
		{
			name: "new set takes wlc", weights: []int32{1, 1},
			steps: []localityStep{{do: func(ds []*lvs.Dest) { conns(ds[0], 1, 0) }, want: "B"}},
		},
		{
			name: "overload replicates, then least loaded member", weights: []int32{2, 4},
			steps: []localityStep{
				{want: "A"},
				// Overloaded by the kernel's rule: B joins the set.
				{do: func(ds []*lvs.Dest) { conns(ds[0], 3, 0); conns(ds[1], 1, 0) }, want: "B"},
				// The set {B, A} serves its least loaded member.
				{do: func(ds []*lvs.Dest) { conns(ds[0], 0, 0) }, want: "A"},
				// A tie goes to the newest member.
				{do: func(ds []*lvs.Dest) { conns(ds[1], 0, 0) }, want: "B"},
			},
		},
		{
			name: "servers outside the set are not used while the set serves", weights: []int32{1, 1, 1},
			steps: []localityStep{
				{want: "A"},
				{do: func(ds []*lvs.Dest) { conns(ds[0], 1, 0) }, want: "A"},
			},
		},
		{
			name: "unusable member is skipped", weights: []int32{2, 4, 1},
			steps: []localityStep{
				{want: "A"},
				{do: func(ds []*lvs.Dest) { conns(ds[0], 3, 0); conns(ds[1], 1, 0); conns(ds[2], 1, 0) }, want: "B"},
				{do: func(ds []*lvs.Dest) { ds[1].Weight.Store(0); conns(ds[0], 0, 0) }, want: "A"},
				// No usable member: wlc over all, and C joins.
				{do: func(ds []*lvs.Dest) { ds[0].Available.Store(false) }, want: "C"},
			},
		},
		{
			name: "nothing usable", weights: []int32{0},
			steps: []localityStep{{want: "-"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			runLocality(t, mustNew(t, "lblcr", ds, Options{}), ds, tt.steps)
		})
	}
}

// members returns the labels of lblcr's set for origin i, newest first.
func members(s *lblcr, ds []*lvs.Dest, i int) string {
	a := origin(i)
	en := s.tab.get(&a)
	if en == nil {
		return "none"
	}
	var b []byte
	for _, d := range en.v.members {
		b = append(b, label(ds, d)...)
	}
	return string(b)
}

// TestLBLCRSetExpiry checks that a set unchanged for lblcr_expiration drops
// its most loaded member, and that a choice still made from the old set is
// served.
func TestLBLCRSetExpiry(t *testing.T) {
	var clk fakeClock
	ds := testDests(2, 4)
	s := mustNew(t, "lblcr", ds, Options{Clock: clk.now, LBLCRExpiration: time.Minute}).(*lblcr)
	var got []string
	step := func() {
		got = append(got, label(ds, s.Schedule(toOrigin(0)))+":"+members(s, ds, 0))
	}
	step()
	conns(ds[0], 3, 0)
	conns(ds[1], 1, 0)
	step() // replicated at t=0
	clk.advance(int64(time.Minute))
	step() // not yet past lastmod + expiration
	clk.advance(1)
	step() // A, the most loaded, leaves; B still serves
	want := []string{"A:A", "B:BA", "B:BA", "B:B"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("choice:set (-want +got):\n%s", diff)
	}
}

// TestLocalityFullCheck checks the kernel's full expiration: every 30th
// tick of the check timer (30 minutes) drops the entries unused for the
// expiration.
func TestLocalityFullCheck(t *testing.T) {
	for _, name := range []string{"lblc", "lblcr"} {
		t.Run(name, func(t *testing.T) {
			var clk fakeClock
			ds := testDests(1, 1)
			s := mustNew(t, name, ds, Options{
				Clock: clk.now, LBLCExpiration: 10 * time.Minute, LBLCRExpiration: 10 * time.Minute,
			})
			has := func(i int) bool {
				a := origin(i)
				switch s := s.(type) {
				case *lblc:
					return s.tab.get(&a) != nil
				case *lblcr:
					return s.tab.get(&a) != nil
				}
				panic("not a locality scheduler")
			}
			tick := s.(Ticker).Tick
			clk.advance(int64(time.Second))
			s.Schedule(toOrigin(1)) // used once, at 1s
			for k := 1; k < 30; k++ {
				clk.ns.Store(int64(k) * int64(time.Minute))
				s.Schedule(toOrigin(2)) // kept fresh
				tick(clk.now())
			}
			if !has(1) || !has(2) {
				t.Fatalf("before the 30th tick: entries 1 %v, 2 %v; want both", has(1), has(2))
			}
			clk.ns.Store(30 * int64(time.Minute))
			s.Schedule(toOrigin(2))
			tick(clk.now())
			if has(1) || !has(2) {
				t.Errorf("after the 30th tick: entries 1 %v, 2 %v; want only 2", has(1), has(2))
			}
		})
	}
}

// TestLocalityCollectOverMax checks the kernel's collection of a table over
// 16384 entries: at a tick, entries unused for 6 minutes go, about 4/3 of the
// excess, whole buckets at a time.
func TestLocalityCollectOverMax(t *testing.T) {
	var clk fakeClock
	ds := testDests(1, 1)
	s := mustNew(t, "lblc", ds, Options{Clock: clk.now}).(*lblc)
	const excess = 300
	clk.advance(int64(time.Second))
	for i := range localityMaxEntries + excess {
		s.Schedule(toOrigin(i))
	}
	total := localityMaxEntries + excess
	for k := 1; k <= 6; k++ {
		clk.ns.Store(int64(k) * int64(time.Minute))
		s.Schedule(toOrigin(0)) // entry 0 stays fresh
		s.Tick(clk.now())
	}
	if s.tab.entries != total {
		t.Fatalf("before entries are 6 minutes old: %d entries, want %d", s.tab.entries, total)
	}
	if s.tab.counter != 1 {
		t.Errorf("checks over the maximum advanced the full-check counter to %d", s.tab.counter)
	}
	clk.ns.Store(7 * int64(time.Minute))
	s.Schedule(toOrigin(0))
	s.Tick(clk.now())
	goal := excess * 4 / 3
	if n := total - s.tab.entries; n < goal || n > goal+50 {
		t.Errorf("collected %d entries, want %d plus the rest of the last bucket", n, goal)
	}
	a := origin(0)
	if s.tab.get(&a) == nil {
		t.Errorf("the fresh entry was collected")
	}
}

// TestLocalityExpiresOnTimerOnly checks that, as in the kernel, entries
// expire on the check timer and never on a connection: an entry unused for
// hours survives new connections until the ticks reach a full check.
func TestLocalityExpiresOnTimerOnly(t *testing.T) {
	for _, name := range []string{"lblc", "lblcr"} {
		t.Run(name, func(t *testing.T) {
			var clk fakeClock
			ds := testDests(1)
			s := mustNew(t, name, ds, Options{Clock: clk.now, LBLCExpiration: time.Hour, LBLCRExpiration: time.Hour})
			has := func(i int) bool {
				a := origin(i)
				switch s := s.(type) {
				case *lblc:
					return s.tab.get(&a) != nil
				case *lblcr:
					return s.tab.get(&a) != nil
				}
				panic("not a locality scheduler")
			}
			s.Schedule(toOrigin(1))
			clk.ns.Store(int64(5 * time.Hour))
			s.Schedule(toOrigin(2))
			if !has(1) {
				t.Fatalf("a connection expired an entry; only the timer may")
			}
			for range localityFullCheckTicks - 1 {
				s.(Ticker).Tick(clk.now())
			}
			if !has(1) {
				t.Fatalf("entry expired before the full check")
			}
			s.(Ticker).Tick(clk.now())
			if has(1) || !has(2) {
				t.Errorf("after the full check: entries 1 %v, 2 %v; want only 2", has(1), has(2))
			}
		})
	}
}
