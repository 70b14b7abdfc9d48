//go:build linux

package devicetest

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setLoopbackMAC gives the loopback interface name the address mac
// (SIOCSIFHWADDR; x/sys/unix's Ifreq has no setter for a hardware address).
func setLoopbackMAC(s int, name string, mac net.HardwareAddr) error {
	var hw struct {
		name   [unix.IFNAMSIZ]byte
		family uint16
		data   [14]byte
		_      [8]byte // the rest of struct ifreq
	}
	copy(hw.name[:], name)
	hw.family = unix.ARPHRD_LOOPBACK // must match the device type
	copy(hw.data[:], mac)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s), unix.SIOCSIFHWADDR, uintptr(unsafe.Pointer(&hw))); errno != 0 {
		return errno
	}
	return nil
}
