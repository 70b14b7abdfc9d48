package device

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
)

// AFPacketBatch is how many frames one system call of an AFPacket moves at
// most (recvmmsg, sendmmsg). 32 amortises the system call over a burst
// without holding much memory: each slot is a full 64 KiB frame buffer in the
// reader.
const AFPacketBatch = 32

// AFPacket is a pair of AF_PACKET sockets bound to an existing Ethernet
// interface: lvsd's attach mode for hosts where the interface already exists
// (a veth, a physical NIC) and for small packets, where a TAP costs two
// system calls per frame. It reads and writes whole Ethernet frames in
// batches (recvmmsg, sendmmsg); with VNetHdr each frame carries a virtio-net
// header, so GSO super-frames and partial checksums pass as on a TAP.
//
// The kernel stack of the interface still sees every frame it receives, so
// the interface must hold no addresses of its own (lvsd's netstack owns them)
// and the namespace must not forward. A socket filter passes only frames for
// the interface's MAC, broadcast and multicast, as TUNSETTXFILTER does on a
// TAP; the socket never receives its own output (PACKET_IGNORE_OUTGOING).
// Several devices on one interface share the receive load through a
// PACKET_FANOUT group (by flow hash).
//
// Two sockets: frames are received on one that is non-blocking and read
// without the Go poller (see fdGuard), and sent on another that receives
// nothing (protocol 0), is blocking and in no poll set, so that the frames
// the kernel frees after sending them wake nobody.
//
// An AFPacket is read by one goroutine (Read, ReadBatch); WriteBatch is
// called by that goroutine too; Write may be called from any goroutine.
type AFPacket struct {
	name string
	vnet bool

	g     fdGuard // Close, and the reader's sleep in poll(2)
	rxfd  int     // AF_PACKET, ETH_P_ALL, non-blocking, filtered: all but SYNs
	synfd int     // as rxfd, for TCP segments with SYN set (afpacket_syn_linux.go)
	txfd  int     // AF_PACKET, protocol 0, blocking

	// rx and tx are the argument blocks of recvmmsg and sendmmsg, and
	// rpoll the reader's poll set, reused for every call so that none
	// allocates; owned by the reading goroutine.
	rx, srx, tx mmsgBatch
	rpoll       [3]rawfile.PollEvent

	drops kernelDrops // KernelDrops
}

// AFPacketOptions say how to attach to an interface.
type AFPacketOptions struct {
	// Name of an existing Ethernet interface.
	Name string
	// VNetHdr enables PACKET_VNET_HDR: checksum and GSO offload.
	VNetHdr bool
	// Queues is the number of sockets in one fanout group; one reader each.
	// Zero means one.
	Queues int
}

// mmsgBatch is the argument block of one recvmmsg or sendmmsg call and its
// result; iov[i] points at the caller's buffer i for the duration of a call.
type mmsgBatch struct {
	hdrs [AFPacketBatch]mmsghdr
	iov  [AFPacketBatch]unix.Iovec
}

// mmsghdr is struct mmsghdr of <sys/socket.h>; x/sys/unix does not have it.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// ethPAll is ETH_P_ALL in network byte order, as socket(2) and bind(2) take it.
var ethPAll = htons(unix.ETH_P_ALL)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Ancillary loads of classic BPF (linux/filter.h): SKF_AD_OFF (-4096) plus
// SKF_AD_PKTTYPE loads skb->pkt_type.
const (
	skfAdOff     = 0xfffff000
	skfAdPktType = 4
)

