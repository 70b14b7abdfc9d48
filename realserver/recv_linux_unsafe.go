//go:build linux

package realserver

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recv waits for packets on the socket rc and receives up to rxBatchSize of
// them. Packet i is then b.packet(i).
func (b *rxBatch) recv(rc syscall.RawConn) (int, error) {
	for i := range b.hdrs {
		b.iov[i].Base = &b.slots[i][vnetHdrLen]
		b.iov[i].SetLen(slotSize - vnetHdrLen)
		b.hdrs[i] = mmsghdr{hdr: unix.Msghdr{Iov: &b.iov[i], Iovlen: 1}}
		if b.v6 {
			b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		}
	}
	if err := rc.Read(b.readFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, b.errno
	}
	return b.n, nil
}

// read is one recvmmsg without blocking, as a raw system call (it cannot
// block, so the scheduler need not know). It returns false to have the
// poller wait when nothing is queued.
func (b *rxBatch) read(fd uintptr) bool {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), rxBatchSize, unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN {
		return false
	}
	b.n, b.errno = int(n), errno
	return true
}
