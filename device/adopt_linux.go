package device

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
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
