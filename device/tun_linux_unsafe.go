//go:build linux

package device

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// setTxFilter makes the kernel pass the TAP only frames addressed to mac,
// plus all multicast and broadcast. Without it the TAP, as a bridge port,
// also receives unicast flooded for other hosts.
func setTxFilter(fd int, mac [6]byte) error {
	// struct tun_filter { __u16 flags; __u16 count; __u8 addr[][6]; }
	var buf [4 + 6]byte
	*(*uint16)(unsafe.Pointer(&buf[0])) = tunFltAllMulti
	*(*uint16)(unsafe.Pointer(&buf[2])) = 1
	copy(buf[4:], mac[:])
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETTXFILTER, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
