package director

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/sched"
)

// realKey names real server addr:8080 of the test service 192.0.2.100:80.
func realKey(addr string) RealKey {
	return RealKey{
		Service: lvs.ServiceKey{Addr: lvs.AddrFromNetip(netip.MustParseAddr("192.0.2.100")), Port: 80, Proto: lvs.TCP},
		Addr:    netip.MustParseAddr(addr), Port: 8080,
	}
}

// list returns the running list of the test service, head first, as the
// last octets of the addresses ("23 22 21").
func (td *testDirector) list() string {
	td.t.Helper()
	td.d.mu.Lock()
	defer td.d.mu.Unlock()
	rs := td.d.services[realKey("192.0.2.21").Service]
	var out []string
	for _, x := range rs.sched.Dests() {
		a := x.Addr.Netip().As4()
		out = append(out, fmt.Sprint(a[3]))
	}
	return strings.Join(out, " ")
}

// connects opens n new connections from distinct ports and returns where
// they went, as last octets.
func (td *testDirector) connects(first uint16, n int) string {
	td.t.Helper()
	var out []string
	for p := first; p < first+uint16(n); p++ {
		got := td.connect("192.0.2.10", p)
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(got, "192.0.2."), ":8080"))
	}
	return strings.Join(out, " ")
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHealthRemoveAndReadd: a health failure without inhibit unlinks the
// real server as ipvsadm -d (rr's cursor moves back, the established
// connection ends with expire_nodest_conn); its return links it at the
// head as ipvsadm -a, the same destination with its counters.
func TestHealthRemoveAndReadd(t *testing.T) {
	td := newTestDirector(t, strings.Replace(realsConf("", "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"),
		`scheduler = "wrr"`, `scheduler = "rr"`, 1))
	if got := td.list(); got != "23 22 21" {
		t.Fatalf("list %s, want 23 22 21 (the last added first)", got)
	}
	b := td.dest(80, "192.0.2.22", 8080)
	if got := td.connects(1000, 2); got != "23 22" {
		t.Fatalf("rr: %s, want 23 22", got)
	}
	conns := b.Stats.Conns.Load()
	mustOK(t, td.d.SetRealHealth(realKey("192.0.2.22"), false, false))
	if got := td.list(); got != "23 21" {
		t.Errorf("after the failure: list %s, want 23 21", got)
	}
	if !b.Removed.Load() || b.Available.Load() {
		t.Errorf("failed server: removed %v, available %v; want true, false", b.Removed.Load(), b.Available.Load())
	}
	if got := td.send("192.0.2.10", 1001, 80, false); got != "" {
		t.Errorf("established connection to the failed server went to %q, want dropped (expire_nodest_conn)", got)
	}
	// The cursor was on .22 and went back to .23: .21 is next.
	if got := td.connects(1100, 3); got != "21 23 21" {
		t.Errorf("rr after the failure: %s, want 21 23 21", got)
	}
	mustOK(t, td.d.SetRealHealth(realKey("192.0.2.22"), true, false))
	if got := td.list(); got != "22 23 21" {
		t.Errorf("after the return: list %s, want 22 23 21 (back at the head)", got)
	}
	if td.dest(80, "192.0.2.22", 8080) != b || b.Removed.Load() || !b.Available.Load() {
		t.Fatalf("the returning server is not the same, available destination")
	}
	if b.Stats.Conns.Load() != conns {
		t.Errorf("counters: %d connections, want the %d before the failure", b.Stats.Conns.Load(), conns)
	}
	// Running lists the ipvsadm -a commands that rebuild the list.
	var order []string
	for _, rc := range td.d.Running().Services[0].Reals {
		order = append(order, rc.Addr.String())
	}
	if got := strings.Join(order, " "); got != "192.0.2.21 192.0.2.23 192.0.2.22" {
		t.Errorf("Running's real servers: %s, want .21 .23 .22 (the list 22 23 21 reversed)", got)
	}
	// The cursor is on .21, the tail: the head (.22) is next.
	if got := td.connects(1200, 3); got != "22 23 21" {
		t.Errorf("rr after the return: %s, want 22 23 21", got)
	}
}

