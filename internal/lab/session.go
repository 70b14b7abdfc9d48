package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// Session is the T of a program (the demo): it collects cleanups and runs
// them, last registered first, in Close. Fatalf marks the session failed and
// panics with a *FatalError, which the program recovers in the function that
// defers Close:
//
//	s := lab.NewSession(ctx, os.Stderr)
//	defer func() {
//		r := recover()
//		s.Close()
//		if _, ok := r.(*lab.FatalError); !ok && r != nil { panic(r) }
//	}()
//
// Fatalf must be called from that function's goroutine.
type Session struct {
	// Quiet drops Logf lines until the session has failed (the lab's
	// failure report, printed at teardown, still shows).
	Quiet bool

	ctx context.Context
	out io.Writer

	mu       sync.Mutex
	cleanups []func() // guarded by mu
	failed   bool     // guarded by mu
}

// FatalError is the panic value of Session.Fatalf.
type FatalError struct{ Msg string }

func (e *FatalError) Error() string { return e.Msg }

// NewSession returns a session whose Context is ctx (cancel it on SIGINT)
// and whose logs go to out.
func NewSession(ctx context.Context, out io.Writer) *Session {
	if out == nil {
		out = os.Stderr
	}
	return &Session{ctx: ctx, out: out}
}

var _ T = (*Session)(nil)

// Helper does nothing; it is part of T.
func (s *Session) Helper() {}

// Cleanup registers f to run in Close.
func (s *Session) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// Context returns the session's context.
func (s *Session) Context() context.Context { return s.ctx }

// Logf prints a line, unless Quiet and the session has not failed.
func (s *Session) Logf(format string, args ...any) {
	if s.Quiet && !s.Failed() {
		return
	}
	fmt.Fprintf(s.out, format+"\n", args...)
}

// Errorf prints a line and marks the session failed.
func (s *Session) Errorf(format string, args ...any) {
	s.Fail()
	fmt.Fprintf(s.out, format+"\n", args...)
}

// Fatalf marks the session failed and panics with a *FatalError holding the
// message.
func (s *Session) Fatalf(format string, args ...any) {
	s.Fail()
	panic(&FatalError{Msg: fmt.Sprintf(format, args...)})
}

// Fail marks the session failed: Close then prints the lab's logs.
func (s *Session) Fail() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = true
}

// Failed reports whether Fail, Errorf or Fatalf was called.
func (s *Session) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Close runs the registered cleanups, last first, each to the end even if
// another panics (the panic is printed and the session marked failed).
func (s *Session) Close() {
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			return
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					s.Errorf("cleanup panicked: %v", r)
				}
			}()
			f()
		}()
	}
}
