package director

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/persist"
)

// TestTableHandoff: the connections of one director, restored into another
// (a new process) with its own destinations, continue on the same real
// servers, whose counts they join; those of a real server the new
// configuration lacks are left out; a damaged snapshot is refused.
func TestTableHandoff(t *testing.T) {
	old := newTestDirector(t, realsConf("", "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"))
	want := map[uint16]string{}
	for port := uint16(1000); port < 1012; port++ {
		want[port] = old.connect("192.0.2.10", port)
		if old.send("192.0.2.10", port, 80, false) != want[port] {
			t.Fatalf("port %d: established segment not forwarded", port)
		}
	}
	data, err := old.d.TableSnapshot()
	if err != nil {
		t.Fatal(err)
	}

	// The new process: .23 is gone, the others listed in another order, so
	// its scheduler would place flows differently.
	nw := newTestDirector(t, realsConf("", "192.0.2.22 1", "192.0.2.21 1"))
	if got := nw.send("192.0.2.10", 1000, 80, false); got != "" {
		t.Fatalf("before the restore a mid-flow segment went to %s", got)
	}
	n, err := nw.d.RestoreTable(data)
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for port, was := range want {
		if was == "192.0.2.23:8080" {
			continue
		}
		kept++
		if got := nw.send("192.0.2.10", port, 80, false); got != was {
			t.Errorf("port %d: after the restore to %q, want %q", port, got, was)
		}
	}
	if n != kept || kept == len(want) {
		t.Errorf("restored %d connections, want %d of %d (those of .23 left out)", n, kept, len(want))
	}
	active := nw.dest(80, "192.0.2.21", 8080).ActiveConns.Load() + nw.dest(80, "192.0.2.22", 8080).ActiveConns.Load()
	if int(active) != kept {
		t.Errorf("active connections %d after the restore, want %d", active, kept)
	}
	if _, err := nw.d.RestoreTable(data[:len(data)-1]); !errors.Is(err, conntrack.ErrSnapshot) {
		t.Errorf("damaged snapshot: %v", err)
	}
}

// TestHandoffState: the state a giver hands over restores, in a new
// director, its connections, the real servers' MACs (forwarding works
// before the new netstack resolved anyone) and its persistence templates
// with the time they had left; a damaged state is refused.
func TestHandoffState(t *testing.T) {
	const pers = `persistence_timeout = "300s"`
	old := newTestDirector(t, realsConf(pers, "192.0.2.21 1", "192.0.2.22 1"))
	// Two clients, so both real servers get one (persistence keeps each
	// client's later connections on its first server).
	want := map[string]string{}
	for _, c := range []string{"192.0.2.10", "192.0.2.11"} {
		want[c] = old.connect(c, 1000)
		if old.send(c, 1000, 80, false) != want[c] {
			t.Fatalf("%s: established segment not forwarded", c)
		}
	}
	if want["192.0.2.10"] == want["192.0.2.11"] {
		t.Fatalf("both clients on %s", want["192.0.2.10"])
	}
	state, err := old.d.handoffState()
	if err != nil {
		t.Fatal(err)
	}

	// The new director: no MACs known (no setMACs), and a scheduler that
	// would place the clients the other way round.
	nd, _ := memDirector(t, realsConf(pers, "192.0.2.22 1", "192.0.2.21 1"))
	nw := &testDirector{t: t, d: nd, w: nd.Forwarder("lvt0").NewWorker(), f: &wire{t: t}}
	r, err := nd.RestoreHandoff(state)
	if err != nil {
		t.Fatal(err)
	}
	if r != (HandoffRestored{Conns: 2, Neighbors: 2, Templates: 2}) {
		t.Errorf("restored %+v, want 2 connections, 2 neighbours, 2 templates", r)
	}
	for c, was := range want {
		if got := nw.send(c, 1000, 80, false); got != was {
			t.Errorf("%s: established segment to %q after the handoff, want %q", c, got, was)
		}
		// A new connection of the same client follows its template.
		if got := nw.connect(c, 2000); got != was {
			t.Errorf("%s: new connection to %q after the handoff, want %q (its template)", c, got, was)
		}
	}
	// Each client's template controls its restored connection and the new
	// one (IPVS's n_control), so it lives as long as they do.
	templates := 0
	nd.persist.Range(func(in persist.Info) bool {
		templates++
		if in.Expires <= 0 || in.Expires > int64(300*time.Second) {
			t.Errorf("template of %s: %v left", in.Client, time.Duration(in.Expires))
		}
		if in.Controlled != 2 {
			t.Errorf("template of %s controls %d connections, want 2 (the restored one and the new one)", in.Client, in.Controlled)
		}
		return true
	})
	if templates != 2 {
		t.Errorf("%d templates, want 2", templates)
	}

	for _, bad := range [][]byte{state[:len(state)-1], append([]byte("XXXX"), state[4:]...), state[:9]} {
		if _, err := nd.RestoreHandoff(bad); !errors.Is(err, ErrHandoff) {
			t.Errorf("damaged state: %v, want ErrHandoff", err)
		}
	}
}

// FuzzHandoffState checks that any state is refused with an error or
// restored, never a panic.
func FuzzHandoffState(f *testing.F) {
	f.Add([]byte("LVHO\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02{}"))
	f.Add([]byte("LVHO\x00\x01\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		table, ex, err := parseHandoff(b)
		if err != nil {
			if !errors.Is(err, ErrHandoff) {
				t.Fatalf("error %v does not wrap ErrHandoff", err)
			}
			return
		}
		if len(table)+len(b) < 14 || ex == nil {
			t.Fatalf("accepted %d bytes with a table of %d", len(b), len(table))
		}
	})
}

// BenchmarkHandoffState measures the part of a takeover's gap that grows
// with the table: the giver's snapshot and the taker's restore of
// 100,000 NAT connections (transfer excluded).
func BenchmarkHandoffState(b *testing.B) {
	t := &testing.T{}
	old := newTestDirector(t, realsConf("", "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"))
	const n = 100000
	for i := range n {
		src := fmt.Sprintf("192.0.2.%d", 2+i%200)
		if old.connect(src, uint16(1024+i/200)) == "" {
			b.Fatalf("connection %d not forwarded", i)
		}
	}
	b.ReportAllocs()
	var snap, restore time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nd, _ := memDirector(t, realsConf("", "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"))
		b.StartTimer()
		t0 := time.Now()
		state, err := old.d.handoffState()
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		r, err := nd.RestoreHandoff(state)
		if err != nil || r.Conns != n {
			b.Fatalf("restored %d of %d: %v", r.Conns, n, err)
		}
		snap, restore = snap+t1.Sub(t0), restore+time.Since(t1)
		b.StopTimer()
		nd.Close()
		b.StartTimer()
		b.ReportMetric(float64(len(state))/n, "bytes/conn")
	}
	b.ReportMetric(float64(snap.Milliseconds())/float64(b.N), "ms-snapshot")
	b.ReportMetric(float64(restore.Milliseconds())/float64(b.N), "ms-restore")
}
