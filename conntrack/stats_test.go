package conntrack

import (
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// TestCounters counts packets through per-worker Entries and checks that
// Stats sums them exactly, that they are folded into the destinations' and
// services' lvs.Stats, and that a service keeps the counts of a real
// server that left.
func TestCounters(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	var svc lvs.Stats
	d1, d2 := dest("192.0.2.21", 8080, lvs.NAT), dest("192.0.2.22", 8080, lvs.NAT)
	const workers, perWorker = 4, 1000
	var wg sync.WaitGroup
	for w := range workers {
		e := tab.NewEntry()
		wg.Go(func() {
			for i := range perWorker {
				in := tuple(lvs.TCP, "192.0.2.10", uint16(1000+w*perWorker+i), "192.0.2.100", 80)
				d := d1
				if i%4 == 0 {
					d = d2
				}
				if created, err := tab.InsertInto(e, &in, d, &svc, lvs.MAC{}, clk.now(), nil); !created || err != nil {
					t.Error(created, err)
					return
				}
				d.Stats.Conns.Add(1) // as forward's newConn does
				e.CountIn(100)
				e.CountIn(60)
				e.CountOut(1500)
			}
		})
	}
	wg.Wait()
	s := tab.Stats()
	n := uint64(workers * perWorker)
	want := Counters{Conns: n, InPkts: 2 * n, InBytes: 160 * n, OutPkts: n, OutBytes: 1500 * n}
	if diff := cmp.Diff(want, s.Total); diff != "" {
		t.Errorf("total (-want +got):\n%s", diff)
	}
	if len(s.Services) != 1 || s.Services[0].Counters != want {
		t.Errorf("services %+v", s.Services)
	}
	want2 := Counters{Conns: n / 4, InPkts: n / 2, InBytes: 40 * n, OutPkts: n / 4, OutBytes: 375 * n}
	i2 := 0
	if s.Dests[0].Dest != d2 {
		i2 = 1
	}
	if len(s.Dests) != 2 || s.Dests[i2].Dest != d2 || s.Dests[i2].Counters != want2 || s.Dests[i2].InactiveConns != int32(n/4) {
		t.Fatalf("dests %+v", s.Dests)
	}
	if got := countersOf(&d2.Stats); got != want2 {
		t.Errorf("d2's lvs.Stats %+v, want %+v", got, want2)
	}
	if got := countersOf(&svc); got.InPkts != 2*n || got.OutBytes != 1500*n {
		t.Errorf("service lvs.Stats %+v", got)
	}
	// An Entry without worker counters adds directly.
	in := tuple(lvs.TCP, "192.0.2.10", 1, "192.0.2.100", 80)
	e, _, _ := tab.Insert(&in, d2, &svc, lvs.MAC{}, clk.now())
	e.CountIn(40)
	if s := tab.Stats(); s.Total.InPkts != 2*n+1 || s.Total.InBytes != 160*n+40 {
		t.Errorf("after a direct count: %+v", s.Total)
	}
}

// TestEstimator checks the rates against IPVS's arithmetic: a steady 1000
// packets per second (and 1,500,000 bytes per second, 10 connections per
// second) reaches 1/4, then 7/16, ... of the rate, as the kernel's EWMA
// with weight 1/4 sampled every 2 s.
func TestEstimator(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	var svc lvs.Stats
	d := dest("192.0.2.21", 8080, lvs.NAT)
	e := tab.NewEntry()
	port := uint16(1000)
	interval := func() {
		for range 20 { // 10 connections per second for 2 s
			in := tuple(lvs.TCP, "192.0.2.10", port, "192.0.2.100", 80)
			port++
			tab.InsertInto(e, &in, d, &svc, lvs.MAC{}, clk.now(), nil)
			d.Stats.Conns.Add(1)
		}
		for range 2000 {
			e.CountIn(1500)
		}
		tab.Estimate()
	}
	// A rate r per second is sampled as r<<10 (bytes: r<<5); the average
	// after k samples is that times 1 - (3/4)^k, truncated by the kernel's
	// shifts and read rounded up: these are the kernel's numbers.
	wantPPS := []uint64{250, 437, 578, 684, 763}
	wantBPS := []uint64{375000, 656250, 867187, 1025391, 1144043}
	wantCPS := []uint64{2, 4, 6, 7, 8}
	for k := range wantPPS {
		interval()
		got := tab.Stats().Dests[0].Rates
		want := Rates{CPS: wantCPS[k], InPPS: wantPPS[k], InBPS: wantBPS[k]}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after %d intervals (-want +got):\n%s", k+1, diff)
		}
		if got := tab.Stats().Services[0].Rates; got != want {
			t.Errorf("after %d intervals: service rates %+v, want %+v", k+1, got, want)
		}
	}
	for range 40 {
		interval()
	}
	// The kernel's truncating shifts settle a few units of 2^-5 below.
	if got := tab.Stats().Rates; got.InPPS != 1000 || got.InBPS < 1499990 || got.InBPS > 1500000 || got.CPS != 10 {
		t.Errorf("converged total rates %+v, want 1000 pps, 1500000 B/s, 10 cps", got)
	}
}

// TestEstimateIdle runs the estimator over bindings that never counted
// anything, and over an empty table.
func TestEstimateIdle(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	tab.Estimate()
	var svc lvs.Stats
	in := tuple(lvs.TCP, "192.0.2.10", 1000, "192.0.2.100", 80)
	tab.Insert(&in, dest("192.0.2.21", 80, lvs.NAT), &svc, lvs.MAC{}, clk.now())
	tab.Estimate()
	tab.Estimate()
	if r := tab.Stats().Rates; r != (Rates{}) {
		t.Errorf("rates %+v with nothing counted", r)
	}
}
