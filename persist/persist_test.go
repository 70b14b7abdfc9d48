package persist

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Documentation addresses only: 192.0.2.0/24 and 2001:db8::/32.

const sec = int64(time.Second)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

var vip = netip.MustParseAddr("192.0.2.100")

func dest(i int) *lvs.Dest {
	return lvs.NewDest(netip.AddrFrom4([4]byte{192, 0, 2, byte(20 + i)}), 8080, lvs.NAT, 1)
}

func tuple(src string, sport, dport uint16) *lvs.Tuple {
	s := netip.MustParseAddr(src)
	d := vip
	if s.Is6() {
		d = netip.MustParseAddr("2001:db8::100")
	}
	return &lvs.Tuple{Src: lvs.AddrFromNetip(s), Dst: lvs.AddrFromNetip(d), SPort: sport, DPort: dport, Proto: lvs.TCP}
}

// env is a table with a fake clock and a 300 s /32 policy for port 80.
type env struct {
	clk *fakeClock
	tab *Table
	pol *Policy
}

func newEnv(bits int) *env {
	clk := &fakeClock{}
	clk.ns.Store(1000 * sec)
	tab := New(Options{Clock: clk.now})
	return &env{clk: clk, tab: tab, pol: &Policy{Table: tab, Timeout: 300 * sec, Mask: Mask(bits, true), Port: 80}}
}

// connect does what the forwarder does for a new connection of t: the
// template's real server, else the scheduler's choice (pick) bound in a new
// template. It returns the template, acquired.
func (e *env) connect(t testing.TB, tp *lvs.Tuple, pick *lvs.Dest) *Template {
	t.Helper()
	k := e.pol.Key(tp)
	now := e.clk.now()
	if x := e.tab.Get(&k, now); x != nil {
		return x
	}
	x, err := e.tab.Create(&k, pick, e.pol.Timeout, now)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return x
}

func TestMask(t *testing.T) {
	tests := []struct {
		bits int
		v4   bool
		addr string
		want string
	}{
		{32, true, "192.0.2.77", "192.0.2.77"},
		{24, true, "192.0.2.77", "192.0.2.0"},
		{20, true, "192.0.2.77", "192.0.0.0"},
		{28, true, "192.0.2.77", "192.0.2.64"},
		{0, true, "192.0.2.77", "0.0.0.0"},
		{128, false, "2001:db8::77", "2001:db8::77"},
		{64, false, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{48, false, "2001:db8:1:2:3:4:5:6", "2001:db8:1::"},
		{57, false, "2001:db8:1:2ff:3:4:5:6", "2001:db8:1:280::"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.addr, tt.bits), func(t *testing.T) {
			p := &Policy{Mask: Mask(tt.bits, tt.v4)}
			k := p.Key(tuple(tt.addr, 1, 80))
			if got := k.Client.Netip().String(); got != tt.want {
				t.Errorf("masked %s/%d = %s, want %s", tt.addr, tt.bits, got, tt.want)
			}
		})
	}
}

func TestBinding(t *testing.T) {
	e := newEnv(32)
	a, b := dest(1), dest(2)
	first := e.connect(t, tuple("192.0.2.10", 40000, 80), a)
	if first.Dest != a || a.PersistConns.Load() != 1 || e.tab.Len() != 1 {
		t.Fatalf("first connection: dest %v, A's templates %d, table %d; want A, 1, 1", first.Dest, a.PersistConns.Load(), e.tab.Len())
	}
	// Later connections of the client, from other ports, go to A even when
	// the scheduler would pick B.
	for port := uint16(40001); port < 40010; port++ {
		e.clk.advance(10 * time.Second)
		if got := e.connect(t, tuple("192.0.2.10", port, 80), b); got != first {
			t.Fatalf("connection from port %d: template %p (dest %v), want the first (A)", port, got, got.Dest)
		}
	}
	if got := first.Controlled(); got != 10 {
		t.Errorf("controlled connections %d, want 10", got)
	}
	// Another client gets its own template.
	if other := e.connect(t, tuple("192.0.2.11", 40000, 80), b); other == first || other.Dest != b {
		t.Errorf("another client shares the template or lost the scheduler's choice")
	}
	if e.tab.Len() != 2 {
		t.Errorf("table holds %d templates, want 2", e.tab.Len())
	}
}

