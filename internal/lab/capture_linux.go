package lab

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Capture records the frames of one link inside a namespace through a
// packet socket (AF_PACKET): what tcpdump -i DEV would show, without
// needing tcpdump. Make one with Lab.Capture; it runs until Stop or the
// lab's teardown.
type Capture struct {
	fd   int
	stop atomic.Bool
	done chan struct{}

	mu     sync.Mutex
	frames []Frame // guarded by mu
	missed int     // guarded by mu: frames beyond captureMax
	err    error   // guarded by mu: the read error that ended the capture
}

// pollMillis is how often the capture's reader checks for Stop.
const pollMillis = 50

// Capture starts recording every frame on dev in ns, both directions, the
// first CaptureSnapLen bytes of each. The socket is bound before Capture
// returns: a frame sent afterwards is seen.
func (l *Lab) Capture(ns NS, dev string) *Capture {
	l.t.Helper()
	c := &Capture{fd: -1, done: make(chan struct{})}
	err := Do(ns, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		// Room for the bursts of a test: frames must not be dropped while
		// the reader is behind.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<20)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", dev, err)
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		l.t.Fatalf("lab: capture on %s in %s: %v", dev, ns, err)
	}
	go c.read()
	l.t.Cleanup(func() { c.Stop() })
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// read receives frames until Stop. It owns c.fd and closes it.
func (c *Capture) read() {
	defer close(c.done)
	defer unix.Close(c.fd)
	buf := make([]byte, 1<<16)
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
	for {
		// Drain what is queued before looking at stop: frames sent before
		// Stop are all kept.
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
		switch {
		case err == nil:
			c.add(buf, n, from)
			continue
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		default:
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		if c.stop.Load() {
			return
		}
		unix.Poll(fds, pollMillis)
	}
}

func (c *Capture) add(buf []byte, n int, from unix.Sockaddr) {
	f := Frame{Len: n, Data: append([]byte(nil), buf[:min(n, CaptureSnapLen, len(buf))]...)}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		f.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) >= captureMax {
		c.missed++
		return
	}
	c.frames = append(c.frames, f)
}

// Stop ends the capture (the frames queued in the socket are read first)
// and returns every frame seen, in order. Later calls return the same.
func (c *Capture) Stop() []Frame {
	c.stop.Store(true)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// Frames returns the frames seen so far, in order, while the capture goes
// on.
func (c *Capture) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Missed returns how many frames were not kept (over the capture's limit).
func (c *Capture) Missed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.missed
}

// Err returns the read error that ended the capture early, if any.
func (c *Capture) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
