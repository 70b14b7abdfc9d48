package health

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lvsd/lvsd/config"
)

// TestQuorum: three real servers of weight 1 (one unchecked, which counts
// as live), quorum 3: one down loses it (quorum_down runs), one back of two
// down does not regain it, both back regain it (quorum_up runs).
func TestQuorum(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	sink := newFakeSink()
	m := NewManager[string](sink, Options{})
	checkers := map[string]*scripted{}
	m.newChecker = func(c *config.Check, tg Target, _ Net) (Checker, error) {
		s := &scripted{}
		checkers[tg.Real.String()] = s
		return s, nil
	}
	chk := &config.Check{Type: "tcp", Interval: 10 * time.Millisecond, Warmup: time.Millisecond, Rise: 1, Fall: 1}
	var specs []Spec[string]
	for _, a := range []string{"192.0.2.11:80", "192.0.2.12:80"} {
		specs = append(specs, Spec[string]{Key: a, Target: Target{Real: mustAP(a)}, Group: "vs", Weight: 1, Check: chk})
	}
	specs = append(specs, Spec[string]{Key: "192.0.2.13:80", Target: Target{Real: mustAP("192.0.2.13:80")}, Group: "vs", Weight: 1})
	m.SetQuorums(map[string]Quorum{"vs": {Quorum: 3, Hysteresis: 0,
		Up: "echo up >> " + log, Down: "echo down $LVSD_VS >> " + log, Env: map[string]string{"LVSD_VS": "vs"}}})
	m.Sync(specs)
	if m.QuorumLost("vs") {
		t.Fatal("quorum lost at start with every server up")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	wantLog := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(log)
			if string(b) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("notify log %q, want %q", b, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	checkers["192.0.2.11:80"].set(errDown)
	waitCall(t, sink)
	wantLog("down vs\n")
	if !m.QuorumLost("vs") {
		t.Error("quorum not lost with live weight 2 of 3")
	}
	checkers["192.0.2.12:80"].set(errDown)
	waitCall(t, sink)
	checkers["192.0.2.11:80"].set(nil)
	waitCall(t, sink)
	time.Sleep(50 * time.Millisecond)
	wantLog("down vs\n") // live weight 2: still lost
	checkers["192.0.2.12:80"].set(nil)
	waitCall(t, sink)
	wantLog("down vs\nup\n")
	if m.QuorumLost("vs") {
		t.Error("quorum lost with every server up")
	}
}

// TestQuorumStartsAtGainThreshold: as keepalived's set_quorum_states, the
// first evaluation gives the quorum only at quorum + hysteresis: a live
// weight between the loss and the gain threshold starts lost, one at the
// gain threshold starts held.
func TestQuorumStartsAtGainThreshold(t *testing.T) {
	for _, tc := range []struct {
		live     int
		wantLost bool
	}{{2, true}, {3, true}, {4, false}} {
		m := NewManager[string](newFakeSink(), Options{})
		var specs []Spec[string]
		for i := range tc.live {
			a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(20 + i)}), 80)
			specs = append(specs, Spec[string]{Key: a.String(), Target: Target{Real: a}, Group: "vs", Weight: 1})
		}
		m.SetQuorums(map[string]Quorum{"vs": {Quorum: 3, Hysteresis: 1}})
		m.Sync(specs)
		if got := m.QuorumLost("vs"); got != tc.wantLost {
			t.Errorf("live weight %d, quorum 3, hysteresis 1: lost %v at start, want %v", tc.live, got, tc.wantLost)
		}
	}
}