func TestNetmaskGrouping(t *testing.T) {
	e := newEnv(28)
	a, b := dest(1), dest(2)
	first := e.connect(t, tuple("192.0.2.16", 1, 80), a)
	for _, c := range []string{"192.0.2.17", "192.0.2.20", "192.0.2.31"} {
		if got := e.connect(t, tuple(c, 2, 80), b); got != first {
			t.Errorf("%s (same /28) has its own template (dest %v)", c, got.Dest)
		}
	}
	if got := e.connect(t, tuple("192.0.2.32", 2, 80), b); got == first || got.Dest != b {
		t.Errorf("192.0.2.32 (another /28) shares 192.0.2.16/28's template")
	}

	// IPv6 with a /64.
	e.pol.Mask = Mask(64, false)
	v6 := e.connect(t, tuple("2001:db8:0:1::10", 1, 80), a)
	if got := e.connect(t, tuple("2001:db8:0:1:ffff::1", 1, 80), b); got != v6 {
		t.Errorf("same /64: another template")
	}
	if got := e.connect(t, tuple("2001:db8:0:2::10", 1, 80), b); got == v6 {
		t.Errorf("another /64: same template")
	}
}

func TestExpiry(t *testing.T) {
	e := newEnv(32)
	a, b := dest(1), dest(2)
	tp := e.connect(t, tuple("192.0.2.10", 1, 80), a)
	tp.Release() // the connection ended at once

	// Just before the timeout the client still goes to A; the lookup
	// restarts the timer (IPVS restarts it on every use).
	e.clk.advance(299 * time.Second)
	again := e.connect(t, tuple("192.0.2.10", 2, 80), b)
	if again != tp {
		t.Fatalf("before the timeout: a new template")
	}
	again.Release()
	e.clk.advance(299 * time.Second)
	if n := e.tab.Expire(e.clk.now()); n != 0 {
		t.Fatalf("Expire removed %d templates 299 s after the last use", n)
	}
	e.clk.advance(time.Second)
	if n := e.tab.Expire(e.clk.now()); n != 1 || e.tab.Len() != 0 || !tp.Removed() {
		t.Fatalf("Expire at the timeout removed %d (table %d, removed %v), want 1 (0, true)", n, e.tab.Len(), tp.Removed())
	}
	if a.PersistConns.Load() != 0 {
		t.Errorf("A counts %d templates after expiry, want 0", a.PersistConns.Load())
	}
	if got := e.connect(t, tuple("192.0.2.10", 3, 80), b); got.Dest != b {
		t.Errorf("after expiry the client went to %v, want the scheduler's choice B", got.Dest)
	}

	// Lazy expiry: a lookup after the timeout, before any sweep, finds
	// nothing.
	e2 := newEnv(32)
	x := e2.connect(t, tuple("192.0.2.10", 1, 80), a)
	x.Release()
	e2.clk.advance(300 * time.Second)
	k := e2.pol.Key(tuple("192.0.2.10", 2, 80))
	if got := e2.tab.Get(&k, e2.clk.now()); got != nil {
		t.Errorf("Get after the timeout returned a template")
	}
	if e2.tab.Len() != 0 {
		t.Errorf("Get left the expired template in the table")
	}
}

// TestRefreshWhileControlled checks IPVS's rule: a template whose timer runs
// out while it still controls connections is restarted, and expires at the
// first timeout after its last connection ended.
func TestRefreshWhileControlled(t *testing.T) {
	e := newEnv(32)
	a := dest(1)
	tp := e.connect(t, tuple("192.0.2.10", 1, 80), a) // a long connection
	for range 5 {
		e.clk.advance(300 * time.Second)
		if n := e.tab.Expire(e.clk.now()); n != 0 {
			t.Fatalf("a template controlling a connection expired")
		}
	}
	restarted := tp.Deadline()
	if want := e.clk.now() + 300*sec; restarted != want {
		t.Errorf("deadline %d, want %d (restarted at the last sweep)", restarted, want)
	}
	e.clk.advance(100 * time.Second)
	tp.Release() // the connection left the connection table
	e.clk.advance(199 * time.Second)
	if n := e.tab.Expire(e.clk.now()); n != 0 {
		t.Errorf("expired before its restarted timer ran out")
	}
	e.clk.advance(time.Second)
	if n := e.tab.Expire(e.clk.now()); n != 1 {
		t.Errorf("not expired when its timer ran out with no connection")
	}
}