// TestHealthInhibit: with inhibit, a failure sets the effective weight to 0
// (ipvsadm -e -w 0): the server stays in the list, established connections
// go on, and its return restores the configured weight.
func TestHealthInhibit(t *testing.T) {
	td := newTestDirector(t, realsConf("", "192.0.2.21 2", "192.0.2.22 1"))
	a := td.dest(80, "192.0.2.21", 8080)
	first := td.connect("192.0.2.10", 1000)
	mustOK(t, td.d.SetRealHealth(realKey("192.0.2.21"), false, true))
	if a.Weight.Load() != 0 || a.Removed.Load() || td.list() != "22 21" {
		t.Fatalf("inhibited: weight %d, removed %v, list %s; want 0, false, 22 21", a.Weight.Load(), a.Removed.Load(), td.list())
	}
	if got := td.connects(1100, 3); got != "22 22 22" {
		t.Errorf("while inhibited: %s, want 22 22 22", got)
	}
	if first == "192.0.2.21:8080" {
		if got := td.send("192.0.2.10", 1000, 80, false); got != first {
			t.Errorf("established connection while inhibited went to %q, want %s", got, first)
		}
	}
	mustOK(t, td.d.SetRealHealth(realKey("192.0.2.21"), true, false))
	if a.Weight.Load() != 2 {
		t.Errorf("restored weight %d, want the configured 2", a.Weight.Load())
	}
	if got := td.d.Running().Services[0].Reals; got[0].Weight != 2 && got[1].Weight != 2 {
		t.Errorf("the configured weight changed: %+v", got)
	}
}

// TestHealthSurvivesReload: a reload of the same file does not bring a
// server that health took out back into scheduling, nor an inhibited one
// back to its weight; a reload that changes its weight keeps it out too.
func TestHealthSurvivesReload(t *testing.T) {
	conf := realsConf("", "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1")
	td := newTestDirector(t, conf)
	mustOK(t, td.d.SetRealHealth(realKey("192.0.2.22"), false, false))
	mustOK(t, td.d.SetRealHealth(realKey("192.0.2.23"), false, true))
	td.reload(realsConf("", "192.0.2.21 1", "192.0.2.22 5", "192.0.2.23 5"))
	if got := td.list(); got != "23 21" {
		t.Errorf("after the reload: list %s, want 23 21", got)
	}
	if w := td.dest(80, "192.0.2.23", 8080).Weight.Load(); w != 0 {
		t.Errorf("inhibited server's weight after the reload: %d, want 0", w)
	}
	if got := td.connects(1000, 4); got != "21 21 21 21" {
		t.Errorf("after the reload: %s, want only 21", got)
	}
	mustOK(t, td.d.SetRealHealth(realKey("192.0.2.22"), true, false))
	if w := td.dest(80, "192.0.2.22", 8080).Weight.Load(); w != 5 || td.list() != "22 23 21" {
		t.Errorf("back: weight %d, list %s; want the reloaded 5, 22 23 21", w, td.list())
	}
	if err := td.d.SetRealHealth(realKey("192.0.2.99"), false, false); !errors.Is(err, ErrUnknownReal) {
		t.Errorf("unknown real server: %v, want ErrUnknownReal", err)
	}
}

// TestSetRealWeight: a dynamic weight replaces the configured one at once
// (wrr recomputes), survives reloads, and -1 goes back to the configured.
func TestSetRealWeight(t *testing.T) {
	td := newTestDirector(t, realsConf("", "192.0.2.21 1", "192.0.2.22 1"))
	a := td.dest(80, "192.0.2.21", 8080)
	mustOK(t, td.d.SetRealWeight(realKey("192.0.2.21"), 3))
	// ip_vs_wrr_dest_changed: from the head with cw 1 kept (.22 .21),
	// then mw 3 (.21), 2 (.21).
	if got := td.connects(1000, 4); got != "22 21 21 21" {
		t.Errorf("weights 3:1 gave %s, want 22 21 21 21", got)
	}
	td.reload(realsConf("", "192.0.2.21 1", "192.0.2.22 1"))
	if a.Weight.Load() != 3 {
		t.Errorf("dynamic weight after a reload: %d, want 3", a.Weight.Load())
	}
	mustOK(t, td.d.SetRealWeight(realKey("192.0.2.21"), -1))
	if a.Weight.Load() != 1 {
		t.Errorf("weight after clearing: %d, want the configured 1", a.Weight.Load())
	}
	if err := td.d.SetRealWeight(realKey("192.0.2.21"), 65536); err == nil {
		t.Errorf("weight 65536 accepted")
	}
}

