package sched

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// variant is a scheduler with options, as the property tests run it.
type variant struct {
	name  string
	sched string
	opts  Options
}

// variants are every scheduler, and the flag combinations of sh and mh.
func variants() []variant {
	var vs []variant
	for _, n := range Names() {
		vs = append(vs, variant{name: n, sched: n})
	}
	for _, f := range [][]string{{"sh-fallback"}, {"sh-port"}, {"sh-port", "sh-fallback"}} {
		vs = append(vs, variant{name: "sh+" + strings.Join(f, "+"), sched: "sh", opts: Options{Flags: f}})
	}
	for _, f := range [][]string{{"mh-fallback"}, {"mh-port"}, {"mh-port", "mh-fallback"}} {
		vs = append(vs, variant{name: "mh+" + strings.Join(f, "+"), sched: "mh", opts: Options{Flags: f}})
	}
	return vs
}

func TestNames(t *testing.T) {
	want := []string{"dh", "fo", "lblc", "lblcr", "lc", "maglev", "mh", "nq", "ovf", "rr", "sed", "sh", "twos", "wlc", "wrr"}
	if diff := cmp.Diff(want, Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	for _, n := range want {
		if !Known(n) {
			t.Errorf("Known(%q) = false", n)
		}
	}
	for _, n := range []string{"", "WLC", "random", "wlc "} {
		if Known(n) {
			t.Errorf("Known(%q) = true", n)
		}
	}
	names := Names()
	names[0] = "changed"
	if Names()[0] != "dh" {
		t.Errorf("Names returned a shared slice")
	}
}

func TestNewDefault(t *testing.T) {
	s := mustNew(t, "", testDests(1), Options{})
	if _, ok := s.(*rebuiltPicker[weightedLeastConn, *weightedLeastConn]); !ok {
		t.Errorf("New(\"\") built %T, want wlc", s)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		sched   string
		dests   []*lvs.Dest
		opts    Options
		wantErr string
		is      error
	}{
		{name: "unknown scheduler", sched: "random", wantErr: `unknown scheduler (valid: dh, fo, lblc, lblcr, lc, maglev, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr)`, is: ErrUnknownScheduler},
		{name: "nil destination", sched: "rr", dests: []*lvs.Dest{nil}, wantErr: "destination 0 is nil"},
		{name: "unknown flag", sched: "sh", opts: Options{Flags: []string{"sh-sticky"}}, wantErr: `unknown flag "sh-sticky"`},
		{name: "sh flag on mh", sched: "mh", opts: Options{Flags: []string{"sh-port"}}, wantErr: `flag "sh-port" applies only to the sh scheduler`},
		{name: "mh flag on wlc", sched: "wlc", opts: Options{Flags: []string{"mh-fallback"}}, wantErr: `flag "mh-fallback" applies only to the mh scheduler`},
		{name: "mh index too small", sched: "mh", opts: Options{MHTableIndex: 7}, wantErr: "MHTableIndex: 7 is outside 8..17"},
		{name: "mh index too large", sched: "mh", opts: Options{MHTableIndex: 18}, wantErr: "MHTableIndex: 18 is outside 8..17"},
		{name: "maglev size not prime", sched: "maglev", opts: Options{MaglevSize: 65536}, wantErr: "MaglevSize: 65536 is not a prime"},
		{name: "maglev size too small", sched: "maglev", opts: Options{MaglevSize: 5}, wantErr: "MaglevSize: 5 is not a prime"},
		{name: "maglev size checked for any scheduler", sched: "rr", opts: Options{MaglevSize: 100}, wantErr: "MaglevSize: 100"},
		{name: "negative expiration", sched: "lblc", opts: Options{LBLCExpiration: -1}, wantErr: "LBLCExpiration: -1ns is negative"},
		{name: "too many for maglev", sched: "maglev", dests: equalWeights(8), opts: Options{MaglevSize: 7}, wantErr: "8 destinations do not fit 7 maglev slots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.sched, tt.dests, tt.opts)
			if err == nil {
				t.Fatalf("New: no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.sched)) {
				t.Errorf("New: error %q, want it to name %q and contain %q", err, tt.sched, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("New: error %q is not %v", err, tt.is)
			}
			// Check reports the same without building, except for what
			// only the destinations themselves show (a nil one).
			if tt.name == "nil destination" {
				return
			}
			cerr := Check(tt.sched, len(tt.dests), tt.opts)
			if cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Check: %v, want New's %q", cerr, err)
			}
		})
	}
	for _, name := range Names() {
		if err := Check(name, 2, Options{}); err != nil {
			t.Errorf("Check(%q, 2): %v", name, err)
		}
	}
	if err := Check("mh", 252, Options{MHTableIndex: 8}); err == nil {
		t.Errorf("Check: 252 destinations fit 251 mh slots")
	}
}

func TestNewAcceptsFlags(t *testing.T) {
	for _, tt := range []struct {
		name  string
		sched string
		flags []string
	}{
		{name: "generic flags anywhere", sched: "wrr", flags: []string{"flag-1", "flag-2", "flag-3"}},
		{name: "sh flags", sched: "sh", flags: []string{"sh-fallback", "sh-port"}},
		{name: "mh flags", sched: "mh", flags: []string{"mh-fallback", "mh-port"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mustNew(t, tt.sched, testDests(1, 2), Options{Flags: tt.flags})
		})
	}
}

// TestNewCopiesList checks that New keeps its own list.
func TestNewCopiesList(t *testing.T) {
	ds := testDests(1, 1)
	s := mustNew(t, "rr", ds, Options{})
	other := lvs.NewDest(destAddr(9), 80, lvs.DR, 1)
	ds[0], ds[1] = other, other
	if d := s.Schedule(nil); d == other {
		t.Errorf("scheduler follows the caller's slice")
	}
}

// TestNeverUnusable runs every scheduler on traffic, then makes a quiescent,
// an unavailable and an overloaded destination and checks that no new flow
// reaches them, whatever state (position, cache, table) the traffic built.
func TestNeverUnusable(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			ds := equalWeights(16)
			for i, d := range ds {
				d.Weight.Store(int32(1 + i%3))
				conns(d, int32(i%4), int32(i%7))
			}
			s := mustNew(t, v.sched, ds, v.opts)
			ts := flows(3000)
			for i, tp := range ts {
				tp.Dst = origin(i % 40) // a few destinations, for dh, lblc, lblcr
			}
			for _, tp := range ts {
				if d := s.Schedule(tp); d != nil {
					d.ActiveConns.Add(1)
				}
			}
			// Make the first three the favourites of fo, ovf and the
			// connection counts, so that they must be skipped, not just
			// avoided; and let ovf serve again.
			for i, d := range ds {
				conns(d, 0, 0)
				if i < 3 {
					d.Weight.Store(3)
				}
			}
			ds[0].Weight.Store(0)
			ds[1].Available.Store(false)
			ds[2].Overloaded.Store(true)
			served := 0
			for _, tp := range ts {
				d := s.Schedule(tp)
				i := index(ds, d)
				if i == 2 && v.sched == "lblc" {
					// The kernel's lblc keeps a cached server over its
					// upper threshold (it tests no OVERLOAD flag there).
					continue
				}
				if i >= 0 && i < 3 {
					t.Fatalf("flow %v went to %s, which is %s", tp, d, []string{"quiescent", "unavailable", "overloaded"}[i])
				}
				if d != nil {
					served++
				}
			}
			if served == 0 {
				t.Errorf("no flow was served")
			}
		})
	}
}

