package device

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// setPersist makes the device of queue d persistent (TUNSETPERSIST): it
// outlives lvsd's descriptors, as a device made with `ip tuntap add`.
func (d *Tun) setPersist() error {
	if err := unix.IoctlSetInt(d.fd, unix.TUNSETPERSIST, 1); err != nil {
		return fmt.Errorf("make %q persistent (TUNSETPERSIST): %w", d.name, err)
	}
	return nil
}

// linkExists reports whether the network interface name exists in lvsd's
// network namespace.
func linkExists(name string) bool { return linkIndex(name) != "" }

// linkIndex returns the interface index of name as sysfs shows it, or ""
// when there is no such interface.
func linkIndex(name string) string {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "ifindex"))
	if err != nil {
		return ""
	}
	return string(b)
}

// joinBridge makes name a port of bridge br (SIOCBRADDIF) unless it is one
// already.
func joinBridge(name, br string) error {
	if cur, err := os.Readlink(filepath.Join("/sys/class/net", name, "master")); err == nil && filepath.Base(cur) == br {
		return nil
	}
	if !linkExists(br) {
		return fmt.Errorf("bridge %q does not exist", br)
	}
	ifi, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("join bridge %q: %w", br, err)
	}
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("join bridge %q: socket: %w", br, err)
	}
	defer unix.Close(s)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifi); err != nil {
		return fmt.Errorf("join bridge %q: index of %q: %w", br, name, err)
	}
	idx := ifi.Uint32()
	req, err := unix.NewIfreq(br)
	if err != nil {
		return fmt.Errorf("join bridge %q: %w", br, err)
	}
	req.SetUint32(idx)
	if err := unix.IoctlIfreq(s, unix.SIOCBRADDIF, req); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("join bridge %q: %w (is it a bridge?)", br, err)
		}
		return fmt.Errorf("join bridge %q (SIOCBRADDIF): %w", br, err)
	}
	return nil
}
