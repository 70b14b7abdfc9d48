package director

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
)

// execCheck is a check table whose exec command passes while a file named
// after the real server's address exists in dir.
func execCheck(dir string, more string) string {
	return fmt.Sprintf(`
  [virtual_server.check]
  type = "exec"
  command = "test -e %s/$LVSD_RS_ADDR"
  interval = "20ms"
  timeout = "2s"
  warmup = "10ms"
  rise = 1
  fall = 1
%s
`, dir, more)
}

// realHealth returns the status health of real server addr:8080.
func realHealth(d *Director, addr string) *control.Health {
	for _, s := range d.Status().Services {
		for _, r := range s.Reals {
			if r.Address == addr+":8080" {
				return r.Health
			}
		}
	}
	return nil
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runDirector(t *testing.T, d *Director) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestChecksDriveTheRunningTable: exec checks (no network needed) take real
// servers out of the list and back, through SetRealHealth; a reload keeps
// the monitors of unchanged checks; alpha starts a server added by a
// reload down until its first success; a check removed while its server
// is down puts it back; inhibit_on_failure keeps it in the list at weight 0.
func TestChecksDriveTheRunningTable(t *testing.T) {
	dir := t.TempDir()
	up := func(addr string, on bool) {
		t.Helper()
		p := filepath.Join(dir, addr)
		if on {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			os.Remove(p)
		}
	}
	for _, a := range []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"} {
		up(a, true)
	}
	conf := realsConf(execCheck(dir, ""), "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1")
	td := newTestDirector(t, conf)
	runDirector(t, td.d)
	checked := func(addr, state string) func() bool {
		return func() bool {
			h := realHealth(td.d, addr)
			return h != nil && h.State == state && h.Checks > 0
		}
	}
	for _, a := range []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"} {
		waitFor(t, a+" checked up", checked(a, "up"))
	}
	if got := td.list(); got != "23 22 21" {
		t.Fatalf("list %s, want 23 22 21", got)
	}

	up("192.0.2.22", false)
	waitFor(t, ".22 down", checked("192.0.2.22", "down"))
	waitFor(t, ".22 out of the list", func() bool { return td.list() == "23 21" })
	if h := realHealth(td.d, "192.0.2.22"); h.LastResult != "failed" || h.LastError == "" || h.ConsecutiveFailed == 0 {
		t.Errorf("health of .22: %+v", h)
	}
	up("192.0.2.22", true)
	waitFor(t, ".22 back at the head", func() bool { return td.list() == "22 23 21" })
	if h := realHealth(td.d, "192.0.2.22"); h.TransitionsDown != 1 || h.TransitionsUp != 1 {
		t.Errorf("transitions of .22 after down and up: %d up, %d down; want 1 and 1", h.TransitionsUp, h.TransitionsDown)
	}

	// A reload with the same checks keeps the monitors: their counts go on.
	before := realHealth(td.d, "192.0.2.21").Checks
	td.reload(conf)
	if h := realHealth(td.d, "192.0.2.21"); h == nil || h.Checks < before {
		t.Fatalf("reload restarted an unchanged check: %d checks before, %+v after", before, h)
	}

	// A runtime change (lvsd adm) goes through config.Format and Parse:
	// the checks come back equal, and their monitors go on.
	before = realHealth(td.d, "192.0.2.21").Checks
	mustOK(t, td.d.ApplyRunning(td.d.Running(), "test"))
	if h := realHealth(td.d, "192.0.2.21"); h == nil || h.Checks < before {
		t.Fatalf("a runtime change restarted or dropped a check: %d checks before, %+v after", before, h)
	}

	// A server added by a reload with alpha starts down.
	conf = realsConf(execCheck(dir, "  alpha = true"), "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1", "192.0.2.24 1")
	td.reload(conf)
	if got := td.list(); got != "22 23 21" {
		t.Errorf("list right after adding .24 with alpha: %s, want .24 out until its first success", got)
	}
	up("192.0.2.24", true)
	waitFor(t, ".24 up and at the head", func() bool { return td.list() == "24 22 23 21" })

	// A check removed while its server is down puts the server back.
	up("192.0.2.23", false)
	waitFor(t, ".23 out", func() bool { return td.list() == "24 22 21" })
	td.reload(realsConf("", "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1", "192.0.2.24 1"))
	if got := td.list(); got != "23 24 22 21" {
		t.Errorf("list after the checks were removed: %s, want .23 back at the head", got)
	}
	if h := realHealth(td.d, "192.0.2.23"); h != nil {
		t.Errorf("unchecked server has health %+v", h)
	}

	// inhibit_on_failure: weight 0, still in the list.
	td.reload(realsConf(execCheck(dir, "  inhibit_on_failure = true"), "192.0.2.21 3", "192.0.2.22 1", "192.0.2.23 1", "192.0.2.24 1"))
	a := td.dest(80, "192.0.2.21", 8080)
	waitFor(t, ".21 checked", checked("192.0.2.21", "up"))
	up("192.0.2.21", false)
	waitFor(t, ".21 inhibited", func() bool { return a.Weight.Load() == 0 })
	if got := td.list(); got != "23 24 22 21" {
		t.Errorf("list with .21 inhibited: %s, want it still linked", got)
	}
	up("192.0.2.21", true)
	waitFor(t, ".21 weight back", func() bool { return a.Weight.Load() == 3 })
}

// TestExecDynamicWeight: misc_dynamic sets the weight to exit code - 2.
func TestExecDynamicWeight(t *testing.T) {
	conf := realsConf(`
  [virtual_server.check]
  type = "exec"
  command = "exit 7"
  dynamic = true
  interval = "20ms"
  warmup = "10ms"
`, "192.0.2.21 1", "192.0.2.22 1")
	td := newTestDirector(t, conf)
	runDirector(t, td.d)
	a := td.dest(80, "192.0.2.21", 8080)
	waitFor(t, "weight 5", func() bool { return a.Weight.Load() == 5 })
	h := realHealth(td.d, "192.0.2.21")
	if h == nil || h.Weight == nil || *h.Weight != 5 || h.State != "up" {
		t.Errorf("health %+v, want up with dynamic weight 5", h)
	}
}

// TestSorryServer: the sorry server is in the list only while no real
// server is up.
func TestSorryServer(t *testing.T) {
	dir := t.TempDir()
	conf := realsConf(`sorry_server = "192.0.2.99:8080"`+"\n"+execCheck(dir, ""), "192.0.2.21 1", "192.0.2.22 1")
	td := newTestDirector(t, conf)
	runDirector(t, td.d)
	waitFor(t, "both down, the sorry server in", func() bool { return td.list() == "99" })
	os.WriteFile(filepath.Join(dir, "192.0.2.22"), nil, 0o644)
	waitFor(t, ".22 up, the sorry server out", func() bool { return td.list() == "22" })
	os.Remove(filepath.Join(dir, "192.0.2.22"))
	waitFor(t, "the sorry server back", func() bool { return td.list() == "99" })
	// Connections go to it.
	td.setMACs()
	if got := td.connect("192.0.2.10", 2000); got != "192.0.2.99:8080" {
		t.Errorf("new connection went to %q, want the sorry server", got)
	}
}
