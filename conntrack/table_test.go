package conntrack

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// fakeClock is a settable Options.Clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestTable(t testing.TB, max int) (*Table, *fakeClock) {
	t.Helper()
	c := &fakeClock{}
	c.ns.Store(int64(time.Hour)) // not zero, to catch "unset" bugs
	return New(Options{Max: max, Clock: c.now}), c
}

func tuple(proto lvs.Proto, src string, sport uint16, dst string, dport uint16) lvs.Tuple {
	return lvs.Tuple{
		Src: lvs.AddrFromNetip(netip.MustParseAddr(src)), SPort: sport,
		Dst: lvs.AddrFromNetip(netip.MustParseAddr(dst)), DPort: dport,
		Proto: proto,
	}
}

func dest(addr string, port uint16, m lvs.Method) *lvs.Dest {
	return lvs.NewDest(netip.MustParseAddr(addr), port, m, 1)
}

type conns struct{ Active, Inactive int32 }

func connsOf(d *lvs.Dest) conns {
	return conns{Active: d.ActiveConns.Load(), Inactive: d.InactiveConns.Load()}
}

func TestInsertLookup(t *testing.T) {
	tests := []struct {
		name    string
		in      lvs.Tuple
		d       *lvs.Dest
		wantOut lvs.Tuple // zero: not indexed
	}{
		{
			name:    "nat tcp v4 with port mapping",
			in:      tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80),
			d:       dest("192.0.2.21", 8080, lvs.NAT),
			wantOut: tuple(lvs.TCP, "192.0.2.21", 8080, "192.0.2.10", 40000),
		},
		{
			name:    "nat udp v6",
			in:      tuple(lvs.UDP, "2001:db8::10", 5353, "2001:db8::100", 53),
			d:       dest("2001:db8:1::21", 53, lvs.NAT),
			wantOut: tuple(lvs.UDP, "2001:db8:1::21", 53, "2001:db8::10", 5353),
		},
		{
			name: "dr indexes only in",
			in:   tuple(lvs.TCP, "192.0.2.10", 40001, "192.0.2.100", 80),
			d:    dest("192.0.2.22", 80, lvs.DR),
		},
		{
			name: "tun indexes only in",
			in:   tuple(lvs.UDP, "192.0.2.10", 40002, "192.0.2.100", 53),
			d:    dest("192.0.2.23", 53, lvs.TUN),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, clk := newTestTable(t, 0)
			var svc lvs.Stats
			mac := lvs.MAC{2, 0, 0, 0, 0, 1}
			e, created, err := tab.Insert(&tt.in, tt.d, &svc, mac, clk.now())
			if err != nil || !created {
				t.Fatalf("Insert = %v, %v, %v; want created", e, created, err)
			}
			if e.Out != tt.wantOut {
				t.Errorf("Out = %v, want %v", e.Out, tt.wantOut)
			}
			if e.ClientMAC != mac || e.Svc != &svc || e.Dest != tt.d || e.Method != tt.d.Method {
				t.Errorf("entry fields = %+v", e)
			}
			if got, reply := tab.Lookup(&tt.in); got == nil || !got.Same(e) || reply {
				t.Errorf("Lookup(in) = %p, %v; want %p, false", got, reply, e)
			}
			if tt.wantOut != (lvs.Tuple{}) {
				if got, reply := tab.Lookup(&tt.wantOut); got == nil || !got.Same(e) || !reply {
					t.Errorf("Lookup(out) = %p, %v; want %p, true", got, reply, e)
				}
			} else {
				rev := lvs.Tuple{Src: tt.d.Addr, Dst: tt.in.Src, SPort: tt.d.Port, DPort: tt.in.SPort, Proto: tt.in.Proto}
				if got, _ := tab.Lookup(&rev); got != nil {
					t.Errorf("Lookup(reply of %v) = %p, want miss", tt.d.Method, got)
				}
			}
			other := tt.in
			other.SPort++
			if got, _ := tab.Lookup(&other); got != nil {
				t.Errorf("Lookup(other) = %p, want miss", got)
			}
			if tab.Len() != 1 {
				t.Errorf("Len = %d, want 1", tab.Len())
			}
			if diff := cmp.Diff(conns{Inactive: 1}, connsOf(tt.d)); diff != "" {
				t.Errorf("dest conns (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInsertExisting(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	in := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	d1, d2 := dest("192.0.2.21", 80, lvs.NAT), dest("192.0.2.22", 80, lvs.NAT)
	e1, created, err := tab.Insert(&in, d1, nil, lvs.MAC{}, clk.now())
	if err != nil || !created {
		t.Fatalf("first Insert: created %v, err %v", created, err)
	}
	e2, created, err := tab.Insert(&in, d2, nil, lvs.MAC{}, clk.now())
	if err != nil || created || !e2.Same(e1) {
		t.Fatalf("second Insert = %p, %v, %v; want %p, false, nil", e2, created, err, e1)
	}
	if tab.Len() != 1 || connsOf(d1) != (conns{Inactive: 1}) || connsOf(d2) != (conns{}) {
		t.Errorf("Len %d, d1 %+v, d2 %+v", tab.Len(), connsOf(d1), connsOf(d2))
	}
}

func TestConcurrentInsertSameTuple(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	in := tuple(lvs.UDP, "192.0.2.10", 40000, "192.0.2.100", 53)
	d := dest("192.0.2.21", 53, lvs.NAT)
	const n = 16
	var (
		wg      sync.WaitGroup
		created atomic.Int32
		got     [n]*Entry
	)
	for i := range n {
		wg.Go(func() {
			e, c, err := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
			if err != nil {
				t.Error(err)
			}
			if c {
				created.Add(1)
			}
			got[i] = e
		})
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Errorf("%d inserts created the entry, want 1", created.Load())
	}
	for i := range got {
		if !got[i].Same(got[0]) {
			t.Fatalf("insert %d returned %p, insert 0 returned %p", i, got[i], got[0])
		}
	}
	if tab.Len() != 1 || connsOf(d) != (conns{Inactive: 1}) {
		t.Errorf("Len %d, conns %+v", tab.Len(), connsOf(d))
	}
}

func TestUDPStateless(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	in := tuple(lvs.UDP, "192.0.2.10", 40000, "192.0.2.100", 53)
	d := dest("192.0.2.21", 53, lvs.NAT)
	e, _, _ := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
	tab.Update(e, FlagACK, true, clk.now()) // flags mean nothing for UDP
	tab.Update(e, 0, false, clk.now())
	if e.State() != StateUDP || connsOf(d) != (conns{0, 1}) {
		t.Errorf("state %v conns %+v", e.State(), connsOf(d))
	}
}

// TestExpire checks each state's timeout: the entry survives it and is gone
// one wheel tick later, and a packet half-way restarts it.
func TestExpire(t *testing.T) {
	tests := []struct {
		name    string
		proto   lvs.Proto
		method  lvs.Method
		flags   []uint8 // client segments after Insert
		refresh uint8   // a client segment that keeps the state (0: none for NONE)
		state   State
		timeout time.Duration
	}{
		{"tcp none", lvs.TCP, lvs.NAT, nil, 0, StateNone, TCPNoneTimeout},
		{"tcp syn_recv", lvs.TCP, lvs.NAT, []uint8{FlagSYN}, FlagSYN, StateSynRecv, TCPSynTimeout},
		{"tcp established", lvs.TCP, lvs.NAT, []uint8{FlagSYN, FlagACK}, FlagACK, StateEstablished, DefaultTCPTimeout},
		{"tcp close_wait", lvs.TCP, lvs.NAT, []uint8{FlagSYN, FlagACK, FlagFIN}, FlagACK, StateCloseWait, TCPCloseWaitTimeout},
		{"tcp fin_wait (dr)", lvs.TCP, lvs.DR, []uint8{FlagSYN, FlagACK, FlagFIN}, FlagACK, StateFinWait, DefaultTCPFinTimeout},
		{"tcp time_wait (dr)", lvs.TCP, lvs.DR, []uint8{FlagSYN, FlagACK, FlagFIN, FlagRST, FlagSYN, FlagFIN}, FlagACK, StateTimeWait, TCPTimeWaitTimeout},
		{"tcp close", lvs.TCP, lvs.NAT, []uint8{FlagSYN, FlagACK, FlagRST}, FlagACK, StateClose, TCPCloseTimeout},
		{"udp", lvs.UDP, lvs.NAT, []uint8{0}, 0, StateUDP, DefaultUDPTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, clk := newTestTable(t, 0)
			in := tuple(tt.proto, "192.0.2.10", 40000, "192.0.2.100", 80)
			d := dest("192.0.2.21", 8080, tt.method)
			e, _, _ := tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
			for _, f := range tt.flags {
				clk.advance(100 * time.Millisecond)
				tab.Update(e, f, true, clk.now())
				tab.Expire(clk.now())
			}
			if e.State() != tt.state {
				t.Fatalf("state %v, want %v", e.State(), tt.state)
			}
			if got := e.Expires(clk.now()); got != tt.timeout {
				t.Errorf("Expires = %v, want %v", got, tt.timeout)
			}
			if tt.state != StateNone {
				// A packet half-way restarts the timeout.
				clk.advance(tt.timeout / 2)
				tab.Expire(clk.now())
				tab.Update(e, tt.refresh, true, clk.now())
				if e.State() != tt.state {
					t.Fatalf("state %v after a refresh, want %v", e.State(), tt.state)
				}
			}
			clk.advance(tt.timeout)
			if n := tab.Expire(clk.now()); n != 0 || !e.Live() {
				t.Fatalf("Expire at the timeout removed %d (live %v), want 0", n, e.Live())
			}
			clk.advance(time.Second + time.Millisecond)
			if n := tab.Expire(clk.now()); n != 1 {
				t.Fatalf("Expire a tick after the timeout = %d, want 1", n)
			}
			if got, _ := tab.Lookup(&in); got != nil {
				t.Error("In tuple still found")
			}
			if got, _ := tab.Lookup(&e.Out); got != nil {
				t.Error("Out tuple still found")
			}
			if tab.Len() != 0 || connsOf(d) != (conns{}) {
				t.Errorf("Len %d conns %+v, want empty", tab.Len(), connsOf(d))
			}
			// A late packet on the removed entry changes nothing.
			tab.Update(e, FlagRST, true, clk.now())
			if connsOf(d) != (conns{}) || e.State() != stateDead {
				t.Errorf("after a late update: conns %+v state %v", connsOf(d), e.State())
			}
		})
	}
}

func TestCustomTimeouts(t *testing.T) {
	c := &fakeClock{}
	tab := New(Options{Clock: c.now, Timeouts: Timeouts{UDP: 5 * time.Second, TCP: time.Hour}})
	in := tuple(lvs.UDP, "192.0.2.10", 40000, "192.0.2.100", 53)
	tcp := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	tab.Insert(&in, dest("192.0.2.21", 53, lvs.DR), nil, lvs.MAC{}, c.now())
	e, _, _ := tab.Insert(&tcp, dest("192.0.2.21", 80, lvs.DR), nil, lvs.MAC{}, c.now())
	tab.Update(e, FlagSYN, true, c.now())
	tab.Update(e, FlagACK, true, c.now())
	c.advance(6 * time.Second)
	if n := tab.Expire(c.now()); n != 1 {
		t.Fatalf("Expire = %d, want 1 (udp)", n)
	}
	c.advance(DefaultTCPTimeout)
	if n := tab.Expire(c.now()); n != 0 {
		t.Fatalf("Expire = %d, want 0 (tcp has an hour)", n)
	}
	// As ipvsadm --set: zeros keep the current values.
	tab.SetTimeouts(Timeouts{})
	if got := e.Expires(c.now()); got != time.Hour-DefaultTCPTimeout-6*time.Second {
		t.Fatalf("Expires after SetTimeouts(Timeouts{}) = %v", got)
	}
	// A lower timeout applies when the connection's timer fires, at the
	// latest when the old timeout would have ended (the wheel looks at
	// each entry at least every 1024 s).
	tab.SetTimeouts(Timeouts{TCP: time.Minute})
	if got := e.Expires(c.now()); got >= 0 {
		t.Fatalf("Expires after lowering tcp = %v, want < 0 (overdue)", got)
	}
	c.advance(1024 * time.Second)
	if n := tab.Expire(c.now()); n != 1 {
		t.Fatalf("Expire after lowering tcp = %d, want 1", n)
	}
}

func TestLastSeen(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	in := tuple(lvs.UDP, "192.0.2.10", 40000, "192.0.2.100", 53)
	e, _, _ := tab.Insert(&in, dest("192.0.2.21", 53, lvs.NAT), nil, lvs.MAC{}, clk.now())
	if e.LastSeen() != 0 {
		t.Errorf("last seen %v at the table's start", e.LastSeen())
	}
	clk.advance(1500 * time.Millisecond)
	tab.Update(e, 0, true, clk.now())
	if e.LastSeen() != 1500*time.Millisecond {
		t.Errorf("last seen %v, want 1.5s", e.LastSeen())
	}
}

func TestNATOutCollision(t *testing.T) {
	// Two VIPs mapping the same client port to the same RIP:rport: the
	// newest gets the replies; expiring the older keeps the newer's index.
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 8080, lvs.NAT)
	in1 := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	in2 := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.101", 80)
	e1, _, _ := tab.Insert(&in1, d, nil, lvs.MAC{}, clk.now())
	clk.advance(time.Second)
	e2, _, _ := tab.Insert(&in2, d, nil, lvs.MAC{}, clk.now())
	if got, reply := tab.Lookup(&e1.Out); got == nil || !got.Same(e2) || !reply {
		t.Fatalf("Lookup(out) = %p, want newest %p", got, e2)
	}
	if !tab.Remove(e1) {
		t.Fatal("Remove(e1) = false")
	}
	if got, _ := tab.Lookup(&e2.Out); got == nil || !got.Same(e2) {
		t.Fatalf("Lookup(out) after older left = %p, want %p", got, e2)
	}
	// An In tuple takes precedence over another connection's Out tuple.
	in3 := e2.Out
	e3, created, err := tab.Insert(&in3, dest("192.0.2.22", 80, lvs.DR), nil, lvs.MAC{}, clk.now())
	if err != nil || !created {
		t.Fatalf("Insert(e2.Out as In) = %v, %v", created, err)
	}
	if got, reply := tab.Lookup(&in3); got == nil || !got.Same(e3) || reply {
		t.Fatalf("Lookup(in3) = %p, %v; want %p as In", got, reply, e3)
	}
	if !tab.Remove(e2) {
		t.Fatal("Remove(e2) = false")
	}
	if got, _ := tab.Lookup(&in3); got == nil || !got.Same(e3) {
		t.Fatalf("removing e2 removed e3's In slot")
	}
}

func TestRange(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	d := dest("192.0.2.21", 8080, lvs.NAT)
	want := map[lvs.Tuple]bool{}
	for i := range 100 {
		in := tuple(lvs.TCP, "192.0.2.10", uint16(1000+i), "192.0.2.100", 80)
		tab.Insert(&in, d, nil, lvs.MAC{}, clk.now())
		want[in] = true
	}
	got := map[lvs.Tuple]bool{}
	tab.Range(func(e *Entry) bool {
		got[e.In] = true
		// Range holds no lock: calling back into the table is allowed.
		tab.Lookup(&e.In)
		return true
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Range (-want +got):\n%s", diff)
	}
	n := 0
	tab.Range(func(*Entry) bool { n++; return n < 10 })
	if n != 10 {
		t.Errorf("Range did not stop: %d calls", n)
	}
}

func TestRunStops(t *testing.T) {
	before := runtime.NumGoroutine()
	tab, _ := newTestTable(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		tab.Run(ctx)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
	for range 100 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("goroutines: %d before, %d after", before, runtime.NumGoroutine())
}

// TestConcurrent runs readers (Lookup, Update) against inserts and expiry;
// run with -race. At the end, the destinations' counters must match the
// table.
func TestConcurrent(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	dests := []*lvs.Dest{dest("192.0.2.21", 8080, lvs.NAT), dest("192.0.2.22", 80, lvs.DR)}
	const flows = 2000
	tuples := make([]lvs.Tuple, flows)
	for i := range tuples {
		tuples[i] = tuple(lvs.TCP, fmt.Sprintf("192.0.2.%d", 1+i%200), uint16(1024+i), "192.0.2.100", 80)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			flags := []uint8{FlagSYN, FlagACK, FlagACK, FlagFIN, FlagRST}
			for i := 0; ctx.Err() == nil; i++ {
				k := &tuples[(i*7+r)%flows]
				e, _ := tab.Lookup(k)
				if e == nil {
					var err error
					e, _, err = tab.Insert(k, dests[i%2], nil, lvs.MAC{}, clk.now())
					if err != nil {
						t.Error(err)
						return
					}
				}
				tab.Update(e, flags[i%len(flags)], i%3 != 0, clk.now())
				if e.Method == lvs.NAT {
					if got, reply := tab.Lookup(&e.Out); got != nil && !reply {
						t.Error("Out tuple found as In")
					}
				}
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			clk.advance(5 * time.Second)
			tab.Expire(clk.now())
			tab.Range(func(e *Entry) bool { _ = e.State(); return true })
		}
	})
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()

	check := func() {
		t.Helper()
		var active, inactive int32
		for _, d := range dests {
			active += d.ActiveConns.Load()
			inactive += d.InactiveConns.Load()
		}
		n := 0
		var wantActive int32
		tab.Range(func(e *Entry) bool {
			n++
			if e.State().Active() {
				wantActive++
			}
			return true
		})
		if n != tab.Len() || int(active+inactive) != n || active != wantActive {
			t.Errorf("Range %d, Len %d, active %d (want %d) + inactive %d", n, tab.Len(), active, wantActive, inactive)
		}
	}
	check()
	clk.advance(time.Hour)
	tab.Expire(clk.now())
	check()
	if tab.Len() != 0 {
		t.Errorf("Len after expiring all = %d", tab.Len())
	}
}

func TestAllocs(t *testing.T) {
	tab, clk := newTestTable(t, 0)
	in := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
	e, _, _ := tab.Insert(&in, dest("192.0.2.21", 8080, lvs.NAT), nil, lvs.MAC{}, clk.now())
	if n := testing.AllocsPerRun(1000, func() {
		got, _ := tab.Lookup(&in)
		clk.advance(time.Millisecond)
		tab.Update(got, FlagACK, true, clk.now())
		tab.Lookup(&e.Out)
	}); n > 0 {
		t.Errorf("Lookup+Update: %v allocs, want 0", n)
	}
}

func fill(b *testing.B, tab *Table, n int, now int64) []lvs.Tuple {
	b.Helper()
	d := dest("192.0.2.21", 8080, lvs.NAT)
	ts := make([]lvs.Tuple, n)
	for i := range ts {
		ts[i] = lvs.Tuple{
			Src:   lvs.AddrFrom4([]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			Dst:   lvs.AddrFrom4([]byte{192, 0, 2, 100}),
			SPort: uint16(1024 + i%60000), DPort: 80, Proto: lvs.TCP,
		}
		if _, _, err := tab.Insert(&ts[i], d, nil, lvs.MAC{}, now); err != nil {
			b.Fatal(err)
		}
	}
	return ts
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("hit/%d", n), func(b *testing.B) {
			tab, clk := newTestTable(b, 2*n)
			ts := fill(b, tab, n, clk.now())
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if e, _ := tab.Lookup(&ts[i%n]); e == nil {
					b.Fatal("miss")
				}
			}
		})
	}
	b.Run("hit/1000/parallel", func(b *testing.B) {
		tab, clk := newTestTable(b, 0)
		ts := fill(b, tab, 1000, clk.now())
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				tab.Lookup(&ts[i%1000])
			}
		})
	})
}

