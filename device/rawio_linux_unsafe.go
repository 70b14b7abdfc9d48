//go:build linux

package device

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawIO is read(2) or write(2) (trap) on a non-blocking descriptor as a raw
// system call: one that cannot block need not tell the Go scheduler, which
// would otherwise hand the thread's processor to another thread when the
// call runs long (a write runs the receiving stack's work) and take it back
// after, a thread switch each. The price: a garbage collection's
// stop-the-world waits for the call to end (microseconds).
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(p), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
