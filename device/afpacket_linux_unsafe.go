//go:build linux

package device

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// load points the batch's messages at bufs. The pointers live in the
// batch, which its device keeps alive across the call; the buffers are the
// caller's.
func (b *mmsgBatch) load(bufs [][]byte) {
	for i, buf := range bufs {
		b.iov[i].Base = unsafe.SliceData(buf)
		b.iov[i].SetLen(len(buf))
		b.hdrs[i] = mmsghdr{hdr: unix.Msghdr{Iov: &b.iov[i], Iovlen: 1}}
	}
}

// recvmmsg receives up to n frames into the loaded batch without blocking
// (MSG_DONTWAIT), as a raw system call: one that cannot block need not tell
// the Go scheduler, so no thread hand-off follows it.
func (b *mmsgBatch) recvmmsg(fd, n int) (int, unix.Errno) {
	got, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	return int(got), errno
}

// sendmmsg sends the first n frames of the loaded batch: without blocking as
// a raw system call (see recvmmsg), or, when block, as a call the scheduler
// knows about, which may wait for room in the socket's send buffer.
func (b *mmsgBatch) sendmmsg(fd, n int, block bool) (int, unix.Errno) {
	if block {
		sent, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(n), 0, 0, 0)
		return int(sent), errno
	}
	sent, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	return int(sent), errno
}
