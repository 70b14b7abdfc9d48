package director

import (
	"errors"
	"testing"

	"github.com/lvsd/lvsd/conntrack"
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
