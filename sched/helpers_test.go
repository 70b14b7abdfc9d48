package sched

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lvsd/lvsd/lvs"
)

// Test addresses: the virtual address is 192.0.2.1; destination i is
// 192.0.2.(100+i) for i < 100 and 2001:db8:d::i beyond; clients are
// 192.0.2.2-99 or 2001:db8:c::/48.

var vip = netip.MustParseAddr("192.0.2.1")

// destAddr is the address of test destination i.
func destAddr(i int) netip.Addr {
	if i < 100 {
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})
	}
	var a [16]byte
	copy(a[:], netip.MustParseAddr("2001:db8:d::").AsSlice())
	binary.BigEndian.PutUint32(a[12:], uint32(i))
	return netip.AddrFrom16(a)
}

// testDests returns available destinations with the given weights, port 80,
// addressed as destAddr.
func testDests(weights ...int32) []*lvs.Dest {
	ds := make([]*lvs.Dest, len(weights))
	for i, w := range weights {
		ds[i] = lvs.NewDest(destAddr(i), 80, lvs.DR, w)
	}
	return ds
}

// equalWeights returns n destinations of weight 1.
func equalWeights(n int) []*lvs.Dest {
	ws := make([]int32, n)
	for i := range ws {
		ws[i] = 1
	}
	return testDests(ws...)
}

// clientAddr is the address of test client i: IPv6 in 2001:db8:c::/48, so
// that there are as many as a test needs.
func clientAddr(i int) netip.Addr {
	var a [16]byte
	copy(a[:], netip.MustParseAddr("2001:db8:c::").AsSlice())
	binary.BigEndian.PutUint64(a[8:], uint64(i)*0x9e3779b1+1)
	return netip.AddrFrom16(a)
}

// flow returns a TCP tuple from src:sport to the virtual service.
func flow(src netip.Addr, sport uint16) *lvs.Tuple {
	return &lvs.Tuple{
		Src:   lvs.AddrFromNetip(src),
		Dst:   lvs.AddrFromNetip(vip),
		SPort: sport,
		DPort: 80,
		Proto: lvs.TCP,
	}
}

// flows returns n distinct tuples: client i with source port 1024+i%50000.
func flows(n int) []*lvs.Tuple {
	ts := make([]*lvs.Tuple, n)
	for i := range ts {
		ts[i] = flow(clientAddr(i), uint16(1024+i%50000))
	}
	return ts
}

func mustNew(t testing.TB, name string, dests []*lvs.Dest, opts Options) Scheduler {
	t.Helper()
	s, err := New(name, dests, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	return s
}

// table returns the table T in force in s, a Scheduler that rebuilds it on
// every change (not rr, wrr, lblc or lblcr).
func table[T any](s Scheduler) *T {
	return &s.(interface{ base() *rebuilt[T] }).base().cur.Load().p
}

// label names d by its position in dests: "A", "B", ... ("-" for nil).
func label(dests []*lvs.Dest, d *lvs.Dest) string {
	if d == nil {
		return "-"
	}
	for i, x := range dests {
		if x == d {
			if i < 26 {
				return string(rune('A' + i))
			}
			return fmt.Sprintf("[%d]", i)
		}
	}
	return "?" + d.String()
}

// index returns d's position in dests, or -1 for nil.
func index(dests []*lvs.Dest, d *lvs.Dest) int {
	for i, x := range dests {
		if x == d {
			return i
		}
	}
	return -1
}

// sequence schedules n times for t and returns the labels, concatenated.
func sequence(s Scheduler, dests []*lvs.Dest, t *lvs.Tuple, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(label(dests, s.Schedule(t)))
	}
	return b.String()
}

// fakeClock is a settable Options.Clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64 { return c.ns.Load() }

func (c *fakeClock) advance(d int64) { c.ns.Add(d) }

// conns sets a destination's connection counters.
func conns(d *lvs.Dest, active, inactive int32) {
	d.ActiveConns.Store(active)
	d.InactiveConns.Store(inactive)
}
