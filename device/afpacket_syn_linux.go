package device

import (
	"os"

	"golang.org/x/sys/unix"
)

// SYN steering. Each AFPacket receives on two sockets: TCP segments with
// SYN set (SYNs and SYN-ACKs: new-connection traffic) on one, everything
// else on the other. The kernel queues them apart, so a SYN flood fills
// only its own socket's buffer and the kernel drops the flood's excess there
// (before lvsd reads a byte or touches its table), while the frames of
// established flows wait in a queue the flood cannot fill. The reader
// serves the established queue first and gives new connections a budget:
// at least synReserve slots of every batch, and whatever the established
// queue leaves free.

// synReserve is the share of a receive batch kept for the SYN socket when
// the other queue is busy: 8 of 32, so that new connections are never
// starved by established traffic, and established traffic gets at least
// three quarters of the reader under a flood.
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
)

// steerFilter returns the classic BPF program of a receive socket: it
// drops frames the kernel marked for another host (PACKET_OTHERHOST) or
// sent by this host (PACKET_OUTGOING, for kernels before
// PACKET_IGNORE_OUTGOING), and of the rest passes TCP segments with
// SYN set (IPv4 not a fragment, or IPv6 with TCP as the first next header)
// if syn, and all other frames if not. Together, the two programs pass each
// frame to exactly one socket.
func steerFilter(syn bool) []unix.SockFilter {
	const pass = 0x40000
	synV, otherV := uint32(0), uint32(pass)
	if syn {
		synV, otherV = pass, 0
	}
	const (
		lSYN   = 17
		lOther = 18
		lDrop  = 19
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
		/* 16 */ {Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: j(16, lSYN), Jf: j(16, lOther), K: tcpSYN},
		/* 17 */ {Code: unix.BPF_RET | unix.BPF_K, K: synV},
		/* 18 */ {Code: unix.BPF_RET | unix.BPF_K, K: otherV},
		/* 19 */ {Code: unix.BPF_RET | unix.BPF_K, K: 0},
	}
}

// Both programs, built once; setsockopt copies them.
var (
	synFilter   = steerFilter(true)
	otherFilter = steerFilter(false)
)

// readSteered is ReadBatch's receive step: it fills bufs from the
// established queue (leaving synReserve slots) and then from the SYN queue,
// without blocking. It returns the frames received, 0 if both queues are
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
	m, err := d.recvInto(&d.srx, d.synfd, bufs[n:], sizes[n:])
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