// hashingVariants are the schedulers whose choice depends only on the flow.
func hashingVariants() []variant {
	var vs []variant
	for _, v := range variants() {
		switch v.sched {
		case "sh", "dh", "mh", "maglev":
			vs = append(vs, v)
		}
	}
	return vs
}

// TestHashingReproducible checks that two instances, built from separate but
// equal destinations, send every flow to the same destination.
func TestHashingReproducible(t *testing.T) {
	weights := []int32{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5}
	for _, v := range hashingVariants() {
		t.Run(v.name, func(t *testing.T) {
			a, b := testDests(weights...), testDests(weights...)
			sa, sb := mustNew(t, v.sched, a, v.opts), mustNew(t, v.sched, b, v.opts)
			ts := flows(20000)
			for i, tp := range ts {
				tp.Dst = origin(i % 97)
				if x, y := index(a, sa.Schedule(tp)), index(b, sb.Schedule(tp)); x != y {
					t.Fatalf("flow %v: destination %d and %d", tp, x, y)
				}
			}
		})
	}
}

// TestHashingGolden pins a few choices, so that a change of hash, key or
// table fill (which would move flows across an upgrade) fails a test.
func TestHashingGolden(t *testing.T) {
	ds := testDests(3, 1, 4, 1, 5, 9, 2, 6)
	src := []netip.Addr{
		netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.77"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:c::abcd"),
	}
	tests := []struct {
		name  string
		sched string
		opts  Options
		want  string
	}{
		{name: "sh", sched: "sh", want: "GHAE"},
		{name: "sh-port", sched: "sh", opts: Options{Flags: []string{"sh-port"}}, want: "HAEF"},
		{name: "mh", sched: "mh", want: "DFAG"},
		{name: "mh-port", sched: "mh", opts: Options{Flags: []string{"mh-port"}}, want: "GFCF"},
		{name: "maglev", sched: "maglev", want: "FCAF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew(t, tt.sched, ds, tt.opts)
			var got []byte
			for i, a := range src {
				got = append(got, label(ds, s.Schedule(flow(a, uint16(40000+i))))...)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("choices (-want +got):\n%s", diff)
			}
		})
	}
}

