package device

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// SYN steering. Each AFPacket receives on two sockets: TCP SYNs (SYN set,
// ACK clear: what a flood of new connections sends) on one, everything else
// on the other. The kernel queues them apart, so a SYN flood fills
// only its own socket's buffer and the kernel drops the flood's excess there
// (before lvsd reads a byte or touches its table), while the frames of
// established flows wait in a queue the flood cannot fill. The reader
// serves the established queue first and gives new connections a budget:
// synReserve slots of every batch while established frames are waiting,
// the whole batch when none are.
//
// SYN-ACKs stay with the established traffic: a real server's SYN-ACK
// completes a connection lvsd already admitted and must not be lost in the
// flood's queue (with it there, a legitimate connection had two chances to
// lose a segment instead of one), and real servers send no more of them
// than lvsd forwarded SYNs, which the budget bounds.

// synReserve is the SYN socket's share of a receive batch while the other
// queue has frames: 8 of 32, so that new connections are never starved by
// established traffic, and a flood never takes more than a quarter of a
// batch from it.
const synReserve = AFPacketBatch / 4

// Offsets in an Ethernet frame (no VLAN tag) that the filter reads.
const (
	offEtherType = 12
	offIPv4Frag  = 14 + 6 // flags and fragment offset
	offIPv4Proto = 14 + 9 // protocol
	offIPv6Next  = 14 + 6 // next header
	offIPv6Flags = 14 + 40 + 13
	offTCPFlags  = 14 + 13 // after the IPv4 header, whose length is in X
	tcpSYN       = 0x02
	tcpACK       = 0x10
)

// steerFilter returns the classic BPF program of a receive socket: it
// drops frames the kernel marked for another host (PACKET_OTHERHOST) or
// sent by this host (PACKET_OUTGOING, for kernels before
// PACKET_IGNORE_OUTGOING), and of the rest passes TCP SYNs (SYN set, ACK
// clear; IPv4 not a fragment, or IPv6 with TCP as the first next header)
// if syn, and all other frames if not. Together, the two programs pass each
// frame to exactly one socket.
func steerFilter(syn bool) []unix.SockFilter {
	const pass = 0x40000
	synV, otherV := uint32(0), uint32(pass)
	if syn {
		synV, otherV = pass, 0
	}
	const (
		lSYN   = 18
		lOther = 19
		lDrop  = 20
		lV6    = 13
		lFlags = 16
	)
	// j returns the relative jump from instruction at to label.
	j := func(at, label int) uint8 { return uint8(label - at - 1) }
	return []unix.SockFilter{
		/* 0 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: skfAdOff + skfAdPktType},
		/* 1 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: j(1, lDrop), K: unix.PACKET_OTHERHOST},
		/* 2 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: j(2, lDrop), K: unix.PACKET_OUTGOING},
		/* 3 */ {Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: offEtherType},
		/* 4 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: unix.ETH_P_IP},
		/* 5 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: j(5, lV6), Jf: j(5, lOther), K: unix.ETH_P_IPV6},
		/* 6 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: offIPv4Proto},
		/* 7 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: j(7, lOther), K: unix.IPPROTO_TCP},
		/* 8 */ {Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: offIPv4Frag},
		/* 9 */ {Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: j(9, lOther), Jf: 0, K: 0x1fff},
		/* 10 */ {Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 14},
		/* 11 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_IND, K: offTCPFlags},
		/* 12 */ {Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(lFlags - 12 - 1)},
		/* 13 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: offIPv6Next},
		/* 14 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: j(14, lOther), K: unix.IPPROTO_TCP},
		/* 15 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: offIPv6Flags},
		/* 16 */ {Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: tcpSYN | tcpACK},
		/* 17 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: j(17, lSYN), Jf: j(17, lOther), K: tcpSYN},
		/* 18 */ {Code: unix.BPF_RET | unix.BPF_K, K: synV},
		/* 19 */ {Code: unix.BPF_RET | unix.BPF_K, K: otherV},
		/* 20 */ {Code: unix.BPF_RET | unix.BPF_K, K: 0},
	}
}

// Both programs, built once; setsockopt copies them.
var (
	synFilter   = steerFilter(true)
	otherFilter = steerFilter(false)
)

// readSteered is ReadBatch's receive step: it fills bufs from the
// established queue (leaving synReserve slots) and then from the SYN queue
// (synReserve frames at most if the established queue had any), without
// blocking. It returns the frames received, 0 if both queues are
// empty.
func (d *AFPacket) readSteered(bufs [][]byte, sizes []int) (int, error) {
	want := len(bufs)
	first := want
	if want > synReserve {
		first = want - synReserve
	}
	n, err := d.recvInto(&d.rx, d.rxfd, bufs[:first], sizes)
	if err != nil {
		return 0, err
	}
	// SYNs get the reserve while established frames are waiting, the
	// whole batch only when none are: a batch full of SYNs takes longer
	// to forward than one of established frames, and the established
	// queue would wait (and grow) behind it.
	syns := want - n
	if n > 0 {
		syns = min(syns, synReserve)
	}
	m, err := d.recvInto(&d.srx, d.synfd, bufs[n:n+syns], sizes[n:n+syns])
	if err != nil {
		return 0, err
	}
	return n + m, nil
}

// recvInto receives up to len(bufs) frames from fd into bufs with batch b;
// an empty queue is 0 frames, not an error.
func (d *AFPacket) recvInto(b *mmsgBatch, fd int, bufs [][]byte, sizes []int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	b.load(bufs)
	for {
		n, errno := b.recvmmsg(fd, len(bufs))
		switch errno {
		case 0:
			for i := range n {
				sizes[i] = int(b.hdrs[i].len)
				if b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
					// Larger than a buffer: not a frame this link can carry.
					sizes[i] = -1
				}
			}
			return n, nil
		case unix.EINTR:
		case unix.EAGAIN:
			return 0, nil
		default:
			return 0, os.NewSyscallError("recvmmsg", errno)
		}
	}
}

// kernelDrops accumulates the kernel's drop counts of a device's two
// receive sockets (PACKET_STATISTICS, which the kernel resets on every
// read); mu serialises the reads so that no count is lost or added twice.
type kernelDrops struct {
	mu       sync.Mutex
	est, syn uint64 // guarded by mu
}

// KernelDrops returns how many frames the kernel dropped, since the device
// was opened, because the established socket's buffer (established) or the
// SYN socket's (syn) was full: frames lvsd never read. Any goroutine may
// call it; after Close it returns the last counts.
func (d *AFPacket) KernelDrops() (established, syn uint64) {
	d.drops.mu.Lock()
	defer d.drops.mu.Unlock()
	if d.g.enter() == nil {
		if s, err := unix.GetsockoptTpacketStats(d.rxfd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			d.drops.est += uint64(s.Drops)
		}
		if s, err := unix.GetsockoptTpacketStats(d.synfd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			d.drops.syn += uint64(s.Drops)
		}
		d.g.leave()
	}
	return d.drops.est, d.drops.syn
}