// TestReloadKeepsSchedulerState: reloads tell the schedulers what changed
// instead of rebuilding them, so rr's cursor and the lblc table live on.
func TestReloadKeepsSchedulerState(t *testing.T) {
	t.Run("rr", func(t *testing.T) {
		conf := strings.Replace(realsConf("", "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"),
			`scheduler = "wrr"`, `scheduler = "rr"`, 1)
		td := newTestDirector(t, conf)
		got := td.connects(1000, 2)
		td.reload(conf)
		got += " | " + td.connects(1100, 2)
		if got != "23 22 | 21 23" {
			t.Errorf("rr across a reload: %s, want 23 22 | 21 23", got)
		}
	})
	for _, name := range []string{"lblc", "lblcr"} {
		t.Run(name, func(t *testing.T) {
			conf := func(reals ...string) string {
				return strings.Replace(realsConf("", reals...), `scheduler = "wrr"`, `scheduler = "`+name+`"`, 1)
			}
			td := newTestDirector(t, conf("192.0.2.21 1", "192.0.2.22 1"))
			// The flows' destination is the VIP: its entry caches the
			// wlc choice, .22 (the head, on a tie).
			if got := td.connects(1000, 2); got != "22 22" {
				t.Fatalf("%s: %s, want 22 22", name, got)
			}
			// .22 now has connections and .21 and .23 none: wlc would
			// choose another, a rebuilt scheduler too. The kept entry
			// wins.
			td.reload(conf("192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"))
			if got := td.connects(1100, 2); got != "22 22" {
				t.Errorf("%s after a reload: %s, want the cached 22 22", name, got)
			}
		})
	}
}

// TestReaddRevivesCounters: a real server removed by a reload and added
// again is the same destination with its counters (the kernel's trash),
// linked at the head.
func TestReaddRevivesCounters(t *testing.T) {
	td := newTestDirector(t, realsConf("", "192.0.2.21 1", "192.0.2.22 1"))
	a := td.dest(80, "192.0.2.21", 8080)
	td.connects(1000, 4)
	conns := a.Stats.Conns.Load()
	if conns == 0 {
		t.Fatal("no connection reached .21; the test proves nothing")
	}
	td.reload(realsConf("", "192.0.2.22 1"))
	td.reload(realsConf("", "192.0.2.22 1", "192.0.2.21 1"))
	if td.dest(80, "192.0.2.21", 8080) != a {
		t.Fatalf("re-added real server is a new destination")
	}
	if a.Stats.Conns.Load() != conns || a.Removed.Load() || !a.Available.Load() {
		t.Errorf("revived: %d connections (want %d), removed %v, available %v",
			a.Stats.Conns.Load(), conns, a.Removed.Load(), a.Available.Load())
	}
	if got := td.list(); got != "21 22" {
		t.Errorf("list %s, want 21 22", got)
	}
}

// TestReaddAfterTrashPeriod: a real server removed and added again after
// IP_VS_DEST_TRASH_PERIOD without connections is a new destination with
// zero counters, as after the kernel's trash timer freed it, even when no
// change came between the removal and the re-add to collect the trash.
func TestReaddAfterTrashPeriod(t *testing.T) {
	td := newTestDirector(t, realsConf("", "192.0.2.21 1", "192.0.2.22 1"))
	a := td.dest(80, "192.0.2.21", 8080)
	td.connects(1000, 4)
	if a.Stats.Conns.Load() == 0 {
		t.Fatal("no connection reached .21; the test proves nothing")
	}
	td.reload(realsConf("", "192.0.2.22 1"))
	// The connections of .21 are over and it was removed a trash period
	// ago (the test moves the removal back rather than the clock on).
	td.d.mu.Lock()
	for k, tr := range td.d.trash {
		if k.addr.String() == "192.0.2.21" {
			tr.since -= destTrashPeriod
		}
	}
	td.d.mu.Unlock()
	a.ActiveConns.Store(0)
	a.InactiveConns.Store(0)
	td.reload(realsConf("", "192.0.2.22 1", "192.0.2.21 1"))
	b := td.dest(80, "192.0.2.21", 8080)
	if b == a {
		t.Fatal("re-added after the trash period: the old destination was revived")
	}
	if n := b.Stats.Conns.Load(); n != 0 {
		t.Errorf("new destination has %d connections counted, want 0", n)
	}
	td.d.mu.Lock()
	n := len(td.d.trash)
	td.d.mu.Unlock()
	if n != 0 {
		t.Errorf("%d destinations left in the trash, want 0", n)
	}
}

