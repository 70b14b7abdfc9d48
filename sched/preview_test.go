package sched

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// twinRun drives a scheduler through a reproducible history of new
// connections, connection counts, weight changes and overloads. Before
// each Schedule it calls Preview previews(i) times and checks that every
// Preview names the destination that Schedule then returns. It returns the
// indexes Schedule chose.
func twinRun(t *testing.T, name string, previews func(i int) int) []int {
	t.Helper()
	clk := &fakeClock{}
	dests := testDests(5, 3, 3, 1, 2)
	s := mustNew(t, name, dests, Options{Clock: clk.now})
	pv, ok := Picker(s).(Previewer)
	if !ok {
		t.Fatalf("%s: %T does not implement Previewer", name, s)
	}
	// Destination addresses vary, for lblc, lblcr and dh; clients and
	// ports, for sh, mh and maglev.
	dsts := []netip.Addr{vip, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}
	var got []int
	for i := range 400 {
		tup := flow(clientAddr(i%37), uint16(1024+i))
		tup.Dst = lvs.AddrFromNetip(dsts[i%len(dsts)])
		want := -2
		for range previews(i) {
			p := index(dests, pv.Preview(tup))
			if want != -2 && p != want {
				t.Fatalf("%s step %d: Preview changed its answer from %d to %d", name, i, want, p)
			}
			want = p
		}
		d := s.Schedule(tup)
		if want != -2 && index(dests, d) != want {
			t.Fatalf("%s step %d: Preview said %d, Schedule chose %d", name, i, want, index(dests, d))
		}
		got = append(got, index(dests, d))
		if d != nil {
			// The connection table's accounting, roughly: new
			// connections are active, some end.
			d.ActiveConns.Add(1)
		}
		if i%7 == 0 {
			for _, x := range dests {
				if a := x.ActiveConns.Load(); a > 0 {
					x.ActiveConns.Store(a - 1)
					x.InactiveConns.Add(1)
				}
			}
		}
		switch i % 50 {
		case 10: // a weight change with its callback
			dests[1].Weight.Store(int32(1 + i%4))
			if err := s.UpdDest(dests[1]); err != nil {
				t.Fatal(err)
			}
		case 20: // a weight stored without a callback (yet)
			dests[3].Weight.Store(int32(i % 3))
		case 30:
			dests[0].Overloaded.Store(true)
		case 40:
			dests[0].Overloaded.Store(false)
			dests[2].Available.Store(i%100 == 40)
		}
		if i == 200 {
			// Slow start: dests[4] ramps over the next steps (the
			// clock moves 20 s a step).
			dests[4].SlowStart.Store(int64(200 * time.Second))
			dests[4].StartRamp(clk.now())
		}
		clk.advance(int64(TickInterval) / 3)
		if tk, ok := s.(Ticker); ok && i%3 == 2 {
			tk.Tick(clk.now())
		}
	}
	return got
}

// TestPreview checks, for every scheduler, that Preview returns what the
// next Schedule returns, and that previews (none, one or several before a
// choice) leave the sequence of choices exactly as without them: rr's and
// wrr's positions, the lblc and lblcr tables and twos's draws untouched.
func TestPreview(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			plain := twinRun(t, name, func(int) int { return 0 })
			previewed := twinRun(t, name, func(i int) int { return 1 + i%3 })
			if len(plain) != len(previewed) {
				t.Fatalf("lengths %d and %d", len(plain), len(previewed))
			}
			for i := range plain {
				if plain[i] != previewed[i] {
					t.Fatalf("choice %d: %d without previews, %d with (first %d: %v / %v)",
						i, plain[i], previewed[i], i+1, plain[:i+1], previewed[:i+1])
				}
			}
			seen := map[int]bool{}
			for _, c := range plain {
				seen[c] = true
			}
			if len(seen) < 2 {
				t.Errorf("the history chose only %v: it does not exercise the scheduler", seen)
			}
		})
	}
}

// TestPreviewRoundRobinRepeat is the operator's case: a trace previewed
// twice does not move rr on.
func TestPreviewRoundRobinRepeat(t *testing.T) {
	dests := equalWeights(3)
	s := mustNew(t, "rr", dests, Options{})
	tup := flow(clientAddr(1), 1000)
	if got := label(dests, s.Schedule(tup)); got != "A" {
		t.Fatalf("first choice %s", got)
	}
	for range 2 {
		if got := label(dests, s.(Previewer).Preview(tup)); got != "B" {
			t.Fatalf("Preview = %s, want B", got)
		}
	}
	if got := sequence(s, dests, tup, 4); got != "BCAB" {
		t.Errorf("after the previews: %s, want BCAB", got)
	}
}

// TestPreviewLBLCNoEntry checks that lblc's and lblcr's previews add no
// table entry: a preview for a new address, then a change of load, and the
// real choice follows the new load (a cached entry would have pinned it).
func TestPreviewLBLCNoEntry(t *testing.T) {
	for _, name := range []string{"lblc", "lblcr"} {
		dests := equalWeights(2)
		s := mustNew(t, name, dests, Options{})
		tup := flow(clientAddr(1), 1000)
		if got := label(dests, s.(Previewer).Preview(tup)); got != "A" {
			t.Fatalf("%s: Preview = %s, want A", name, got)
		}
		conns(dests[0], 5, 0)
		if got := label(dests, s.Schedule(tup)); got != "B" {
			t.Errorf("%s: Schedule after a preview = %s, want B (the preview cached A)", name, got)
		}
	}
}

type foreignPicker struct{ n int }

func (p *foreignPicker) Schedule(*lvs.Tuple) *lvs.Dest { p.n++; return nil }

func TestPreviewForeignPicker(t *testing.T) {
	p := &foreignPicker{}
	if _, ok := Preview(p, flow(clientAddr(1), 1)); ok || p.n != 0 {
		t.Errorf("Preview of a Picker without Preview: ok %v, Schedule called %d times", ok, p.n)
	}
	dests := equalWeights(2)
	s := mustNew(t, "wlc", dests, Options{})
	if d, ok := Preview(s, flow(clientAddr(1), 1)); !ok || d != dests[0] {
		t.Errorf("Preview(wlc) = %v, %v", d, ok)
	}
}