func BenchmarkUpdate(b *testing.B) {
	tab, clk := newTestTable(b, 0)
	ts := fill(b, tab, 1, clk.now())
	e, _ := tab.Lookup(&ts[0])
	b.ReportAllocs()
	for b.Loop() {
		tab.Update(e, FlagACK, true, clk.now())
	}
}

// BenchmarkInsert measures Insert into maps that must grow ("grow") and into
// maps already grown by earlier connections that have expired ("warm", the
// steady state of a busy director).
func BenchmarkInsert(b *testing.B) {
	key := func(i, gen int) lvs.Tuple {
		return lvs.Tuple{
			Src:   lvs.AddrFrom4([]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			Dst:   lvs.AddrFrom4([]byte{192, 0, 2, 100}),
			SPort: uint16(i>>24 + gen), DPort: 80, Proto: lvs.TCP,
		}
	}
	d := dest("192.0.2.21", 8080, lvs.NAT)
	b.Run("grow", func(b *testing.B) {
		tab, clk := newTestTable(b, 1<<30)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := key(i, 0)
			if _, _, err := tab.Insert(&k, d, nil, lvs.MAC{}, clk.now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		tab, clk := newTestTable(b, 1<<30)
		for i := range b.N {
			k := key(i, 0)
			tab.Insert(&k, d, nil, lvs.MAC{}, clk.now())
		}
		clk.advance(time.Hour)
		tab.Expire(clk.now())
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			k := key(i, 1000)
			if _, _, err := tab.Insert(&k, d, nil, lvs.MAC{}, clk.now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestShardSpread checks that sequential IPv4 clients and ports spread over
// the shards (the hash is the only thing between a SYN flood from one subnet
// and a single hot lock).
func TestShardSpread(t *testing.T) {
	tab, _ := newTestTable(t, 0)
	var counts [numShards]int
	const n = 256 * 200
	for i := range n {
		k := lvs.Tuple{
			Src:   lvs.AddrFrom4([]byte{192, 0, 2, byte(i)}),
			Dst:   lvs.AddrFrom4([]byte{192, 0, 2, 100}),
			SPort: uint16(1024 + i>>8), DPort: 80, Proto: lvs.TCP,
		}
		counts[hashTuple(&k, tab.seed)>>(64-numShardsLog)]++
	}
	for i, c := range counts {
		if c < n/numShards/2 || c > n/numShards*2 {
			t.Errorf("shard %d has %d of %d tuples (mean %d)", i, c, n, n/numShards)
		}
	}
}

func TestStateTimeouts(t *testing.T) {
	c := &fakeClock{}
	tab := New(Options{Clock: c.now, Timeouts: Timeouts{TCPTimeWait: time.Second}})
	d := dest("192.0.2.21", 80, lvs.NAT)
	in := tuple(lvs.TCP, "192.0.2.10", 1000, "192.0.2.100", 80)
	e, _, _ := tab.Insert(&in, d, nil, lvs.MAC{}, c.now())
	for _, s := range []struct {
		flags      uint8
		fromClient bool
	}{{FlagSYN, true}, {FlagSYN | FlagACK, false}, {FlagACK, true}, {FlagFIN | FlagACK, false}, {FlagFIN | FlagACK, true}} {
		tab.Update(e, s.flags, s.fromClient, c.now())
	}
	if e.State() != StateTimeWait || e.Expires(c.now()) != time.Second {
		t.Fatalf("%v, expires %v; want TIME_WAIT, 1s", e.State(), e.Expires(c.now()))
	}
	tab.SetTimeouts(Timeouts{TCPClose: 3 * time.Second}) // keeps TIME_WAIT's
	if e.Expires(c.now()) != time.Second {
		t.Errorf("SetTimeouts without TCPTimeWait changed it")
	}
	tab.Update(e, FlagRST, true, c.now())
	if e.State() != StateClose || e.Expires(c.now()) != 3*time.Second {
		t.Errorf("%v, expires %v; want CLOSE, 3s", e.State(), e.Expires(c.now()))
	}
	c.advance(2 * time.Second)
	if tab.Expire(c.now()) != 0 {
		t.Fatal("expired before its timeout")
	}
	c.advance(3 * time.Second)
	if tab.Expire(c.now()) != 1 {
		t.Fatal("not expired after CLOSE's 3 s")
	}
}

// TestTimeoutsValue checks that Options.Timeouts and SetTimeouts set every
// field of Timeouts, that zero fields keep the value, and that Timeouts
// reads back what applies.
func TestTimeoutsValue(t *testing.T) {
	tab := New(Options{Timeouts: Timeouts{TCPSynRecv: 5 * time.Second}})
	want := DefaultTimeouts()
	want.TCPSynRecv = 5 * time.Second
	if diff := cmp.Diff(want, tab.Timeouts()); diff != "" {
		t.Fatalf("Timeouts after New (-want +got):\n%s", diff)
	}
	all := Timeouts{TCP: 1 * time.Second, TCPFin: 2 * time.Second, UDP: 3 * time.Second,
		TCPTimeWait: 4 * time.Second, TCPClose: 5 * time.Second, TCPSynRecv: 6 * time.Second}
	tab.SetTimeouts(all)
	if diff := cmp.Diff(all, tab.Timeouts()); diff != "" {
		t.Fatalf("Timeouts after SetTimeouts (-want +got):\n%s", diff)
	}
	tab.SetTimeouts(Timeouts{UDP: -1, TCP: 2 * MaxTimeout})
	all.TCP = MaxTimeout
	if diff := cmp.Diff(all, tab.Timeouts()); diff != "" {
		t.Fatalf("Timeouts after a clamp and a negative (-want +got):\n%s", diff)
	}
}