// OpenAFPacket attaches to an existing interface with AF_PACKET sockets, one
// per queue. It needs CAP_NET_RAW. The interface must be up for traffic to
// flow; OpenAFPacket does not change it.
func OpenAFPacket(opts AFPacketOptions) ([]*AFPacket, error) {
	if len(opts.Name) == 0 || len(opts.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("attach %q: name must be 1 to %d bytes", opts.Name, unix.IFNAMSIZ-1)
	}
	ifi, err := net.InterfaceByName(opts.Name)
	if err != nil {
		return nil, fmt.Errorf("attach %q: %w", opts.Name, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("attach %q: not an Ethernet interface (hardware address %q)", opts.Name, ifi.HardwareAddr)
	}
	queues := max(opts.Queues, 1)
	devs := make([]*AFPacket, 0, queues)
	fail := func(err error) ([]*AFPacket, error) {
		for _, d := range devs {
			d.Close()
		}
		return nil, fmt.Errorf("attach %q: %w", opts.Name, err)
	}
	fanout := 0    // the group id, once the first socket made one
	synFanout := 0 // the SYN sockets' group
	for q := range queues {
		d, err := openAFPacket(ifi.Index, opts.Name, opts.VNetHdr)
		if err != nil {
			return fail(err)
		}
		devs = append(devs, d)
		if queues > 1 {
			if fanout, err = joinFanout(d.rxfd, q == 0, fanout); err != nil {
				return fail(err)
			}
			if synFanout, err = joinFanout(d.synfd, q == 0, synFanout); err != nil {
				return fail(err)
			}
		}
	}
	return devs, nil
}

// openAFPacket opens the receive socket, the send socket and the
// eventfd of one device.
func openAFPacket(ifindex int, name string, vnet bool) (*AFPacket, error) {
	d := &AFPacket{name: name, vnet: vnet, rxfd: -1, synfd: -1, txfd: -1}
	var err error
	if d.rxfd, err = openPacketSocket(ifindex, vnet, otherFilter); err != nil {
		return nil, err
	}
	if d.synfd, err = openPacketSocket(ifindex, vnet, synFilter); err != nil {
		unix.Close(d.rxfd)
		return nil, err
	}
	if d.txfd, err = openPacketSocket(ifindex, vnet, nil); err != nil {
		unix.Close(d.rxfd)
		unix.Close(d.synfd)
		return nil, err
	}
	if err := d.g.init(); err != nil {
		unix.Close(d.rxfd)
		unix.Close(d.synfd)
		unix.Close(d.txfd)
		return nil, err
	}
	set := d.g.pollSet(d.rxfd, unix.POLLIN)
	d.rpoll = [3]rawfile.PollEvent{set[0], set[1], {FD: int32(d.synfd), Events: unix.POLLIN}}
	return d, nil
}

// openPacketSocket returns an AF_PACKET socket bound to the interface: for
// receiving (a filter), non-blocking, filtered and bound to ETH_P_ALL; for
// sending, blocking and bound with protocol 0, which receives nothing. A
// receive socket is made with protocol 0 too and bound to ETH_P_ALL only
// once its options and filter are set, so no frame reaches it unfiltered.
func openPacketSocket(ifindex int, vnet bool, filter []unix.SockFilter) (int, error) {
	rx := filter != nil
	typ := unix.SOCK_RAW | unix.SOCK_CLOEXEC
	if rx {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_PACKET, typ, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (AF_PACKET needs CAP_NET_RAW)", err)
		}
		return -1, fmt.Errorf("socket(AF_PACKET): %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if vnet {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return -1, fmt.Errorf("PACKET_VNET_HDR: %w", err)
		}
	}
	// Bursts wait in the socket while the reader works; 4 MiB
	// (SO_*BUFFORCE, with CAP_NET_ADMIN, goes past the sysctl limits).
	force, plain := unix.SO_SNDBUFFORCE, unix.SO_SNDBUF
	if rx {
		force, plain = unix.SO_RCVBUFFORCE, unix.SO_RCVBUF
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, 4<<20)
	}
	proto := uint16(0)
	if rx {
		// Our own output is not input (Linux 4.20+; the filter covers older).
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			return -1, fmt.Errorf("SO_ATTACH_FILTER: %w", err)
		}
		proto = ethPAll
	} else {
		// Frames go straight to the driver: lvsd is the only sender that
		// matters on this interface, and a qdisc would only add a lock.
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
		// A send blocks while the socket's buffer is full (the driver
		// holds the frames: a NIC without carrier); the timeout bounds it,
		// so that a stuck device costs dropped frames, not a hung Close.
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 1}); err != nil {
			return -1, fmt.Errorf("SO_SNDTIMEO: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		return -1, fmt.Errorf("bind: %w", err)
	}
	ok = true
	return fd, nil
}

