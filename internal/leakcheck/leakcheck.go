// Package leakcheck fails a test that leaves goroutines behind: Check
// records the goroutines running when it is called and, in the test's
// cleanup, waits a moment for new ones to end and reports those that did
// not, with their stacks. Only tests import it.
package leakcheck

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// settle is how long the cleanup waits for goroutines that are stopping.
var settle = 5 * time.Second

// Check registers the leak check; call it before starting what must stop
// (and so before registering that thing's own cleanup, which then runs
// first). Tests using it must not run in parallel with others of their
// package.
func Check(tb testing.TB) {
	tb.Helper()
	before := ids(stacks())
	tb.Cleanup(func() {
		var left []string
		for deadline := time.Now().Add(settle); ; {
			left = left[:0]
			for _, g := range stacks() {
				if !before[id(g)] && !ignored(g) {
					left = append(left, g)
				}
			}
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, g := range left {
			tb.Errorf("goroutine left running:\n%s", g)
		}
	})
}

// stacks returns the stack of every goroutine, one string each.
func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(strings.TrimSpace(string(buf[:n])), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// id is the "goroutine N" line head of a stack.
func id(g string) string {
	head, _, _ := strings.Cut(g, " [")
	return head
}

func ids(gs []string) map[string]bool {
	m := make(map[string]bool, len(gs))
	for _, g := range gs {
		m[id(g)] = true
	}
	return m
}

// ignored are goroutines of the runtime and the testing package, which
// come and go on their own.
func ignored(g string) bool {
	for _, s := range []string{"testing.(*T).Run", "testing.tRunner", "testing.runTests", "runtime.goexit0", "os/signal.signal_recv", "runtime/trace"} {
		if strings.Contains(g, s) && !strings.Contains(g, "lvsd/lvsd/") {
			return true
		}
	}
	return false
}
