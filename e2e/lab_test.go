package e2e

import (
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/internal/lab"
)

// rootLinks returns the names of the root namespace's links that start with
// lvt.
func rootLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// 3: lvtbr0: <BROADCAST,...> or 5: lvtcli@if2: <...>
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, "lvt") {
			names = append(names, name)
		}
	}
	return names
}

// TestLabCleanup builds both reference labs (no processes), tears them down
// through the test cleanup and through Close, and checks that no namespace
// of theirs remains and that nothing ever appeared in the root namespace.
// It also checks that a dead process's namespace is removed.
func TestLabCleanup(t *testing.T) {
	t.Parallel() // see the package doc
	lab.Skip(t)
	before := rootLinks(t)

	for _, kind := range []string{"tap", "tun"} {
		var prefix string
		t.Run(kind, func(t *testing.T) {
			l := lab.New(t)
			prefix = l.Prefix()
			var tp *lab.Topology
			if kind == "tap" {
				tp = l.NATLab(lab.Options{IPv6: true, Owner: 65534})
			} else {
				tp = l.TUNLab(lab.Options{})
			}
			// Client, director and three real servers.
			if got := lab.ListNamespaces(prefix); len(got) != 5 {
				t.Errorf("namespaces while the lab runs: %v, want 5", got)
			}
			if got := rootLinks(t); !slices.Equal(got, before) {
				t.Errorf("lvt links in the root namespace: %v, before the lab: %v", got, before)
			}
			if !strings.Contains(l.IP(tp.Director, "-o", "link", "show", "dev", tp.Device), "state") {
				t.Errorf("no %s in %s", tp.Device, tp.Director)
			}
		})
		if prefix == "" {
			continue // not selected by -run
		}
		if got := lab.ListNamespaces(prefix); len(got) != 0 {
			t.Errorf("%s lab: namespaces left after its test's cleanup: %v", kind, got)
		}
	}

	t.Run("close", func(t *testing.T) {
		l := lab.New(t)
		l.NATLab(lab.Options{Reals: 1})
		l.Close()
		if got := lab.ListNamespaces(l.Prefix()); len(got) != 0 {
			t.Errorf("namespaces left after Close: %v", got)
		}
		l.Close() // idempotent; the cleanup calls it a third time
	})

	t.Run("stale", func(t *testing.T) {
		// A pid that has just exited stands for a test process killed
		// before its cleanup ran.
		dead := exec.Command("true")
		if err := dead.Run(); err != nil {
			t.Fatal(err)
		}
		name := "lvt-" + strconv.Itoa(dead.Process.Pid) + "-1-dir"
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		lab.RemoveStale(t.Logf)
		if got := lab.ListNamespaces(name); len(got) != 0 {
			t.Errorf("stale namespace %s not removed", name)
		}
	})

	if got := rootLinks(t); !slices.Equal(got, before) {
		t.Errorf("lvt links in the root namespace after the labs: %v, before: %v", got, before)
	}
}
