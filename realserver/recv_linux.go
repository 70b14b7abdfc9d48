//go:build linux

package realserver

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// rxBatchSize is how many packets one recvmmsg takes at most: a TCP
// super-frame of 64 KiB arrives as about 45 segments, which one batch then
// holds, so that they can be joined into one write (coalescer).
const rxBatchSize = 64

// slotSize is the size of one receive buffer: the virtio-net header's room,
// then the largest IP packet a raw socket returns. A super-frame grows in
// its first segment's slot.
const slotSize = vnetHdrLen + 1<<16

// mmsghdr is struct mmsghdr of <sys/socket.h>; x/sys/unix has no recvmmsg.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// rxBatch is the argument block of recvmmsg on one raw socket and its
// buffers, owned by the socket's receiving goroutine. Slot i receives at
// slots[i][vnetHdrLen:]; the bytes before are the room for the virtio-net
// header the TUN write puts in front of the inner packet.
type rxBatch struct {
	hdrs  [rxBatchSize]mmsghdr
	iov   [rxBatchSize]unix.Iovec
	names [rxBatchSize]unix.RawSockaddrInet6 // the sources, on an IPv6 socket
	slots [rxBatchSize][]byte
	v6    bool

	// The result of the last read, and read bound once (a method value
	// made per call would allocate).
	n      int
	errno  unix.Errno
	readFn func(fd uintptr) bool
}

func newRxBatch(v6 bool) *rxBatch {
	b := &rxBatch{v6: v6}
	mem := make([]byte, rxBatchSize*slotSize)
	for i := range b.slots {
		b.slots[i] = mem[i*slotSize : (i+1)*slotSize : (i+1)*slotSize]
	}
	b.readFn = b.read
	return b
}

// packet returns the slot of packet i, the bytes received into it (from
// vnetHdrLen on), whether the kernel cut it short, and, on an IPv6 socket,
// its source.
func (b *rxBatch) packet(i int) (slot, data []byte, trunc bool, from netip.Addr) {
	slot = b.slots[i]
	n := int(b.hdrs[i].len)
	if b.v6 {
		from = netip.AddrFrom16(b.names[i].Addr)
	}
	return slot, slot[vnetHdrLen : vnetHdrLen+n], b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0, from
}
