package device

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
)

// Flags of TUNSETOFFLOAD and TUNSETTXFILTER from linux/if_tun.h; x/sys/unix
// does not export them.
const (
	tunFCsum   = 0x01
	tunFTSO4   = 0x02
	tunFTSO6   = 0x04
	tunFTSOECN = 0x08

	tunFltAllMulti = 0x0001
)

// Tun is one queue of a Linux TAP or TUN device, opened on
// /dev/net/tun with IFF_NO_PI. With VNetHdr it was opened with IFF_VNET_HDR
// and checksum/TSO offload, so every read and write carries a virtio-net
// header first.
//
// The file descriptor is non-blocking and read without the Go runtime's
// poller (see fdGuard, Linux): Close wakes a goroutine blocked in Read.
// Tun owns the descriptor and closes it in Close.
type Tun struct {
	fd    int
	g     fdGuard
	rpoll [2]rawfile.PollEvent // the reader's poll set
	name  string
	vnet  bool
	l2    bool
	multi bool
}

// OpenTun opens (and, with the privilege to do so, creates) a TAP or TUN
// device and returns one Tun per queue.
//
// A device that already exists and belongs to the calling user (made with
// `ip tuntap add NAME mode tap user U`) opens without CAP_NET_ADMIN. A
// device that does not exist is created, which needs CAP_NET_ADMIN; it is
// not persistent and vanishes when lvsd closes it.
func OpenTun(opts TunOptions) ([]*Tun, error) {
	if len(opts.Name) == 0 || len(opts.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("open tun %q: name must be 1 to %d bytes", opts.Name, unix.IFNAMSIZ-1)
	}
	queues := max(opts.Queues, 1)
	devs := make([]*Tun, 0, queues)
	for range queues {
		d, err := openQueue(opts, queues > 1)
		if err != nil {
			for _, d := range devs {
				d.Close()
			}
			return nil, err
		}
		devs = append(devs, d)
	}
	return devs, nil
}

func openQueue(opts TunOptions, multi bool) (*Tun, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(opts.Name)
	if err != nil {
		return nil, fmt.Errorf("open tun %q: %w", opts.Name, err)
	}
	flags := uint16(unix.IFF_NO_PI)
	if opts.TAP {
		flags |= unix.IFF_TAP
	} else {
		flags |= unix.IFF_TUN
	}
	if opts.VNetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("attach tun %q (TUNSETIFF): %w", opts.Name, explainTunErr(err))
	}
	if opts.VNetHdr {
		off := tunFCsum | tunFTSO4 | tunFTSO6 | tunFTSOECN
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, off); err != nil {
			return nil, fmt.Errorf("set offload on %q (TUNSETOFFLOAD): %w", opts.Name, err)
		}
	}
	if opts.TAP && opts.MAC != ([6]byte{}) {
		if err := setTxFilter(fd, opts.MAC); err != nil {
			return nil, fmt.Errorf("set filter on %q (TUNSETTXFILTER): %w", opts.Name, err)
		}
	}
	d := &Tun{fd: fd, name: opts.Name, vnet: opts.VNetHdr, l2: opts.TAP, multi: multi}
	if err := d.g.init(); err != nil {
		return nil, err
	}
	d.rpoll = d.g.pollSet(fd, unix.POLLIN)
	ok = true
	return d, nil
}

// explainTunErr adds the usual cause to TUNSETIFF's terse errors.
func explainTunErr(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (the device does not exist or belongs to another user; creating one needs CAP_NET_ADMIN: `ip tuntap add NAME mode tap user $USER`)", err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w (the device exists with other flags: tap/tun or multi_queue differ)", err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w (another process has the device open)", err)
	}
	return err
}

// Read reads one frame (after the virtio-net header when VNetHdr) into b.
// It blocks until a frame arrives or the device is closed. One goroutine
// reads a queue.
func (d *Tun) Read(b []byte) (int, error) { return d.read(b, true) }

// TryRead reads one frame as Read does if one is waiting, and returns 0
// and no error at once if none is: a reader that batches the frames
// already queued (stack's sender mode). Called by the reading goroutine.
func (d *Tun) TryRead(b []byte) (int, error) { return d.read(b, false) }

// read is Read (wait) and TryRead (!wait): when no frame is waiting, it
// sleeps until one comes, or returns 0 at once.
func (d *Tun) read(b []byte, wait bool) (int, error) {
	if err := d.g.enter(); err != nil {
		return 0, err
	}
	defer d.g.leave()
	for {
		if d.g.stopped.Load() {
			return 0, ErrStopped
		}
		n, err := rawIO(unix.SYS_READ, d.fd, b)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
		case unix.EAGAIN:
			if !wait {
				return 0, nil
			}
			if err := d.g.wait(d.rpoll[:]); err != nil {
				return 0, err
			}
		default:
			return 0, os.NewSyscallError("read", err)
		}
	}
}

// Write writes one frame (after the virtio-net header when VNetHdr). Any
// goroutine may call it.
func (d *Tun) Write(b []byte) (int, error) {
	if err := d.g.enter(); err != nil {
		return 0, err
	}
	defer d.g.leave()
	for {
		n, err := rawIO(unix.SYS_WRITE, d.fd, b)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
		case unix.EAGAIN:
			// The queue's send buffer is full (rare: a TAP's is unbounded
			// unless set). The set is this call's own: writers may wait
			// together.
			set := d.g.pollSet(d.fd, unix.POLLOUT)
			if err := d.g.wait(set[:]); err != nil {
				return 0, err
			}
		default:
			return 0, os.NewSyscallError("write", err)
		}
	}
}

// Close closes the queue, waking a blocked Read.
func (d *Tun) Close() error {
	d.g.shut(&d.fd)
	return nil
}

// Name returns the device name.
func (d *Tun) Name() string { return d.name }

// VNetHdr reports whether frames carry a virtio-net header.
func (d *Tun) VNetHdr() bool { return d.vnet }

// SetLinkUp sets the device's MTU and brings it up, as `ip link set NAME mtu
// MTU up` does. It needs CAP_NET_ADMIN; an unprivileged lvsd expects the
// administrator to have done it.
func SetLinkUp(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("link up %q: socket: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("link up %q: %w", name, err)
	}
	if mtu > 0 {
		ifr.SetUint32(uint32(mtu))
		if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
			return fmt.Errorf("set mtu %d on %q: %w", mtu, name, err)
		}
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of %q: %w", name, err)
	}
	fl := ifr.Uint16()
	if fl&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(fl | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %q up: %w", name, err)
	}
	return nil
}

// LinkIsUp reports whether the device is administratively up.
func LinkIsUp(name string) (bool, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false, err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return false, fmt.Errorf("get flags of %q: %w", name, err)
	}
	return ifr.Uint16()&unix.IFF_UP != 0, nil
}