// packetFanoutUniqueID is PACKET_FANOUT_FLAG_UNIQUEID (Linux 4.12+): the
// kernel picks a group id no other socket of the namespace uses.
const packetFanoutUniqueID = 0x2000

// joinFanout puts the socket in a PACKET_FANOUT_HASH group: the first one
// creates a group with a fresh id, the others join it. It returns the id.
func joinFanout(fd int, first bool, id int) (int, error) {
	arg := id | unix.PACKET_FANOUT_HASH<<16
	if first {
		arg = (unix.PACKET_FANOUT_HASH | packetFanoutUniqueID) << 16
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, arg); err != nil {
		return 0, fmt.Errorf("PACKET_FANOUT: %w", err)
	}
	if !first {
		return id, nil
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
	if err != nil {
		return 0, fmt.Errorf("PACKET_FANOUT: %w", err)
	}
	return v & 0xffff, nil
}

// Name returns the interface name.
func (d *AFPacket) Name() string { return d.name }

// BatchSize implements BatchDevice.
func (d *AFPacket) BatchSize() int { return AFPacketBatch }

// Read reads one frame (after the virtio-net header when VNetHdr); it is
// ReadBatch of one.
func (d *AFPacket) Read(b []byte) (int, error) {
	var size [1]int
	bufs := [1][]byte{b}
	if _, err := d.ReadBatch(bufs[:], size[:]); err != nil {
		return 0, err
	}
	if size[0] < 0 {
		return 0, errTruncated
	}
	return size[0], nil
}

var errTruncated = errors.New("frame larger than the buffer")

// Write writes one frame (after the virtio-net header when VNetHdr) on the
// interface. Any goroutine may call it.
func (d *AFPacket) Write(b []byte) (int, error) {
	if err := d.g.enter(); err != nil {
		return 0, err
	}
	defer d.g.leave()
	for {
		n, err := unix.Write(d.txfd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("write", err)
		}
		return n, nil
	}
}

// Close wakes a reader sleeping in ReadBatch, waits for the system calls
// under way, and closes the sockets. Later calls return os.ErrClosed.
func (d *AFPacket) Close() error {
	d.g.shut(&d.rxfd, &d.synfd, &d.txfd)
	return nil
}

// ReadBatch implements BatchDevice with a recvmmsg on each receive socket
// (established queue first, then SYNs: see readSteered). It blocks until at least one frame arrives or Close, and
// then returns os.ErrClosed.
func (d *AFPacket) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if err := d.g.enter(); err != nil {
		return 0, err
	}
	defer d.g.leave()
	want := min(len(bufs), len(sizes), AFPacketBatch)
	for {
		if d.g.stopped.Load() {
			return 0, ErrStopped
		}
		// Raw system calls: they never block (MSG_DONTWAIT), so the Go
		// scheduler need not know, and no thread hand-off follows them.
		n, err := d.readSteered(bufs[:want], sizes[:want])
		if n > 0 || err != nil {
			return n, err
		}
		// Both queues empty: sleep until a frame or Close.
		if err := d.g.wait(d.rpoll[:]); err != nil {
			return 0, err
		}
	}
}

// WriteBatch implements BatchDevice with sendmmsg. It returns how many of
// the frames were sent and, if not all, the error of the first one that was
// not; the caller decides whether to go on with the rest.
func (d *AFPacket) WriteBatch(frames [][]byte) (int, error) {
	if err := d.g.enter(); err != nil {
		return 0, err
	}
	defer d.g.leave()
	b := &d.tx
	want := min(len(frames), AFPacketBatch)
	b.load(frames[:want])
	for {
		// First without blocking, as a raw system call (see ReadBatch);
		// only a full send buffer makes it wait, in a call the scheduler
		// knows about (bounded by SO_SNDTIMEO).
		n, errno := b.sendmmsg(d.txfd, want, false)
		if errno == unix.EAGAIN {
			n, errno = b.sendmmsg(d.txfd, want, true)
		}
		switch errno {
		case 0:
			return n, nil
		case unix.EINTR:
		default:
			return 0, os.NewSyscallError("sendmmsg", errno)
		}
	}
}
