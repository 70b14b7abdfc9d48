package conntrack

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// udpFlow inserts a UDP flow from 192.0.2.0/24 (host h, port p) with one
// packet, as a flood sends them.
func udpFlow(t *testing.T, tab *Table, clk *fakeClock, d *lvs.Dest, h, p int) (*Entry, error) {
	t.Helper()
	in := tuple(lvs.UDP, fmt.Sprintf("192.0.2.%d", h), uint16(p), "192.0.2.100", 53)
	e, _, err := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
	if err == nil {
		tab.Update(e, 0, true, clk.now())
	}
	return e, err
}

// TestUDPEvictable fills a table with one-packet UDP flows, as a flood
// does: a new TCP connection still gets in (a UDP flow is evicted), as IPVS's
// drop_entry drops idle UDP entries; before, UDP entries were never evicted
// and the table refused every new connection until they timed out.
func TestUDPEvictable(t *testing.T) {
	const max = 64
	tab, clk := newTestTable(t, max)
	d := dest("192.0.2.21", 53, lvs.NAT)
	for i := range 4 * max {
		if _, err := udpFlow(t, tab, clk, d, 1+i%200, 10000+i); err != nil {
			t.Fatalf("UDP flow %d: %v", i, err)
		}
	}
	web := dest("192.0.2.21", 80, lvs.NAT)
	for i := range max {
		if _, err := open(t, tab, clk, web, uint16(1000+i), FlagSYN, FlagACK); err != nil {
			t.Fatalf("TCP connection %d into a table full of UDP flows: %v", i, err)
		}
	}
	s := tab.Stats()
	if s.Conns != max || s.Refused != 0 || s.Evicted != 4*max {
		t.Errorf("conns %d refused %d evicted %d; want %d, 0, %d", s.Conns, s.Refused, s.Evicted, max, 4*max)
	}
	if s.Unestablished != 0 {
		t.Errorf("unestablished %d, want 0 (only established connections left)", s.Unestablished)
	}
}