// TestApplyRunning: Running is a deep copy that ApplyRunning takes back; a
// change applies through the same steps as a reload and logs its origin; an
// invalid one is refused naming the origin and keeps the running table.
func TestApplyRunning(t *testing.T) {
	var logs bytes.Buffer
	cfg, err := config.Parse("test.toml", []byte(realsConf("", "192.0.2.21 1", "192.0.2.22 1")))
	mustOK(t, err)
	d := newMemDirectorOpts(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	run := d.Running()
	if got := run.Services[0].Reals; got[0].Addr.String() != "192.0.2.21" {
		t.Errorf("Running's order: %v first, want the first added", got[0].Addr)
	}
	if k := KeyOf(&run.Services[0], &run.Services[0].Reals[0]); k != realKey("192.0.2.21") {
		t.Errorf("KeyOf: %v, want %v", k, realKey("192.0.2.21"))
	}
	run.Services[0].Reals[0].Weight = 7
	if d.Running().Services[0].Reals[0].Weight == 7 {
		t.Fatal("Running shares memory with the running table")
	}
	run.Services[0].Reals = append(run.Services[0].Reals, config.Real{
		Addr: netip.MustParseAddr("192.0.2.23"), Port: 8080, Weight: 1, Method: lvs.NAT})
	mustOK(t, d.ApplyRunning(run, "ipvsadm"))
	if !strings.Contains(logs.String(), "origin=ipvsadm") {
		t.Errorf("no log line names the origin:\n%s", logs.String())
	}
	d.mu.Lock()
	rs := d.services[realKey("192.0.2.21").Service]
	list := rs.sched.Dests()
	d.mu.Unlock()
	if len(list) != 3 || list[0].Addr.Netip().String() != "192.0.2.23" || list[2].Weight.Load() != 7 {
		t.Errorf("after ApplyRunning: list head %v, %d servers, .21 weight %d; want .23 at the head, 3, 7",
			list[0].Addr, len(list), list[2].Weight.Load())
	}
	bad := d.Running()
	bad.Services[0].Reals[0].Weight = 70000
	err = d.ApplyRunning(bad, "ipvsadm")
	if err == nil || !strings.Contains(err.Error(), "ipvsadm:") || !strings.Contains(err.Error(), "weight") {
		t.Errorf("weight 70000: %v, want an error naming ipvsadm and weight", err)
	}
	if got := d.Running().Services[0].Reals; len(got) != 3 {
		t.Errorf("a refused change changed the table: %d real servers", len(got))
	}
}

func memDevices(config.Interface) ([]device.Device, error) {
	return []device.Device{device.NewMem(64)}, nil
}

func newMemDirectorOpts(t *testing.T, cfg *config.Config, opts Options) *Director {
	t.Helper()
	opts.Devices = memDevices
	d, err := New(cfg, opts)
	mustOK(t, err)
	t.Cleanup(d.Close)
	return d
}

// countingTicker is a scheduler whose Tick calls are counted.
type countingTicker struct {
	sched.Scheduler
	ticks int
}

func (c *countingTicker) Tick(int64) { c.ticks++ }

// TestTickSchedulers: the director's periodic work runs the timers of the
// schedulers that have one (lblc, lblcr), and only theirs.
func TestTickSchedulers(t *testing.T) {
	td := newTestDirector(t, strings.Replace(realsConf("", "192.0.2.21 1"), `scheduler = "wrr"`, `scheduler = "lblc"`, 1))
	td.d.mu.Lock()
	rs := td.d.services[realKey("192.0.2.21").Service]
	if _, ok := rs.sched.(sched.Ticker); !ok {
		t.Errorf("lblc's scheduler has no timer")
	}
	c := &countingTicker{Scheduler: rs.sched}
	rs.sched = c
	td.d.mu.Unlock()
	td.d.tickSchedulers()
	td.d.tickSchedulers()
	if c.ticks != 2 {
		t.Errorf("%d ticks, want 2", c.ticks)
	}
}

// TestCreateFalseNeedsDevice: with create = false a missing TAP is an
// error, not created.
func TestCreateFalseNeedsDevice(t *testing.T) {
	cfg, err := config.Parse("test.toml", []byte(`
[[interface]]
name = "lvtnone9"
create = false
addresses = ["192.0.2.1/24"]
`))
	mustOK(t, err)
	d, err := New(cfg, Options{})
	if err == nil {
		d.Close()
		t.Fatal("a missing device with create = false was accepted")
	}
	if !strings.Contains(err.Error(), "create = false") {
		t.Errorf("error %q does not name create = false", err)
	}
}

// TestThresholdRaiseEndsOverload: as __ip_vs_update_dest, removing or
// raising the upper threshold clears the overload at once; lowering it
// does not.
func TestThresholdRaiseEndsOverload(t *testing.T) {
	conf := func(upper int) string {
		return strings.Replace(realsConf("", "192.0.2.21 1", "192.0.2.22 1"),
			"  weight = 1\n  port = 8080\n", fmt.Sprintf("  weight = 1\n  port = 8080\n  upper_threshold = %d\n", upper), 1)
	}
	td := newTestDirector(t, conf(5))
	a := td.dest(80, "192.0.2.21", 8080)
	if u, _ := a.Thresholds(); u != 5 {
		t.Fatalf("threshold %d, want 5; the test's configuration is wrong", u)
	}
	a.Overloaded.Store(true)
	td.reload(conf(4))
	if !a.Overloaded.Load() {
		t.Errorf("lowering the threshold ended the overload")
	}
	td.reload(conf(10))
	if a.Overloaded.Load() {
		t.Errorf("raising the threshold kept the overload")
	}
	a.Overloaded.Store(true)
	td.reload(conf(0))
	if a.Overloaded.Load() {
		t.Errorf("removing the threshold kept the overload")
	}
}

// TestSchedulerChangeReadsNewWeights: a reload that changes the scheduler
// and the weights at once builds the new scheduler from the new weights
// (ipvsadm -e, then -E), here sh's buckets.
func TestSchedulerChangeReadsNewWeights(t *testing.T) {
	td := newTestDirector(t, strings.Replace(realsConf("", "192.0.2.21 1", "192.0.2.22 1"), `scheduler = "wrr"`, `scheduler = "rr"`, 1))
	td.reload(strings.Replace(realsConf("", "192.0.2.21 255", "192.0.2.22 1"), `scheduler = "wrr"`, `scheduler = "sh"`, 1))
	got := map[string]int{}
	for i := range 60 {
		got[td.connect(fmt.Sprintf("192.0.2.%d", 120+i), uint16(1000+i))]++
	}
	// .21 holds 255 of the 256 buckets; with the old weights, 128.
	if got["192.0.2.21:8080"] < 55 {
		t.Errorf("60 clients under sh with weights 255:1 went %v; want nearly all to .21", got)
	}
}

// TestChangeRefusedWhileStopping: once Run has begun to close everything, a
// runtime change or a reload is refused with ErrStopping and the running
// table stays as it was.
func TestChangeRefusedWhileStopping(t *testing.T) {
	cfg, err := config.Parse("test.toml", []byte(realsConf("", "192.0.2.21 1")))
	mustOK(t, err)
	d := newMemDirectorOpts(t, cfg, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	cancel()
	mustOK(t, <-done)
	run := d.Running()
	run.Services[0].Reals = append(run.Services[0].Reals, config.Real{
		Addr: netip.MustParseAddr("192.0.2.23"), Port: 8080, Weight: 1, Method: lvs.NAT})
	if err := d.ApplyRunning(run, "ipvsadm"); !errors.Is(err, ErrStopping) {
		t.Errorf("ApplyRunning after Run ended: %v, want ErrStopping", err)
	}
	if err := d.Reload(run); !errors.Is(err, ErrStopping) {
		t.Errorf("Reload after Run ended: %v, want ErrStopping", err)
	}
	if got := d.Running().Services[0].Reals; len(got) != 1 {
		t.Errorf("a refused change changed the table: %d real servers, want 1", len(got))
	}
}
