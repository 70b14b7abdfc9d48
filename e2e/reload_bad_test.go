package e2e

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestBadReloadKeepsRunning writes a broken file under a running lvsd and
// sends SIGHUP: lvsd logs the file, line and key, keeps balancing with the
// configuration it had, and reports itself stale until a good reload.
func TestBadReloadKeepsRunning(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	servers := tp.StartHTTP(bin, 8080)
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, wrrHTTP)
	var path string
	for i, a := range p.Args {
		if a == "-c" && i+1 < len(p.Args) {
			path = p.Args[i+1]
		}
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(good), "weight = 3", "weight = -3", 1)
	if bad == string(good) {
		t.Fatalf("no weight = 3 in the config to break:\n%s", good)
	}
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput("reload rejected", 10*time.Second); err != nil {
		t.Fatalf("no rejection logged: %v\n%s", err, p.Output())
	}
	if out := p.Output(); !strings.Contains(out, ".weight: -3 is out of range") {
		t.Errorf("the rejection does not name the key and value:\n%s", out)
	}
	st := tp.Status()
	if !st.ConfigStale || st.ReloadFailures != 1 || !strings.Contains(st.LastReloadError, "weight") {
		t.Errorf("status after a bad reload: stale %v, failures %d, error %q", st.ConfigStale, st.ReloadFailures, st.LastReloadError)
	}
	list, err := exec.Command(bin.Lvsd, "list", "-control", tp.Control).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "WARNING: the last reload") {
		t.Errorf("lvsd list does not warn of the stale configuration (%v):\n%s", err, list)
	}
	// The running configuration still balances 3:2:1.
	checkWRR(t, tp, bin, servers, 60)

	// A good file again clears the warning.
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput("msg=reloaded", 10*time.Second); err != nil {
		t.Fatalf("good reload not applied: %v", err)
	}
	if st := tp.Status(); st.ConfigStale {
		t.Errorf("still stale after a good reload: %q", st.LastReloadError)
	}
}