func TestInvalidation(t *testing.T) {
	tests := []struct {
		name            string
		change          func(d *lvs.Dest)
		expireQuiescent bool
		valid           bool
	}{
		{name: "health check down", change: func(d *lvs.Dest) { d.SetAvailable(false, 0) }},
		{name: "removed", change: func(d *lvs.Dest) { d.Available.Store(false) }},
		{name: "quiescent", change: func(d *lvs.Dest) { d.SetWeight(0, 0) }, valid: true},
		{name: "quiescent, expire_quiescent_template", change: func(d *lvs.Dest) { d.SetWeight(0, 0) }, expireQuiescent: true},
		{name: "overloaded", change: func(d *lvs.Dest) { d.Overloaded.Store(true) }, valid: true},
		{name: "weight changed", change: func(d *lvs.Dest) { d.SetWeight(5, 0) }, valid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(32)
			e.tab.SetExpireQuiescent(tt.expireQuiescent)
			a, b := dest(1), dest(2)
			first := e.connect(t, tuple("192.0.2.10", 1, 80), a)
			tt.change(a)
			got := e.connect(t, tuple("192.0.2.10", 2, 80), b)
			if tt.valid {
				if got != first {
					t.Errorf("the template was invalidated; the client moved to %v", got.Dest)
				}
				return
			}
			if got == first || got.Dest != b {
				t.Errorf("the template of an unusable server was kept")
			}
			if !first.Removed() || a.PersistConns.Load() != 0 || e.tab.Len() != 1 {
				t.Errorf("invalid template: removed %v, A's templates %d, table %d; want true, 0, 1",
					first.Removed(), a.PersistConns.Load(), e.tab.Len())
			}
			// The old template still counts its connection until released.
			if first.Controlled() != 1 {
				t.Errorf("invalidated template controls %d connections, want 1", first.Controlled())
			}
		})
	}
}

// TestServerBackBeforeLookup: as in IPVS, a template is checked only when it
// is used, so a server that is down and back before the client's next
// connection keeps the client.
func TestServerBackBeforeLookup(t *testing.T) {
	e := newEnv(32)
	a, b := dest(1), dest(2)
	first := e.connect(t, tuple("192.0.2.10", 1, 80), a)
	a.SetAvailable(false, e.clk.now())
	e.clk.advance(5 * time.Second)
	e.tab.Expire(e.clk.now())
	a.SetAvailable(true, e.clk.now())
	if got := e.connect(t, tuple("192.0.2.10", 2, 80), b); got != first {
		t.Errorf("the client moved although its server came back before it reconnected")
	}
}

// TestPortZeroSharing: a service over several ports keys its templates with
// port 0, so one client's connections to any of its ports share the template;
// one-port services have one template per port.
func TestPortZeroSharing(t *testing.T) {
	e := newEnv(32)
	a, b := dest(1), dest(2)
	e.pol.Port = 0
	web := e.connect(t, tuple("192.0.2.10", 1, 80), a)
	for _, port := range []uint16{443, 8443, 1, 65535} {
		if got := e.connect(t, tuple("192.0.2.10", 2, port), b); got != web {
			t.Errorf("port %d of the all-ports service: another template", port)
		}
	}
	// Two one-port services on the same VIP do not share.
	p80 := &Policy{Table: e.tab, Timeout: 300 * sec, Mask: Mask(32, true), Port: 80}
	p443 := &Policy{Table: e.tab, Timeout: 300 * sec, Mask: Mask(32, true), Port: 443}
	k80, k443 := p80.Key(tuple("192.0.2.10", 1, 80)), p443.Key(tuple("192.0.2.10", 1, 443))
	if k80 == k443 {
		t.Errorf("services on ports 80 and 443 share a template key")
	}
	// TCP and UDP never share.
	tcp := e.pol.Key(tuple("192.0.2.10", 1, 53))
	ut := tuple("192.0.2.10", 1, 53)
	ut.Proto = lvs.UDP
	if udp := e.pol.Key(ut); udp == tcp {
		t.Errorf("TCP and UDP share a template key")
	}
}

func TestCreateRace(t *testing.T) {
	e := newEnv(32)
	a, b := dest(1), dest(2)
	k := e.pol.Key(tuple("192.0.2.10", 1, 80))
	now := e.clk.now()
	x, _ := e.tab.Create(&k, a, e.pol.Timeout, now)
	y, _ := e.tab.Create(&k, b, e.pol.Timeout, now) // lost the race: gets x
	if y != x || y.Dest != a || x.Controlled() != 2 {
		t.Errorf("second Create: dest %v, same %v, controlled %d; want A, true, 2", y.Dest, y == x, x.Controlled())
	}
	if b.PersistConns.Load() != 0 {
		t.Errorf("the loser's server counts a template")
	}
}

func TestFull(t *testing.T) {
	clk := &fakeClock{}
	tab := New(Options{Max: 2, Clock: clk.now})
	pol := &Policy{Table: tab, Timeout: sec, Mask: Mask(32, true), Port: 80}
	for i := range 3 {
		k := pol.Key(tuple(fmt.Sprintf("192.0.2.%d", 10+i), 1, 80))
		_, err := tab.Create(&k, dest(1), sec, 0)
		if (err != nil) != (i == 2) {
			t.Errorf("template %d: error %v", i, err)
		}
	}
}