// TestUDPSecondChance checks that eviction takes the one-packet flows of a
// flood before the UDP flows that carry traffic.
func TestUDPSecondChance(t *testing.T) {
	// Eviction looks for a one-packet flow in up to evictShards shards
	// before it takes a flow in use; the table is large enough (64
	// entries a shard) that each shard always has one-packet flows, so
	// the test checks the order of eviction, not the luck of the hash.
	const max = 64 << numShardsLog
	tab, clk := newTestTable(t, max)
	d := dest("192.0.2.21", 53, lvs.NAT)
	var used []*Entry
	for i := range max / 2 {
		e, err := udpFlow(t, tab, clk, d, 1, 20000+i)
		if err != nil {
			t.Fatal(err)
		}
		used = append(used, e)
	}
	clk.advance(10 * time.Millisecond)
	for _, e := range used {
		tab.Update(e, 0, false, clk.now()) // a reply: the flow is in use
	}
	for i := range 4 * max {
		if _, err := udpFlow(t, tab, clk, d, 2+i/30000, 30000+i%30000); err != nil {
			t.Fatalf("flood flow %d: %v", i, err)
		}
	}
	lost := 0
	for _, e := range used {
		if !e.Live() {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d used flows evicted by one-packet flows", lost, len(used))
	}
}

// TestReserve checks Options.Reserve: entries that never established fill
// only Max*(1-Reserve), and over it a new one evicts one of them; the
// handshakes that complete then use the reserved share.
func TestReserve(t *testing.T) {
	const max = 100
	clk := &fakeClock{}
	tab := New(Options{Max: max, Clock: clk.now, Reserve: 0.2})
	d := dest("192.0.2.21", 53, lvs.NAT)
	for i := range 3 * max {
		if _, err := udpFlow(t, tab, clk, d, 1+i%200, 10000+i); err != nil {
			t.Fatalf("UDP flow %d: %v", i, err)
		}
	}
	if s := tab.Stats(); s.Conns != 80 || s.Unestablished != 80 || s.Evicted != 3*max-80 || s.Refused != 0 {
		t.Fatalf("after the flood: conns %d unestablished %d evicted %d refused %d; want 80 80 %d 0",
			s.Conns, s.Unestablished, s.Evicted, 3*max-80, s.Refused)
	}
	web := dest("192.0.2.21", 80, lvs.NAT)
	var est []*Entry
	for i := range 20 {
		e, err := open(t, tab, clk, web, uint16(1000+i), FlagSYN, FlagACK)
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		est = append(est, e)
	}
	// The flood goes on: it fills the unestablished share again, never
	// the established connections'.
	for i := range max {
		if _, err := udpFlow(t, tab, clk, d, 1+i%200, 40000+i); err != nil {
			t.Fatalf("UDP flow %d: %v", i, err)
		}
	}
	if s := tab.Stats(); s.Conns != max || s.Unestablished != 80 {
		t.Errorf("conns %d unestablished %d, want %d, 80", s.Conns, s.Unestablished, max)
	}
	for i, e := range est {
		if !e.Live() || e.State() != StateEstablished {
			t.Errorf("established connection %d: %v", i, e.State())
		}
	}
	// Everything that ends is taken off the unestablished count.
	clk.advance(2 * DefaultTCPTimeout)
	tab.Expire(clk.now())
	if s := tab.Stats(); s.Conns != 0 || s.Unestablished != 0 {
		t.Errorf("after expiry: conns %d unestablished %d, want 0 0", s.Conns, s.Unestablished)
	}
}

// TestReserveSYNFlood: half-open connections count as unestablished too.
func TestReserveSYNFlood(t *testing.T) {
	const max = 100
	clk := &fakeClock{}
	tab := New(Options{Max: max, Clock: clk.now, Reserve: 0.5})
	d := dest("192.0.2.21", 80, lvs.DR)
	var est []*Entry
	for i := range 30 {
		e, err := open(t, tab, clk, d, uint16(1000+i), FlagSYN, FlagACK)
		if err != nil {
			t.Fatal(err)
		}
		est = append(est, e)
	}
	for i := range 1000 {
		if _, err := open(t, tab, clk, d, uint16(10000+i), FlagSYN); err != nil {
			t.Fatalf("SYN %d: %v", i, err)
		}
	}
	if s := tab.Stats(); s.Unestablished != 50 || s.Conns != 80 {
		t.Errorf("unestablished %d conns %d, want 50 80", s.Unestablished, s.Conns)
	}
	for i, e := range est {
		if !e.Live() {
			t.Errorf("established connection %d evicted", i)
		}
	}
}

// TestSourceLimits checks Admit's per-prefix connection and rate limits
// and their counters.
func TestSourceLimits(t *testing.T) {
	clk := &fakeClock{}
	tab := New(Options{Clock: clk.now, Sources: SourceLimits{Conns: 3, PrefixV4: 24}})
	d := dest("192.0.2.21", 80, lvs.DR)
	addr := func(s string) *lvs.Addr { a := lvs.AddrFromNetip(netip.MustParseAddr(s)); return &a }
	var es []*Entry
	for i, src := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		if err := tab.Admit(addr(src), clk.now()); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		in := tuple(lvs.TCP, src, 1000, "192.0.2.100", 80)
		e, _, err := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	if err := tab.Admit(addr("198.51.100.200"), clk.now()); !errors.Is(err, ErrSourceLimit) {
		t.Fatalf("fourth connection of 198.51.100.0/24: %v, want ErrSourceLimit", err)
	}
	if err := tab.Admit(addr("203.0.113.1"), clk.now()); err != nil {
		t.Fatalf("another prefix: %v", err)
	}
	tab.Remove(es[0])
	if err := tab.Admit(addr("198.51.100.200"), clk.now()); err != nil {
		t.Fatalf("after one of the three ended: %v", err)
	}

	tab.SetSourceLimits(SourceLimits{NewPerSec: 5, PrefixV6: 48})
	for i := range 5 {
		if err := tab.Admit(addr(fmt.Sprintf("2001:db8:1:%x::1", i)), clk.now()); err != nil {
			t.Fatalf("new connection %d in the second: %v", i, err)
		}
	}
	if err := tab.Admit(addr("2001:db8:1:ffff::1"), clk.now()); !errors.Is(err, ErrSourceRate) {
		t.Fatalf("sixth in the second: %v, want ErrSourceRate", err)
	}
	if err := tab.Admit(addr("2001:db8:2::1"), clk.now()); err != nil {
		t.Fatalf("another /48: %v", err)
	}
	clk.advance(time.Second)
	if err := tab.Admit(addr("2001:db8:1:ffff::1"), clk.now()); err != nil {
		t.Fatalf("the next second: %v", err)
	}
	if s := tab.Stats(); s.SourceLimited != 1 || s.SourceRated != 1 {
		t.Errorf("source limited %d rated %d, want 1 1", s.SourceLimited, s.SourceRated)
	}
	// With no limit, Admit admits everything.
	tab.SetSourceLimits(SourceLimits{})
	for range 100 {
		if err := tab.Admit(addr("2001:db8:1::1"), clk.now()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAdmitAllocs: Admit runs per new connection on the packet path.
func TestAdmitAllocs(t *testing.T) {
	clk := &fakeClock{}
	tab := New(Options{Clock: clk.now, Sources: SourceLimits{Conns: 1000, NewPerSec: 1 << 30}})
	a := lvs.AddrFromNetip(netip.MustParseAddr("192.0.2.1"))
	if n := testing.AllocsPerRun(1000, func() { _ = tab.Admit(&a, clk.now()) }); n != 0 {
		t.Errorf("Admit allocates %v times", n)
	}
}
