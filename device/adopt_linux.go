package device

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
)

// AdoptTun returns a Tun for fd, a queue of a TAP or TUN device that
// another process opened and passed on (a graceful restart's handoff,
// package takeover). The device's name and its flags (TAP or TUN, virtio-net
// header, multi-queue) are read from the descriptor (TUNGETIFF), since they
// were fixed when it was attached; the descriptor is made non-blocking and
// close-on-exec. The Tun owns fd from then on, also on error (fd is closed).
//
// The device stays as the other process set it up (offload, TX filter,
// MTU, bridge): the open file is the same one.
func AdoptTun(fd int) (*Tun, error) {
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return nil, fmt.Errorf("adopt tun descriptor %d (TUNGETIFF): %w", fd, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("adopt tun %q: %w", ifr.Name(), err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("adopt tun %q: %w", ifr.Name(), err)
	}
	flags := ifr.Uint16()
	d := &Tun{
		fd: fd, name: ifr.Name(),
		vnet:  flags&unix.IFF_VNET_HDR != 0,
		l2:    flags&unix.IFF_TAP != 0,
		multi: flags&unix.IFF_MULTI_QUEUE != 0,
	}
	if err := d.g.init(); err != nil {
		return nil, err
	}
	d.rpoll = d.g.pollSet(fd, unix.POLLIN)
	ok = true
	return d, nil
}

// Dup returns a new descriptor of the queue's open file, for a handoff
// (takeover.Device.Files): the caller owns it and closes it. The Tun keeps
// its own.
func (d *Tun) Dup() (*os.File, error) {
	if err := d.g.enter(); err != nil {
		return nil, err
	}
	defer d.g.leave()
	fd, err := unix.FcntlInt(uintptr(d.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup tun %q: %w", d.name, err)
	}
	return os.NewFile(uintptr(fd), d.name), nil
}

// AdoptAFPacket returns an AFPacket for the three sockets of one that
// another process opened and passed on (AFPacket.Dup, in that order: the
// established receive socket, the SYN receive socket, the send socket).
// The sockets are the same ones, so they keep everything set on them: the
// interface they are bound to, their steering filters, their fanout group,
// their buffer sizes and the frames queued in them while no one read. The
// interface's name and whether frames carry a virtio-net header are read
// from the sockets. The AFPacket owns the three descriptors from then on,
// also on error (they are closed).
func AdoptAFPacket(rx, syn, tx int) (*AFPacket, error) {
	fds := []int{rx, syn, tx}
	ok := false
	defer func() {
		if !ok {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}()
	ifindex := 0
	for i, fd := range fds {
		dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil || dom != unix.AF_PACKET {
			return nil, fmt.Errorf("adopt packet socket: descriptor %d is not an AF_PACKET socket (domain %d, %v)", fd, dom, err)
		}
		sa, err := unix.Getsockname(fd)
		ll, isLL := sa.(*unix.SockaddrLinklayer)
		if err != nil || !isLL || ll.Ifindex == 0 {
			return nil, fmt.Errorf("adopt packet socket: descriptor %d is not bound to an interface (%v)", fd, err)
		}
		if i == 0 {
			ifindex = ll.Ifindex
		} else if ll.Ifindex != ifindex {
			return nil, fmt.Errorf("adopt packet socket: sockets bound to interfaces %d and %d", ifindex, ll.Ifindex)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return nil, fmt.Errorf("adopt packet socket: %w", err)
		}
	}
	ifi, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("adopt packet socket: interface %d: %w", ifindex, err)
	}
	vnet, err := unix.GetsockoptInt(rx, unix.SOL_PACKET, unix.PACKET_VNET_HDR)
	if err != nil {
		return nil, fmt.Errorf("adopt packet socket %q: PACKET_VNET_HDR: %w", ifi.Name, err)
	}
	// The receive sockets are read without blocking (see fdGuard), the
	// send socket blocks (bounded by its SO_SNDTIMEO): as openPacketSocket
	// left them, set again in case the giver was another build.
	for _, fd := range fds[:2] {
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("adopt packet socket %q: %w", ifi.Name, err)
		}
	}
	if err := unix.SetNonblock(tx, false); err != nil {
		return nil, fmt.Errorf("adopt packet socket %q: %w", ifi.Name, err)
	}
	d := &AFPacket{name: ifi.Name, vnet: vnet != 0, rxfd: rx, synfd: syn, txfd: tx}
	if err := d.g.init(); err != nil {
		return nil, err
	}
	set := d.g.pollSet(d.rxfd, unix.POLLIN)
	d.rpoll = [3]rawfile.PollEvent{set[0], set[1], {FD: int32(d.synfd), Events: unix.POLLIN}}
	ok = true
	return d, nil
}

// VNetHdr reports whether frames carry a virtio-net header.
func (d *AFPacket) VNetHdr() bool { return d.vnet }

// Dup returns new descriptors of the device's three sockets, for a
// handoff (takeover.Device.Files; AdoptAFPacket takes them in this order):
// the caller owns them and closes them. The AFPacket keeps its own.
func (d *AFPacket) Dup() ([]*os.File, error) {
	if err := d.g.enter(); err != nil {
		return nil, err
	}
	defer d.g.leave()
	var files []*os.File
	for _, fd := range []int{d.rxfd, d.synfd, d.txfd} {
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("dup packet socket %q: %w", d.name, err)
		}
		files = append(files, os.NewFile(uintptr(nfd), d.name))
	}
	return files, nil
}

// stopReading makes the reads of the guarded device fail with ErrStopped
// from now on, waking a reader asleep in wait; writes go on. The eventfd
// stays signalled: a later wait returns at once (with ErrStopped).
func (g *fdGuard) stopReading() {
	if g.stopped.Swap(true) || g.closed.Load() {
		return
	}
	if err := g.enter(); err != nil {
		return
	}
	defer g.leave()
	var one [8]byte
	one[0] = 1 // the eventfd counter, native (little-endian) order
	unix.Write(g.wake, one[:])
}

// StopReading ends the reading of the queue for good, as a graceful
// restart's giver needs: a Read under way returns ErrStopped once it has
// no frame to return (one that has a frame returns it), and every later
// Read at once; writes go on, so that a frame read before is still
// forwarded. The frames that arrive from then on stay queued in the
// device for whoever reads it next (the taker, with its duplicate of the
// descriptor).
func (d *Tun) StopReading() { d.g.stopReading() }

// StopReading is Tun.StopReading for a packet device's receive sockets:
// ReadBatch returns ErrStopped, Write and WriteBatch go on.
func (d *AFPacket) StopReading() { d.g.stopReading() }
