//go:build !linux

package device

import (
	"errors"
	"fmt"
	"runtime"
)

var errNotLinux = fmt.Errorf("TAP and TUN devices need Linux, not %s", runtime.GOOS)

// Tun is one queue of a Linux TAP or TUN device; elsewhere it never
// opens.
type Tun struct {
	name  string
	vnet  bool
	l2    bool
	multi bool
}

// OpenTun is Linux-only; elsewhere lvsd runs over Mem only.
func OpenTun(opts TunOptions) ([]*Tun, error) { return nil, errNotLinux }

// SetLinkUp is Linux-only.
func SetLinkUp(name string, mtu int) error { return errNotLinux }

// LinkIsUp is Linux-only.
func LinkIsUp(name string) (bool, error) { return false, errNotLinux }

// Read, Write and Close exist so that Tun is a Device everywhere.
func (d *Tun) Read(b []byte) (int, error)  { return 0, errNotLinux }
func (d *Tun) Write(b []byte) (int, error) { return 0, errNotLinux }
func (d *Tun) Close() error                { return errNotLinux }

// IsFatal: no device errors exist off Linux.
func IsFatal(err error) bool { return errors.Is(err, errNotLinux) }

func (d *Tun) setPersist() error       { return errNotLinux }
func linkExists(name string) bool      { return false }
func linkIndex(name string) string     { return "" }
func joinBridge(name, br string) error { return errNotLinux }
