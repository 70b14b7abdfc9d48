package sched

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// slotCounts counts the slots each destination of ds holds in table.
func slotCounts(ds []*lvs.Dest, table []*lvs.Dest) []int {
	n := make([]int, len(ds))
	for _, d := range table {
		if i := index(ds, d); i >= 0 {
			n[i]++
		}
	}
	return n
}

func TestMHTable(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		index   int
		want    []int
	}{
		// Round robin of single claims: 4093 = 409*10 + 3.
		{name: "equal weights", weights: []int32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
			want: []int{410, 410, 410, 409, 409, 409, 409, 409, 409, 409}},
		// Turns of 2 and 1 claims: 1364 rounds of 3, then one more for A.
		{name: "weights 2 1", weights: []int32{2, 1}, want: []int{2729, 1364}},
		{name: "gcd divides weights", weights: []int32{200, 100}, want: []int{2729, 1364}},
		// 100/1 needs 7 bits, the table allows 6: turns 50 and 1.
		// 80 rounds of 51, then 13 more for A.
		{name: "weights scaled down", weights: []int32{100, 1}, want: []int{4013, 80}},
		{name: "quiescent takes no slot", weights: []int32{1, 0, 1}, want: []int{2047, 0, 2046}},
		{name: "smallest table", weights: []int32{1, 1}, index: 8, want: []int{126, 125}},
		{name: "largest table", weights: []int32{1, 1}, index: 17, want: []int{65536, 65535}},
		{name: "all quiescent", weights: []int32{0, 0}, want: []int{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			s := table[mhTable](mustNew(t, "mh", ds, Options{MHTableIndex: tt.index}))
			if diff := cmp.Diff(tt.want, slotCounts(ds, s.table)); diff != "" {
				t.Errorf("slots (-want +got):\n%s", diff)
			}
		})
	}
}

// refMHSlot is the kernel's mh lookup for a client, from the SipHash-1-3
// definition on the 4 little-endian bytes of port + folded address.
func refMHSlot(src netip.Addr, port uint16, size uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(port)+refFold(src))
	return uint32(sip13(mhKey1, b[:])) % size
}

func TestMHLookup(t *testing.T) {
	ds := equalWeights(7)
	for _, port := range []bool{false, true} {
		var flags []string
		if port {
			flags = []string{"mh-port"}
		}
		sc := mustNew(t, "mh", ds, Options{Flags: flags})
		s := table[mhTable](sc)
		for i := range 500 {
			src, sport := clientAddr(i), uint16(2000+i)
			var hp uint16
			if port {
				hp = sport
			}
			want := s.table[refMHSlot(src, hp, s.size)]
			if got := sc.Schedule(flow(src, sport)); got != want {
				t.Fatalf("mh-port %v, %s:%d: got %v, want %v", port, src, sport, got, want)
			}
		}
	}
	// The first destination claims its first preference before any other.
	s := table[mhTable](mustNew(t, "mh", ds, Options{}))
	a := lvs.AddrFromNetip(destAddr(0))
	if got := s.table[mhHash(addrFold(&a), 80, mhKey1, 0)%s.size]; got != ds[0] {
		t.Errorf("first preference of A held by %v", got)
	}
}

func TestMHPort(t *testing.T) {
	ds := equalWeights(8)
	src := netip.MustParseAddr("192.0.2.9")
	for _, tt := range []struct {
		name  string
		flags []string
		min   int // distinct destinations over 64 source ports
		max   int
	}{
		{name: "address only", min: 1, max: 1},
		{name: "mh-port", flags: []string{"mh-port"}, min: 6, max: 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew(t, "mh", ds, Options{Flags: tt.flags})
			seen := map[*lvs.Dest]bool{}
			for p := range uint16(64) {
				seen[s.Schedule(flow(src, 30000+p))] = true
			}
			if len(seen) < tt.min || len(seen) > tt.max {
				t.Errorf("%d distinct destinations, want %d..%d", len(seen), tt.min, tt.max)
			}
		})
	}
}

// TestMHFallback makes one destination unusable: without mh-fallback its
// flows get none, with it they spread over the others; other flows never
// move.
func TestMHFallback(t *testing.T) {
	const down = 2
	for _, fallback := range []bool{false, true} {
		name, flags := "no fallback", []string(nil)
		if fallback {
			name, flags = "mh-fallback", []string{"mh-fallback"}
		}
		t.Run(name, func(t *testing.T) {
			ds := equalWeights(5)
			s := mustNew(t, "mh", ds, Options{Flags: flags})
			ts := flows(5000)
			before := make([]int, len(ts))
			for i, tp := range ts {
				before[i] = index(ds, s.Schedule(tp))
			}
			ds[down].Overloaded.Store(true)
			moved := make([]int, len(ds))
			for i, tp := range ts {
				got := index(ds, s.Schedule(tp))
				switch {
				case before[i] != down && got != before[i]:
					t.Fatalf("flow %d moved from %d to %d", i, before[i], got)
				case before[i] == down && !fallback && got != -1:
					t.Fatalf("flow %d of the unusable destination went to %d", i, got)
				case before[i] == down && fallback:
					if got == -1 || got == down {
						t.Fatalf("flow %d of the unusable destination went to %d", i, got)
					}
					if again := index(ds, s.Schedule(tp)); again != got {
						t.Fatalf("flow %d went to %d then %d", i, got, again)
					}
					moved[got]++
				}
			}
			if fallback {
				for i, n := range moved {
					if i != down && n == 0 {
						t.Errorf("no moved flow went to %d: %v", i, moved)
					}
				}
			}
			for _, d := range ds {
				d.Overloaded.Store(true)
			}
			if d := s.Schedule(ts[0]); d != nil {
				t.Errorf("all overloaded: got %v", d)
			}
		})
	}
}

func TestMHTooManyDests(t *testing.T) {
	if _, err := New("mh", equalWeights(252), Options{MHTableIndex: 8}); err == nil {
		t.Errorf("252 destinations in 251 slots: no error")
	}
	if _, err := New("mh", equalWeights(251), Options{MHTableIndex: 8}); err != nil {
		t.Errorf("251 destinations in 251 slots: %v", err)
	}
}
