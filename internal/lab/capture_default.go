//go:build !linux

package lab

// Capture needs Linux (AF_PACKET).
type Capture struct{}

// Capture needs Linux; elsewhere it fails the test.
func (l *Lab) Capture(ns NS, dev string) *Capture {
	l.t.Helper()
	l.t.Fatalf("lab: capture: %v", errNotLinux)
	return nil
}

// Stop returns nothing.
func (c *Capture) Stop() []Frame { return nil }

// Frames returns nothing.
func (c *Capture) Frames() []Frame { return nil }

// Missed returns 0.
func (c *Capture) Missed() int { return 0 }

// Err returns errNotLinux.
func (c *Capture) Err() error { return errNotLinux }
