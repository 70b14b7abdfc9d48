package director

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/runstate"
)

// TestAdmOnDirector runs ipvsadm commands against a real Director (over an
// in-memory device): the listing shows the running table, -c lists the
// connection and its persistence template, --persistent-conn counts the
// template, and a change reaches the forwarding.
func TestAdmOnDirector(t *testing.T) {
	td := newTestDirector(t, realsConf(`persistence_timeout = "300s"`, "192.0.2.21 1"))
	cfg := td.d.Running()
	rt := runstate.New(td.d, cfg, runstate.Options{})
	run := func(args ...string) string {
		t.Helper()
		res := rt.Adm("", args, nil, "test")
		if res.Code != 0 {
			t.Fatalf("%v: %s", args, res.Stderr)
		}
		return res.Stdout
	}
	if out := run("-Ln"); !strings.Contains(out, "\nTCP  192.0.2.100:80 wrr persistent 300\n") {
		t.Fatalf("-Ln:\n%s", out)
	}
	if got := td.connect("192.0.2.10", 1000); got != "192.0.2.21:8080" {
		t.Fatalf("connection to %q", got)
	}
	conns := run("-Lnc")
	for _, want := range []string{
		// (after "TCP MM:SS ", which the clock moves)
		fmt.Sprintf(" %-11s %-18s %-18s %s\n", "SYN_RECV", "192.0.2.10:1000", "192.0.2.100:80", "192.0.2.21:8080"),
		fmt.Sprintf(" %-11s %-18s %-18s %s\n", "NONE", "192.0.2.10:0", "192.0.2.100:80", "192.0.2.21:8080"),
	} {
		if !strings.Contains(conns, want) {
			t.Errorf("-Lnc lacks %q:\n%s", want, conns)
		}
	}
	if out := run("-Ln", "--persistent-conn"); !strings.Contains(out, fmt.Sprintf("  -> %-28s %-9d %-11d %-10d %-10d\n", "192.0.2.21:8080", 1, 1, 0, 1)) {
		t.Errorf("--persistent-conn:\n%s", out)
	}
	// A runtime change reaches the forwarding: a new server, then the old
	// one drained; a new client goes to the new one.
	run("-a", "-t", "192.0.2.100:80", "-r", "192.0.2.22:8080", "-m", "-w", "1")
	run("-e", "-t", "192.0.2.100:80", "-r", "192.0.2.21:8080", "-m", "-w", "0")
	td.setMACs()
	if got := td.connect("192.0.2.99", 1001); got != "192.0.2.22:8080" {
		t.Errorf("new client after the change went to %q", got)
	}
}
