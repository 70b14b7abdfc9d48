//go:build !linux

package stack

import (
	"errors"
	"fmt"
	"runtime"
)

var errNotLinux = fmt.Errorf("TAP and TUN devices need Linux, not %s", runtime.GOOS)

// TunDevice is one queue of a Linux TAP or TUN device; elsewhere it never
// opens.
type TunDevice struct {
	name  string
	vnet  bool
	l2    bool
	multi bool
}

// OpenTun is Linux-only; elsewhere lvsd runs over MemDevice only.
func OpenTun(opts DeviceOptions) ([]*TunDevice, error) { return nil, errNotLinux }

// SetLinkUp is Linux-only.
func SetLinkUp(name string, mtu int) error { return errNotLinux }

// LinkIsUp is Linux-only.
func LinkIsUp(name string) (bool, error) { return false, errNotLinux }

// Read, Write and Close exist so that TunDevice is a Device everywhere.
func (d *TunDevice) Read(b []byte) (int, error)  { return 0, errNotLinux }
func (d *TunDevice) Write(b []byte) (int, error) { return 0, errNotLinux }
func (d *TunDevice) Close() error                { return errNotLinux }

// isFatal: no device errors exist off Linux.
func isFatal(err error) bool { return errors.Is(err, errNotLinux) }
