package conntrack

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// TestWarm checks that Warm reads the slots and entries of the tuples it is
// given (its sum is of what it read: zero only if it read nothing but empty
// slots), in rounds of WarmBatch, without allocating, and that it changes
// nothing a lookup sees.
func TestWarm(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	if got := tab.Warm([]lvs.Tuple{scaleKey(1), scaleKey(2)}); got != 0 {
		t.Errorf("Warm on an empty table = %d, want 0 (only empty slots to read)", got)
	}
	d := dest("192.0.2.21", 8080, lvs.NAT)
	const n = 3*WarmBatch + 5
	keys := make([]lvs.Tuple, n)
	for i := range keys {
		keys[i] = scaleKey(i)
		if _, _, err := tab.Insert(&keys[i], d, nil, lvs.MAC{}, clk.now()); err != nil {
			t.Fatal(err)
		}
	}
	// Every round must read: the last one (5 tuples) too.
	for _, ks := range [][]lvs.Tuple{keys[:1], keys[:WarmBatch], keys[WarmBatch:], keys[3*WarmBatch:]} {
		if got := tab.Warm(ks); got == 0 {
			t.Errorf("Warm of %d tuples in the table = 0", len(ks))
		}
	}
	// Tuples not in the table: nothing found, nothing broken.
	absent := []lvs.Tuple{scaleKey(n + 1), scaleKey(n + 2)}
	tab.Warm(absent)
	type conn struct {
		In    lvs.Tuple
		State State
		Last  time.Duration
	}
	list := func() []conn {
		var l []conn
		tab.Range(func(e *Entry) bool {
			l = append(l, conn{e.In, e.State(), e.LastSeen()})
			return true
		})
		return l
	}
	before := list()
	tab.Warm(keys)
	if diff := cmp.Diff(before, list()); diff != "" {
		t.Errorf("Warm changed the connections (-before +after):\n%s", diff)
	}
	for i := range keys {
		if e, reply := tab.Lookup(&keys[i]); e == nil || reply {
			t.Fatalf("flow %d after Warm: %v %v", i, e, reply)
		}
	}
	if e, _ := tab.Lookup(&absent[0]); e != nil {
		t.Errorf("absent flow found after Warm")
	}
	if a := testing.AllocsPerRun(100, func() { tab.Warm(keys) }); a != 0 {
		t.Errorf("Warm: %v allocs, want 0", a)
	}
}

// TestWarmConcurrent runs Warm and lookups while another goroutine inserts
// and removes connections, growing the shards' indexes (and so replacing
// their views and freeing their old slots): Warm must neither fault nor
// disturb a lookup, and under -race the detector must find nothing (Warm's
// reads without the lock are excluded from it on purpose; the rest is not).
func TestWarmConcurrent(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 8080, lvs.NAT)
	const stable, churn = 500, 20000
	keys := make([]lvs.Tuple, stable+churn)
	for i := range keys {
		keys[i] = scaleKey(i)
	}
	for i := range stable {
		if _, _, err := tab.Insert(&keys[i], d, nil, lvs.MAC{}, clk.now()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		ents := make([]*Entry, 0, churn)
		for ctx.Err() == nil {
			for i := stable; i < len(keys) && ctx.Err() == nil; i++ {
				e, _, err := tab.Insert(&keys[i], d, nil, lvs.MAC{}, clk.now())
				if err != nil {
					t.Error(err)
					return
				}
				ents = append(ents, e)
			}
			for _, e := range ents {
				tab.Remove(e)
			}
			ents = ents[:0]
		}
	})
	for r := range 2 {
		wg.Go(func() {
			e := tab.NewEntry()
			var sink uint64
			for i := r; ctx.Err() == nil; i += WarmBatch {
				lo := i % (len(keys) - WarmBatch)
				sink += tab.Warm(keys[lo : lo+WarmBatch])
				for j := range WarmBatch {
					k := (lo + j) % stable
					if found, reply := tab.LookupInto(&keys[k], e); !found || reply {
						t.Errorf("stable flow %d: found %v reply %v", k, found, reply)
						return
					}
				}
			}
			_ = sink
		})
	}
	wg.Wait()
}

// TestArenaFreeKeepsMapped checks that a block given back with free stays
// readable (as zeros), a block of a mapping of its own included: Warm reads
// an index's slots without the lock that keeps grow from freeing them.
func TestArenaFreeKeepsMapped(t *testing.T) {
	a := new(arena)
	defer a.release()
	for _, n := range []int{64 << 10 / 8, regionSize / 8} { // carved from a region; a mapping of its own
		s := a.allocSlots(n)
		if s == nil {
			t.Skip("the kernel refused the mapping")
		}
		for i := range s {
			s[i] = uint64(i) + 1
		}
		a.freeSlots(s)
		// Read after free: a fault here would kill the test binary.
		var sum uint64
		for i := 0; i < len(s); i += 512 {
			sum += s[i]
		}
		if sum != 0 {
			t.Errorf("slots of %d bytes read %d after free, want zeros", n*8, sum)
		}
	}
}
