package conntrack

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// open inserts a TCP connection from client port sport and moves it through
// flags (client segments, 1 ms apart).
func open(t *testing.T, tab *Table, clk *fakeClock, d *lvs.Dest, sport uint16, flags ...uint8) (*Entry, error) {
	t.Helper()
	in := tuple(lvs.TCP, "192.0.2.10", sport, "192.0.2.100", 80)
	e, _, err := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
	if err != nil {
		return nil, err
	}
	for _, f := range flags {
		clk.advance(time.Millisecond)
		tab.Update(e, f, true, clk.now())
	}
	return e, nil
}

// TestFullEvictsHalfOpen fills a small table with established and
// half-open connections and checks IPVS's drop_entry order: over the limit
// the oldest half-open connection goes, then closed ones; established ones
// never, and with nothing evictable the new connection is refused.
func TestFullEvictsHalfOpen(t *testing.T) {
	const max = 40
	tab, clk := newTestTable(t, max)
	d := dest("192.0.2.21", 80, lvs.NAT)
	var est, half []*Entry
	for i := range max / 2 {
		e, err := open(t, tab, clk, d, uint16(1000+i), FlagSYN, FlagACK)
		if err != nil {
			t.Fatal(err)
		}
		est = append(est, e)
		if e, err = open(t, tab, clk, d, uint16(2000+i), FlagSYN); err != nil {
			t.Fatal(err)
		}
		half = append(half, e)
	}
	if tab.Len() != max {
		t.Fatalf("Len %d, want %d", tab.Len(), max)
	}
	// Every new connection evicts a half-open one: the oldest of the shard
	// scanned (the wheel is ordered by deadline within a shard).
	for i := range max / 2 {
		if _, err := open(t, tab, clk, d, uint16(3000+i), FlagSYN, FlagACK); err != nil {
			t.Fatalf("new connection %d over the limit: %v", i, err)
		}
		if tab.Len() != max {
			t.Fatalf("Len %d after eviction, want %d", tab.Len(), max)
		}
	}
	for i, e := range half {
		if e.Live() {
			t.Errorf("half-open connection %d survived", i)
		}
	}
	for i, e := range est {
		if !e.Live() {
			t.Errorf("established connection %d was evicted", i)
		}
	}
	if diff := cmp.Diff(conns{Active: max}, connsOf(d)); diff != "" {
		t.Errorf("conns (-want +got):\n%s", diff)
	}
	// Only established connections left: refused.
	if _, err := open(t, tab, clk, d, 4000); !errors.Is(err, ErrFull) {
		t.Fatalf("insert into a table of established connections: %v, want ErrFull", err)
	}
	// A closed one is evicted when nothing half-open is left.
	tab.Update(est[0], FlagRST, true, clk.now())
	if _, err := open(t, tab, clk, d, 4001); err != nil {
		t.Fatalf("insert with a closed connection to evict: %v", err)
	}
	if est[0].Live() {
		t.Error("the closed connection was not evicted")
	}
	s := tab.Stats()
	if s.Evicted != max/2+1 || s.Refused != 1 || s.Conns != max {
		t.Errorf("stats: evicted %d refused %d conns %d", s.Evicted, s.Refused, s.Conns)
	}
	if diff := cmp.Diff(conns{Active: max - 1, Inactive: 1}, connsOf(d)); diff != "" {
		t.Errorf("conns (-want +got):\n%s", diff)
	}
}

// TestEvictionOrder checks that eviction takes the oldest half-open
// connection of a shard first, so that a flood recycles its own entries in
// order.
func TestEvictionOrder(t *testing.T) {
	tab, clk := newTestTable(t, 1000)
	d := dest("192.0.2.21", 80, lvs.DR)
	byShard := map[uint32][]*Entry{}
	for i := range 1000 {
		clk.advance(50 * time.Millisecond)
		e, err := open(t, tab, clk, d, uint16(1000+i), FlagSYN)
		if err != nil {
			t.Fatal(err)
		}
		byShard[e.loc>>idxBits] = append(byShard[e.loc>>idxBits], e)
		if i%20 == 0 {
			tab.Expire(clk.now())
		}
	}
	for i := range 300 {
		if _, err := open(t, tab, clk, d, uint16(5000+i), FlagSYN); err != nil {
			t.Fatal(err)
		}
	}
	if s := tab.Stats(); s.Evicted != 300 || s.Conns != 1000 {
		t.Errorf("evicted %d, %d connections; want 300, 1000", s.Evicted, s.Conns)
	}
	for sh, es := range byShard {
		// The evicted ones are the oldest of their shard.
		live := false
		for i, e := range es {
			if !e.Live() {
				if live {
					t.Errorf("shard %d: connection %d evicted after a younger one survived", sh, i)
				}
			} else {
				live = true
			}
		}
	}
}