// disruption removes destination k of n equal ones and returns the share of
// flows that change destination, and the share that change although their
// destination stayed.
func disruption(t *testing.T, v variant, n, k int, ts []*lvs.Tuple) (moved, extra float64) {
	ds := equalWeights(n)
	before := mustNew(t, v.sched, ds, v.opts)
	rest := slices.Delete(slices.Clone(ds), k, k+1)
	after := mustNew(t, v.sched, rest, v.opts)
	var m, x int
	for _, tp := range ts {
		b, a := before.Schedule(tp), after.Schedule(tp)
		if a != b {
			m++
			if b != ds[k] {
				x++
			}
		}
	}
	return float64(m) / float64(len(ts)), float64(x) / float64(len(ts))
}

// TestDisruption removes one of n destinations from mh and maglev and checks
// that at most 1/n of the flows, plus a small margin, change destination.
// The ideal is exactly the removed destination's 1/n.
func TestDisruption(t *testing.T) {
	ts := flows(100000)
	tests := []struct {
		v      variant
		n      int
		margin float64
	}{
		{v: variant{name: "mh", sched: "mh"}, n: 10, margin: 0.01},
		// 82 slots per destination: the small default table costs extra.
		{v: variant{name: "mh", sched: "mh"}, n: 50, margin: 0.03},
		{v: variant{name: "mh 65521 slots", sched: "mh", opts: Options{MHTableIndex: 16}}, n: 50, margin: 0.01},
		{v: variant{name: "maglev", sched: "maglev"}, n: 10, margin: 0.01},
		{v: variant{name: "maglev", sched: "maglev"}, n: 50, margin: 0.01},
		// 131 slots per backend, about the Maglev paper's minimum of 100.
		{v: variant{name: "maglev", sched: "maglev"}, n: 500, margin: 0.015},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.v.name, tt.n), func(t *testing.T) {
			var worst, worstExtra float64
			for _, k := range []int{0, tt.n / 2, tt.n - 1} {
				moved, extra := disruption(t, tt.v, tt.n, k, ts)
				worst, worstExtra = max(worst, moved), max(worstExtra, extra)
			}
			ideal := 1 / float64(tt.n)
			t.Logf("removing 1 of %d: up to %.2f%% of flows moved (ideal %.2f%%), %.2f%% needlessly",
				tt.n, 100*worst, 100*ideal, 100*worstExtra)
			if worst > ideal+tt.margin {
				t.Errorf("%.2f%% of flows moved, want at most %.2f%% + %.2f%%", 100*worst, 100*ideal, 100*tt.margin)
			}
		})
	}
}

