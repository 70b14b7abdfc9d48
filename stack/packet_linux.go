package stack

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PacketBatch is how many frames one system call of a PacketDevice moves at
// most (recvmmsg, sendmmsg). 32 amortises the system call over a burst
// without holding much memory: each slot is a full 64 KiB frame buffer in the
// reader.
const PacketBatch = 32

// PacketDevice is one AF_PACKET socket bound to an existing Ethernet
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
//
// Several sockets on one interface share the receive load through a
// PACKET_FANOUT group (by flow hash). The descriptor is non-blocking and on
// the Go poller, so Close wakes a blocked ReadBatch. A PacketDevice is used
// by one reader goroutine; Write may also be called from others.
type PacketDevice struct {
	f    *os.File
	rc   syscall.RawConn
	name string
	vnet bool

	// rx and tx are the reader's and the batch writer's system call state,
	// reused for every call so that neither allocates. rx is owned by the
	// goroutine in ReadBatch, tx by the one in WriteBatch (the Link's reader
	// for this device: one goroutine calls both).
	rx, tx mmsgBatch
	readFn func(fd uintptr) bool
	sendFn func(fd uintptr) bool
}

// PacketOptions say how to attach to an interface.
type PacketOptions struct {
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
	hdrs [PacketBatch]mmsghdr
	iov  [PacketBatch]unix.Iovec
	n    int   // messages to pass in; after the call, messages moved
	err  error // the call's error, nil when n > 0
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

// packetFilter is a classic BPF program that drops frames the kernel marked
// for another host (PACKET_OTHERHOST) or sent by this host (PACKET_OUTGOING,
// for kernels before PACKET_IGNORE_OUTGOING), and passes the rest whole.
var packetFilter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: skfAdOff + skfAdPktType},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 2, K: unix.PACKET_OTHERHOST},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: unix.PACKET_OUTGOING},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0x40000},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

// OpenPacket attaches to an existing interface with AF_PACKET sockets, one
// per queue. It needs CAP_NET_RAW. The interface must be up for traffic to
// flow; OpenPacket does not change it.
func OpenPacket(opts PacketOptions) ([]*PacketDevice, error) {
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
	devs := make([]*PacketDevice, 0, queues)
	fail := func(err error) ([]*PacketDevice, error) {
		for _, d := range devs {
			d.Close()
		}
		return nil, fmt.Errorf("attach %q: %w", opts.Name, err)
	}
	fanout := 0 // the group id, once the first socket made one
	for q := range queues {
		fd, err := openPacketSocket(ifi.Index, opts.VNetHdr)
		if err != nil {
			return fail(err)
		}
		if queues > 1 {
			if fanout, err = joinFanout(fd, q == 0, fanout); err != nil {
				unix.Close(fd)
				return fail(err)
			}
		}
		d, err := newPacketDevice(fd, opts.Name, opts.VNetHdr)
		if err != nil {
			return fail(err)
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// openPacketSocket returns a non-blocking AF_PACKET socket bound to the
// interface. The socket is made with protocol 0, which receives nothing,
// and bound to ETH_P_ALL only once its options and filter are set, so no
// frame reaches it unfiltered.
func openPacketSocket(ifindex int, vnet bool) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
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
	// Our own output is not input (Linux 4.20+; the filter covers older).
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	// Frames go straight to the driver: lvsd is the only sender that
	// matters on this interface, and a qdisc would only add a lock.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	// Bursts wait in the socket while the reader works; 4 MiB each way
	// (SO_*BUFFORCE, with CAP_NET_ADMIN, goes past the sysctl limits).
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], 4<<20) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], 4<<20)
		}
	}
	prog := unix.SockFprog{Len: uint16(len(packetFilter)), Filter: &packetFilter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return -1, fmt.Errorf("SO_ATTACH_FILTER: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: ethPAll, Ifindex: ifindex}); err != nil {
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

func newPacketDevice(fd int, name string, vnet bool) (*PacketDevice, error) {
	f := os.NewFile(uintptr(fd), "packet:"+name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	d := &PacketDevice{f: f, rc: rc, name: name, vnet: vnet}
	d.readFn = d.recv
	d.sendFn = d.send
	return d, nil
}

// Name returns the interface name.
func (d *PacketDevice) Name() string { return d.name }

// BatchSize implements BatchDevice.
func (d *PacketDevice) BatchSize() int { return PacketBatch }

// Read reads one frame (after the virtio-net header when VNetHdr).
func (d *PacketDevice) Read(b []byte) (int, error) { return d.f.Read(b) }

// Write writes one frame (after the virtio-net header when VNetHdr) on the
// interface the socket is bound to.
func (d *PacketDevice) Write(b []byte) (int, error) { return d.f.Write(b) }

// Close closes the socket, waking a blocked ReadBatch.
func (d *PacketDevice) Close() error { return d.f.Close() }

// ReadBatch implements BatchDevice with one recvmmsg per call once frames
// are waiting. It blocks until at least one frame arrives or Close.
func (d *PacketDevice) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	b := &d.rx
	b.n = min(len(bufs), len(sizes), PacketBatch)
	b.load(bufs[:b.n])
	if err := d.rc.Read(d.readFn); err != nil {
		return 0, err
	}
	if b.err != nil {
		return 0, b.err
	}
	for i := range b.n {
		sizes[i] = int(b.hdrs[i].len)
		if b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
			// Larger than a buffer: not a frame this link can carry.
			sizes[i] = -1
		}
	}
	return b.n, nil
}

// recv is the poller callback of ReadBatch: false means "not ready, wait".
func (d *PacketDevice) recv(fd uintptr) bool {
	b := &d.rx
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.n), unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	b.n, b.err = int(n), nil
	if errno != 0 {
		b.n, b.err = 0, os.NewSyscallError("recvmmsg", errno)
	}
	return true
}

// WriteBatch implements BatchDevice with sendmmsg. It returns how many of
// the frames were sent and, if not all, the error of the first one that was
// not; the caller decides whether to retry the rest.
func (d *PacketDevice) WriteBatch(frames [][]byte) (int, error) {
	b := &d.tx
	b.n = min(len(frames), PacketBatch)
	b.load(frames[:b.n])
	if err := d.rc.Write(d.sendFn); err != nil {
		return 0, err
	}
	return b.n, b.err
}

func (d *PacketDevice) send(fd uintptr) bool {
	b := &d.tx
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.n), 0, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	b.n, b.err = int(n), nil
	if errno != 0 {
		b.n, b.err = 0, os.NewSyscallError("sendmmsg", errno)
	}
	return true
}

// load points the batch's messages at bufs. The pointers live in d, which
// the caller keeps alive across the call; the buffers are the caller's.
func (b *mmsgBatch) load(bufs [][]byte) {
	for i, buf := range bufs {
		b.iov[i].Base = unsafe.SliceData(buf)
		b.iov[i].SetLen(len(buf))
		b.hdrs[i] = mmsghdr{hdr: unix.Msghdr{Iov: &b.iov[i], Iovlen: 1}}
	}
}
