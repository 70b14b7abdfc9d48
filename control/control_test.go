package control

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type fixed Status

func (f *fixed) Status() Status { return Status(*f) }

var sample = Status{
	Version:     "test",
	Connections: 3,
	Table:       Table{Max: 100, Unestablished: 1, Evicted: 5, Refused: 6, NodestExpired: 7, Reused: 8, SourceLimited: 9, SourceRated: 10, RSTOutOfWindow: 11},
	Neighbors:   Neighbors{Lost: 12, Failed: 13, Unconfirmed: 1},
	Services: []Service{{
		Protocol: "tcp", Address: "192.0.2.100:80", Scheduler: "wrr",
		Stats: Stats{Conns: 3, InPkts: 30, OutPkts: 20, InBytes: 3000, OutBytes: 9000},
		Rates: Rates{CPS: 7, InPPS: 70, OutPPS: 60, InBPS: 7000, OutBPS: 6000},
		Reals: []Real{
			{Address: "192.0.2.21:8080", Method: "nat", Weight: 2, ActiveConn: 1, InactConn: 1, Available: true, Stats: Stats{Conns: 2}},
			{Address: "192.0.2.22:80", Method: "dr", Weight: 1, InactConn: 1, Available: false, Stats: Stats{Conns: 1}},
		},
	}},
	Interfaces: []Interface{
		{Name: "lvt0", State: "lost", Reattached: 2, ForwardedIn: 30, FragsHeld: 14, Reassembled: 5, Drops: map[string]uint64{"no-dest": 2, "truncated": 0}, Queues: []Queue{{RxFrames: 9}}},
		{Name: "lvt1", Type: "packet", State: "up", RxFrames: 12, TxFrames: 10, SynCookies: 15, SynproxyOpened: 3, Queues: []Queue{{RxFrames: 5, TxFrames: 4}, {RxFrames: 7, TxFrames: 6}}},
	},
}

func TestServeAndGet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lvsd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	src := fixed(sample)
	wg.Go(func() {
		if err := Serve(ctx, path, &src); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	defer func() {
		cancel()
		wg.Wait()
	}()
	var got *Status
	var err error
	for range 100 {
		if got, err = Get(ctx, path); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sample, *got); diff != "" {
		t.Errorf("status over the socket (-want +got):\n%s", diff)
	}
	// A second server on a live socket must refuse, not steal it.
	if err := Serve(ctx, path, &src); err == nil || !strings.Contains(err.Error(), "another lvsd") {
		t.Errorf("second Serve on a live socket: %v", err)
	}
}

func TestWriteCounters(t *testing.T) {
	var b strings.Builder
	WriteCounters(&b, &sample)
	if want := "table: 3 of 100 connections (1 unestablished); evicted 5 refused 6; nodest expired 7; reused 8; source limited 9 rated 10; rst out of window 11\n"; !strings.HasPrefix(b.String(), want) {
		t.Errorf("counters should start with the table's:\n%s\nwant %q", b.String(), want)
	}
	if !strings.Contains(b.String(), "\nneighbours: lost 12 (MAC kept while resolving), failed 13, unconfirmed now 1\n") {
		t.Errorf("counters should show the neighbours':\n%s", b.String())
	}
	if !strings.Contains(b.String(), "; device lost, re-attached 2\n  fragments: held 14, datagrams reassembled 5\n") {
		t.Errorf("counters should show the interface's fragments:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "drop no-dest") || strings.Contains(b.String(), "truncated") {
		t.Errorf("counters should list non-zero drops only:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "\n  SYN proxy: SYN cookies sent 15, connections opened 3\n") || strings.Count(b.String(), "SYN proxy") != 1 {
		t.Errorf("counters should show the SYN proxy's of the interface that has them:\n%s", b.String())
	}
	// Queues are listed when there are several, each with its own counts.
	if !strings.Contains(b.String(), "lvt1: rx 12 tx 10 ") || !strings.Contains(b.String(), "; device up, re-attached 0\n") ||
		!strings.Contains(b.String(), "; device lost, re-attached 2\n") || !strings.Contains(b.String(), "  queue 0: rx 5 tx 4\n  queue 1: rx 7 tx 6\n") ||
		strings.Contains(b.String(), "queue 0: rx 9") {
		t.Errorf("counters should list the queues of a multi-queue interface only:\n%s", b.String())
	}
}

func TestServeLeavesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lvsd.toml")
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := fixed(sample)
	err := Serve(context.Background(), path, &src)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Serve over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Errorf("the file in the way was changed: %q", b)
	}
}
