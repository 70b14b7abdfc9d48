package leakcheck

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder runs cleanups on demand and records failures.
type recorder struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// TestCheck: a goroutine that outlives the test is reported with its
// stack; one that stops is not.
func TestCheck(t *testing.T) {
	settle = 300 * time.Millisecond
	defer func() { settle = 5 * time.Second }()
	stop := make(chan struct{})
	r := &recorder{TB: t}
	Check(r)
	go leaky(stop)
	r.finish()
	close(stop)
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], "leakcheck.leaky") {
		t.Errorf("a leaked goroutine: failures %q, want one naming leakcheck.leaky", r.errs)
	}

	r = &recorder{TB: t}
	Check(r)
	done := make(chan struct{})
	go func() { time.Sleep(50 * time.Millisecond); close(done) }()
	r.finish()
	if len(r.errs) != 0 {
		t.Errorf("a goroutine that ended: failures %q", r.errs)
	}
}

func leaky(stop chan struct{}) { <-stop }