// TestThresholds checks IPVS's overload rule at bind and unbind: overloaded
// at upper_threshold connections, cleared below lower_threshold, or below
// three quarters of upper when lower is 0.
func TestThresholds(t *testing.T) {
	tests := []struct {
		upper, lower int32
		clearAt      int // connections left when the overload ends
	}{
		{upper: 8, lower: 0, clearAt: 5}, // 5*4 < 8*3
		{upper: 8, lower: 3, clearAt: 2},
		{upper: 8, lower: 8, clearAt: 7},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("upper %d lower %d", tt.upper, tt.lower), func(t *testing.T) {
			tab, clk := newTestTable(t, 0)
			d := dest("192.0.2.21", 80, lvs.NAT)
			d.SetThresholds(tt.upper, tt.lower)
			var es []*Entry
			for i := range int(tt.upper) {
				if d.Overloaded.Load() {
					t.Fatalf("overloaded at %d connections, upper %d", i, tt.upper)
				}
				flags := []uint8{FlagSYN, FlagACK}
				if i%2 == 1 {
					flags = flags[:1] // active and inactive both count
				}
				e, err := open(t, tab, clk, d, uint16(1000+i), flags...)
				if err != nil {
					t.Fatal(err)
				}
				es = append(es, e)
			}
			if !d.Overloaded.Load() {
				t.Fatalf("not overloaded at %d connections", tt.upper)
			}
			for i := len(es) - 1; i >= 0; i-- {
				tab.Remove(es[i])
				if want := i > tt.clearAt; d.Overloaded.Load() != want {
					t.Fatalf("%d connections left: overloaded %v, want %v", i, d.Overloaded.Load(), want)
				}
			}
			if d.Overloaded.Load() {
				t.Error("still overloaded with no connection")
			}
		})
	}
}

// TestCheck covers expire_nodest_conn and the reuse of a closed connection's
// client port.
func TestCheck(t *testing.T) {
	t.Run("removed real server, expire_nodest_conn", func(t *testing.T) {
		tab, clk := newTestTable(t, 0)
		tab.SetExpireNodestConn(true)
		d := dest("192.0.2.21", 80, lvs.NAT)
		e, _ := open(t, tab, clk, d, 1000, FlagSYN, FlagACK)
		if v := tab.Check(e, FlagACK); v != Use {
			t.Fatalf("Check before removal = %v", v)
		}
		d.Weight.Store(0) // quiescent: the connection goes on
		if v := tab.Check(e, FlagACK); v != Use {
			t.Fatalf("Check on a quiescent server = %v, want Use", v)
		}
		d.Removed.Store(true)
		if v := tab.Check(e, FlagACK); v != Reschedule || e.Live() || tab.Len() != 0 || connsOf(d) != (conns{}) {
			t.Fatalf("Check after removal = %v, live %v, len %d, conns %+v", v, e.Live(), tab.Len(), connsOf(d))
		}
		if s := tab.Stats(); s.NodestExpired != 1 {
			t.Errorf("NodestExpired = %d", s.NodestExpired)
		}
	})
	t.Run("removed real server, no expire_nodest_conn", func(t *testing.T) {
		tab, clk := newTestTable(t, 0)
		d := dest("192.0.2.21", 80, lvs.NAT)
		e, _ := open(t, tab, clk, d, 1000, FlagSYN, FlagACK)
		d.Removed.Store(true)
		if v := tab.Check(e, FlagACK); v != DropPacket || !e.Live() {
			t.Fatalf("Check = %v, live %v; want DropPacket and the entry kept", v, e.Live())
		}
	})
	for _, tt := range []struct {
		name  string
		flags []uint8
		syn   uint8
		want  CheckResult
	}{
		{"time_wait", []uint8{FlagSYN, FlagACK, FlagFIN, FlagRST, FlagSYN, FlagFIN}, FlagSYN, Reschedule},
		{"close", []uint8{FlagSYN, FlagACK, FlagRST}, FlagSYN, Reschedule},
		{"established", []uint8{FlagSYN, FlagACK}, FlagSYN, Use},
		{"syn_recv (retransmitted SYN)", []uint8{FlagSYN}, FlagSYN, Use},
		{"fin_wait", []uint8{FlagSYN, FlagACK, FlagFIN}, FlagSYN, Use},
		{"close, not a SYN", []uint8{FlagSYN, FlagACK, FlagRST}, FlagACK, Use},
		{"close, SYN-ACK", []uint8{FlagSYN, FlagACK, FlagRST}, FlagSYN | FlagACK, Use},
	} {
		t.Run("port reuse in "+tt.name, func(t *testing.T) {
			tab, clk := newTestTable(t, 0)
			d := dest("192.0.2.21", 80, lvs.DR)
			e, _ := open(t, tab, clk, d, 1000, tt.flags...)
			if v := tab.Check(e, tt.syn); v != tt.want {
				t.Fatalf("Check(%s) in %v = %v, want %v", flagNames(tt.syn), e.State(), v, tt.want)
			}
			if tt.want == Reschedule {
				if e.Live() || tab.Len() != 0 || tab.Stats().Reused != 1 {
					t.Errorf("the old connection is still there")
				}
				// The SYN is scheduled at once: a new entry for the tuple.
				if _, created, err := tab.Insert(&e.In, d, nil, lvs.MAC{}, clk.now()); !created || err != nil {
					t.Errorf("Insert after reuse: %v %v", created, err)
				}
			}
		})
	}
}

