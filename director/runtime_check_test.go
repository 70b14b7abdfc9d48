package director

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/runstate"
)

// monitorLoops counts the goroutines running a health monitor's loop.
func monitorLoops() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "health.(*Manager[...]).loop(")
}

// TestRuntimeAddedServerIsChecked: a real server added by lvsd adm (the
// control socket's runtime change) is checked with its service's check:
// without alpha it starts up and is taken out by its first failures; with
// alpha it starts out of the list until its first success. Removed at run
// time, its monitor stops. A restart from the state file keeps its check.
func TestRuntimeAddedServerIsChecked(t *testing.T) {
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
	up("192.0.2.21", true)
	// Each probe takes 500 ms: a server added without alpha is surely in
	// the list before its first result can take it out.
	slow := strings.Replace(execCheck(dir, ""), `command = "test`, `command = "sleep 0.5; test`, 1)
	conf := realsConf(slow, "192.0.2.21 1")
	td := newTestDirector(t, conf)
	runDirector(t, td.d)
	store := &runstate.Store{Path: filepath.Join(dir, "state.json")}
	file, err := config.Parse("test.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	rt := runstate.New(td.d, file, runstate.Options{Store: store})
	adm := func(args ...string) {
		t.Helper()
		if res := rt.Adm("", args, nil, "test"); res.Code != 0 {
			t.Fatalf("%v: %s", args, res.Stderr)
		}
	}
	checked := func(addr, state string) func() bool {
		return func() bool {
			h := realHealth(td.d, addr)
			return h != nil && h.State == state && h.Checks > 0
		}
	}
	waitFor(t, ".21 checked up", checked("192.0.2.21", "up"))
	if n := monitorLoops(); n != 1 {
		t.Fatalf("%d monitors for one checked server", n)
	}

	// Without alpha: in the list at once, out after its failed check.
	adm("-a", "-t", "192.0.2.100:80", "-r", "192.0.2.22:8080", "-m", "-w", "1")
	if got := td.list(); got != "22 21" {
		t.Fatalf("list right after -a: %s, want .22 in (it starts up without alpha)", got)
	}
	if h := realHealth(td.d, "192.0.2.22"); h == nil || h.Check != "exec" {
		t.Fatalf("server added at run time has health %+v, want its service's exec check", h)
	}
	waitFor(t, ".22 down by its check", checked("192.0.2.22", "down"))
	waitFor(t, ".22 out of the list", func() bool { return td.list() == "21" })
	up("192.0.2.22", true)
	waitFor(t, ".22 back at the head", func() bool { return td.list() == "22 21" })

	// Removed at run time: its monitor stops.
	adm("-d", "-t", "192.0.2.100:80", "-r", "192.0.2.22:8080")
	if h := realHealth(td.d, "192.0.2.22"); h != nil {
		t.Errorf("removed server still has health %+v", h)
	}
	waitFor(t, "the removed server's monitor to stop", func() bool { return monitorLoops() == 1 })

	// With alpha (the service's check changed by a reload): a server added
	// at run time starts out until its first success.
	conf = realsConf(execCheck(dir, "  alpha = true"), "192.0.2.21 1")
	file, err = config.Parse("test.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, rt.Reload(file))
	td.setMACs()
	adm("-a", "-t", "192.0.2.100:80", "-r", "192.0.2.23:8080", "-m", "-w", "1")
	if got := td.list(); got != "21" {
		t.Fatalf("list right after -a with alpha: %s, want .23 out until its first success", got)
	}
	if h := realHealth(td.d, "192.0.2.23"); h == nil || h.State != "down" {
		t.Fatalf("alpha server added at run time: health %+v, want down", h)
	}
	up("192.0.2.23", true)
	waitFor(t, ".23 in after its first success", func() bool { return td.list() == "23 21" })

	// -e keeps the check.
	adm("-e", "-t", "192.0.2.100:80", "-r", "192.0.2.23:8080", "-m", "-w", "2")
	if h := realHealth(td.d, "192.0.2.23"); h == nil || h.Check != "exec" || h.State != "up" {
		t.Fatalf("after -e: health %+v, want the exec check, up", h)
	}

	// A reload that changes the service's check: the server added at run
	// time follows it (here: a check it fails).
	conf = realsConf(execCheck(dir, "  alpha = true")+"  inhibit_on_failure = true\n", "192.0.2.21 1")
	file, err = config.Parse("test.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, rt.Reload(file))
	if r := realOf(td.d.Running(), "192.0.2.23"); r == nil || r.Check == nil || !r.Check.InhibitOnFailure || !r.Check.Alpha {
		t.Fatalf("runtime server after the reload: %+v, want the file's new service check", r)
	}

	// A restart: the state file's table gives .23 its check again.
	merged := runstate.Start(file, store, nil)
	if got := realOf(merged, "192.0.2.23"); got == nil || got.Check == nil || got.Check.Type != "exec" || !got.Check.InhibitOnFailure {
		t.Fatalf("restarted table's .23: %+v, want the service's check", got)
	}
	td2 := newTestDirector(t, string(config.Format(merged)))
	runDirector(t, td2.d)
	waitFor(t, ".23 checked after the restart", func() bool {
		h := realHealth(td2.d, "192.0.2.23")
		return h != nil && h.Check == "exec" && h.Checks > 0
	})
}

// realOf returns the real server addr of cfg's first service, nil if none.
func realOf(cfg *config.Config, addr string) *config.Real {
	for i, r := range cfg.Services[0].Reals {
		if r.Addr.String() == addr {
			return &cfg.Services[0].Reals[i]
		}
	}
	return nil
}