// benchDests returns n destinations with weights 4-7, 1-3 active and some
// inactive connections: every scheduler has to look at all of them, and none
// is over its weight (which would make lblc reschedule every time).
func benchDests(n int) []*lvs.Dest {
	ds := make([]*lvs.Dest, n)
	for i := range ds {
		ds[i] = lvs.NewDest(destAddr(i), 80, lvs.DR, int32(4+i%4))
		conns(ds[i], int32(1+i%3), int32(i*13%100))
	}
	return ds
}

// benchFlows are 256 IPv4 flows from 98 clients to 16 destination addresses.
func benchFlows() []*lvs.Tuple {
	ts := make([]*lvs.Tuple, 256)
	for i := range ts {
		ts[i] = flow(netip.AddrFrom4([4]byte{192, 0, 2, byte(2 + i%98)}), uint16(1024+i*37))
		ts[i].Dst = origin(i % 16)
	}
	return ts
}

// TestScheduleAllocs fails if any scheduler allocates in Schedule once its
// state is warm (a new lblc or lblcr address allocates its entry).
func TestScheduleAllocs(t *testing.T) {
	for _, v := range variants() {
		for _, n := range []int{8, 128, 1024} {
			for _, degraded := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%d/degraded=%v", v.name, n, degraded), func(t *testing.T) {
					ds := benchDests(n)
					if degraded { // exercise fallbacks and skips
						for i := 0; i < n; i += 3 {
							ds[i].Available.Store(false)
						}
					}
					s := mustNew(t, v.sched, ds, v.opts)
					ts := benchFlows()
					for _, tp := range ts {
						s.Schedule(tp)
					}
					i := 0
					allocs := testing.AllocsPerRun(1000, func() {
						s.Schedule(ts[i%len(ts)])
						i++
					})
					if allocs > 0 {
						t.Errorf("Schedule allocates %v times per call", allocs)
					}
				})
			}
		}
	}
}

// TestConcurrentSchedule calls every scheduler from several goroutines while
// another changes weights and flags, for the race detector.
func TestConcurrentSchedule(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			ds := benchDests(32)
			s := mustNew(t, v.sched, ds, v.opts)
			ts := benchFlows()
			stop := make(chan struct{})
			var writer sync.WaitGroup
			writer.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					d := ds[i%len(ds)]
					d.Weight.Store(int32(i % 5))
					d.Available.Store(i%7 != 0)
					d.Overloaded.Store(i%11 == 0)
					d.ActiveConns.Add(1)
				}
			})
			var readers sync.WaitGroup
			for g := range 4 {
				readers.Go(func() {
					for i := range 2000 {
						s.Schedule(ts[(g*31+i)%len(ts)])
					}
				})
			}
			readers.Wait()
			close(stop)
			writer.Wait()
		})
	}
}

func BenchmarkSchedule(b *testing.B) {
	for _, name := range Names() {
		for _, n := range []int{8, 128, 1024} {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				s := mustNew(b, name, benchDests(n), Options{})
				ts := benchFlows()
				for _, tp := range ts {
					s.Schedule(tp)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					s.Schedule(ts[i&255])
				}
			})
		}
	}
}

// BenchmarkScheduleParallel shows the cost of the per-scheduler lock (rr,
// wrr, lblc, lblcr) and of the shared counter (twos) under contention.
func BenchmarkScheduleParallel(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			s := mustNew(b, name, benchDests(128), Options{})
			ts := benchFlows()
			for _, tp := range ts {
				s.Schedule(tp)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					s.Schedule(ts[i&255])
				}
			})
		})
	}
}