// TestIndexChurn checks the open-addressing index (backward-shift deletion,
// growth) against a map under random inserts and removals.
func TestIndexChurn(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 8080, lvs.NAT)
	r := rand.New(rand.NewPCG(1, 2))
	live := map[lvs.Tuple]*Entry{}
	for i := range 200000 {
		k := tuple(lvs.TCP, fmt.Sprintf("192.0.2.%d", r.IntN(8)), uint16(r.IntN(3000)), "192.0.2.100", 80)
		if e, ok := live[k]; ok && r.IntN(2) == 0 {
			if !tab.Remove(e) {
				t.Fatalf("op %d: Remove(%v) = false", i, k)
			}
			delete(live, k)
			continue
		}
		e, created, err := tab.Insert(&k, d, nil, lvs.MAC{}, clk.now())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := live[k]; ok == created {
			t.Fatalf("op %d: Insert(%v) created %v, already live %v", i, k, created, ok)
		}
		live[k] = e
	}
	if tab.Len() != len(live) {
		t.Fatalf("Len %d, want %d", tab.Len(), len(live))
	}
	for k, e := range live {
		if got, reply := tab.Lookup(&k); got == nil || !got.Same(e) || reply {
			t.Fatalf("Lookup(%v) = %v %v", k, got, reply)
		}
		if got, reply := tab.Lookup(&e.Out); got == nil || !got.Same(e) || !reply {
			t.Fatalf("Lookup(out of %v) = %v %v", k, got, reply)
		}
	}
	n := 0
	for i := range tab.shards {
		s := &tab.shards[i]
		n += s.idx.n
		for j, v := range s.idx.slots {
			if v == 0 {
				continue
			}
			// Every key reachable from its home slot without a hole.
			for h := s.idx.home(slotTag(v)); h != j; h = s.idx.next(h) {
				if s.idx.slots[h] == 0 {
					t.Fatalf("shard %d slot %d: hole at %d between home and slot", i, j, h)
				}
			}
		}
	}
	if n != 2*len(live) {
		t.Errorf("%d slots, want %d (In and Out of each)", n, 2*len(live))
	}
}

// TestRecycledEntry checks the generation guard: an Entry copy that outlived
// its connection cannot touch the connection that reuses its memory.
func TestRecycledEntry(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d1, d2 := dest("192.0.2.21", 80, lvs.NAT), dest("192.0.2.22", 80, lvs.NAT)
	in := tuple(lvs.TCP, "192.0.2.10", 1000, "192.0.2.100", 80)
	old, _ := open(t, tab, clk, d1, 1000, FlagSYN, FlagACK)
	if !tab.Remove(old) {
		t.Fatal("Remove = false")
	}
	// The freed entry is reused by the next insert into the same shard.
	nw, _, _ := tab.Insert(&in, d2, nil, lvs.MAC{}, clk.now())
	if nw.loc != old.loc || nw.gen == old.gen {
		t.Fatalf("not recycled: loc %x/%x gen %d/%d", old.loc, nw.loc, old.gen, nw.gen)
	}
	tab.Update(old, FlagRST, true, clk.now())
	if tab.Remove(old) || old.State() != stateDead || nw.State() != StateNone || !nw.Live() {
		t.Errorf("the stale copy changed the new connection: %v", nw.State())
	}
	if old.Dest != d1 || nw.Dest != d2 {
		t.Error("copies lost their fields")
	}
}

func TestInsertAllocs(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 8080, lvs.NAT)
	e := tab.NewEntry()
	keys := make([]lvs.Tuple, 4096)
	for i := range keys {
		keys[i] = tuple(lvs.TCP, "192.0.2.10", uint16(1000+i), "192.0.2.100", 80)
	}
	cycle := func() {
		for i := range keys {
			if _, err := tab.InsertInto(e, &keys[i], d, nil, lvs.MAC{}, clk.now(), nil); err != nil {
				t.Fatal(err)
			}
			tab.Update(e, FlagSYN, true, clk.now())
			tab.Update(e, FlagACK, true, clk.now())
			e.CountIn(100)
		}
		for i := range keys {
			tab.LookupInto(&keys[i], e)
			tab.Remove(e)
		}
	}
	cycle() // grows the slab and the index
	if n := testing.AllocsPerRun(5, cycle); n > 0 {
		t.Errorf("%v allocations per %d inserts and removals in the steady state, want 0", n, len(keys))
	}
}