func TestRelease(t *testing.T) {
	e := newEnv(32)
	tp := e.connect(t, tuple("192.0.2.10", 1, 80), dest(1))
	tp.Release()
	tp.Release() // a bug elsewhere must not make the count negative
	if tp.Controlled() != 0 {
		t.Errorf("controlled %d after two releases of one connection", tp.Controlled())
	}
}

func TestRange(t *testing.T) {
	e := newEnv(24)
	a := dest(1)
	e.connect(t, tuple("192.0.2.10", 1, 80), a)
	var got []Info
	e.tab.Range(func(in Info) bool { got = append(got, in); return true })
	if len(got) != 1 || got[0].Client.String() != "192.0.2.0" || got[0].Dest != a ||
		got[0].Controlled != 1 || got[0].Expires != 300*sec || got[0].VPort != 80 {
		t.Errorf("Range: %+v", got)
	}
}

func TestGetAllocs(t *testing.T) {
	e := newEnv(24)
	e.connect(t, tuple("192.0.2.10", 1, 80), dest(1))
	tp := tuple("192.0.2.10", 2, 80)
	n := testing.AllocsPerRun(1000, func() {
		k := e.pol.Key(tp)
		x := e.tab.Get(&k, e.clk.now())
		x.Release()
	})
	if n != 0 {
		t.Errorf("a template lookup allocates %v times", n)
	}
}

// TestConcurrent runs lookups, creations, releases, expiry and server state
// changes at once, for the race detector, and checks the counters after.
func TestConcurrent(t *testing.T) {
	e := newEnv(24)
	ds := []*lvs.Dest{dest(1), dest(2), dest(3)}
	ctx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			e.clk.advance(time.Second)
			e.tab.Expire(e.clk.now())
			ds[i%3].Available.Store(i%5 != 0)
		}
	})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 3000 {
				tp := e.connect(t, tuple(fmt.Sprintf("2001:db8:%x::%x", i%7, g), uint16(i), 80), ds[(g+i)%3])
				tp.Release()
			}
		})
	}
	wg.Wait()
	cancel()
	bg.Wait()
	var total int32
	for _, d := range ds {
		d.Available.Store(true)
		total += d.PersistConns.Load()
	}
	if int(total) != e.tab.Len() {
		t.Errorf("servers count %d templates, the table holds %d", total, e.tab.Len())
	}
	e.clk.advance(time.Hour)
	e.tab.Expire(e.clk.now())
	if e.tab.Len() != 0 {
		t.Errorf("%d templates left after every connection ended and an hour passed", e.tab.Len())
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tab := New(Options{})
	done := make(chan struct{})
	go func() { tab.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// BenchmarkGet is the lookup of a known client's template, the persistence
// cost of every new connection of a persistent service.
func BenchmarkGet(b *testing.B) {
	e := newEnv(32)
	for i := range 10000 {
		e.connect(b, tuple(fmt.Sprintf("2001:db8::%x", i), 1, 80), dest(i%3)).Release()
	}
	tp := tuple("2001:db8::10", 2, 80)
	b.ReportAllocs()
	for b.Loop() {
		k := e.pol.Key(tp)
		e.tab.Get(&k, e.clk.now()).Release()
	}
}

// BenchmarkGetParallel is BenchmarkGet from every CPU, on distinct clients.
func BenchmarkGetParallel(b *testing.B) {
	e := newEnv(32)
	var tuples []*lvs.Tuple
	for i := range 1024 {
		tp := tuple(fmt.Sprintf("2001:db8::%x", i), 1, 80)
		e.connect(b, tp, dest(i%3)).Release()
		tuples = append(tuples, tp)
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := seq.Add(1) * 97
		for pb.Next() {
			k := e.pol.Key(tuples[i&1023])
			e.tab.Get(&k, e.clk.now()).Release()
			i++
		}
	})
}

// BenchmarkCreate is a new client: lookup miss, then a new template.
func BenchmarkCreate(b *testing.B) {
	e := newEnv(32)
	d := dest(1)
	var n uint32
	tp := tuple("2001:db8::", 1, 80)
	b.ReportAllocs()
	for b.Loop() {
		n++
		binary.BigEndian.PutUint32(tp.Src[12:], n)
		k := e.pol.Key(tp)
		if e.tab.Get(&k, e.clk.now()) == nil {
			x, _ := e.tab.Create(&k, d, e.pol.Timeout, e.clk.now())
			x.Release()
		}
		if n&0xffff == 0 {
			e.clk.advance(time.Hour)
			e.tab.Expire(e.clk.now())
		}
	}
}
