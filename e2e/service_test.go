package e2e

import (
	"encoding/json"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestSystemdNotify runs lvsd as systemd would (NOTIFY_SOCKET and
// JOURNAL_STREAM set, -log-format json) and checks that READY=1 comes once
// the device is attached and the VIP answers, that a SIGHUP is bracketed
// by RELOADING=1 and READY=1, and that the log lines are JSON without a
// time of their own (the journal stamps them).
func TestSystemdNotify(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{Reals: 1})
	tp.StartHTTP(bin, 8080)

	sock := filepath.Join(l.Dir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func(timeout time.Duration) string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification from lvsd: %v", err)
		}
		return string(buf[:n])
	}

	cfg := l.WriteFile("notify.toml", tp.Config(lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr"}))
	p := l.StartWith(tp.Director, "lvsd", lab.ProcOptions{Env: []string{"NOTIFY_SOCKET=" + sock, "JOURNAL_STREAM=8:1234"}},
		bin.Lvsd, "run", "-c", cfg, "-control", "none", "-log-format", "json")
	if got := next(30 * time.Second); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if out := l.IP(tp.Director, "-o", "link", "show", "dev", tp.Device); !strings.Contains(out, "LOWER_UP") {
		t.Errorf("READY=1 before lvsd attached to %s: %s", tp.Device, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := lab.ProbeTCP(tp.Client, netip.AddrPortFrom(lab.VIP, 80))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VIP does not answer after READY=1: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := syscall.Kill(p.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// p is `ip netns exec`, which execs lvsd: the same process.
	if got := next(10 * time.Second); got != "RELOADING=1" {
		t.Errorf("after SIGHUP: %q, want RELOADING=1", got)
	}
	if got := next(10 * time.Second); got != "READY=1" {
		t.Errorf("after the reload: %q, want READY=1", got)
	}
	if err := p.WaitOutput(`"msg":"reloaded"`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, line := range strings.Split(strings.TrimSpace(p.Output()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if _, ok := m["time"]; ok {
			t.Errorf("log line has a time under journald: %q", line)
		}
		lines++
	}
	if lines < 3 {
		t.Errorf("%d log lines, want the start, the attach and the reload at least:\n%s", lines, p.Output())
	}
}
