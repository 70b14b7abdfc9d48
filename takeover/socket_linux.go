package takeover

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrInUse is Listen's error when another process serves the path: this
// lvsd must not run beside it (its control socket says the same).
var ErrInUse = errors.New("another lvsd serves the handoff socket")

// Listen makes the giver's handoff socket at path, readable and writable
// by its owner only (mode 0600). A stale socket (left by an lvsd killed
// with SIGKILL) is replaced; a live one is ErrInUse; any other file in the
// way is an error.
func Listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("handoff socket %s: a file that is not a socket is in the way", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("handoff socket %s: %w", path, ErrInUse)
		}
		os.Remove(path)
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	return ln, nil
}

// Accept waits for a taker on ln and returns its connection. Only a
// process of the giver's own user, or root, may take over (SO_PEERCRED):
// the socket's mode says so already, and this holds even if the mode was
// changed. Others are refused (closed) and Accept waits on.
func Accept(ln *net.UnixListener) (*net.UnixConn, error) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if uid, ok := peerUID(c); ok && (uid == 0 || uid == uint32(os.Geteuid())) {
			return c, nil
		}
		c.Close()
	}
}

// Dial connects a taker to the giver's handoff socket at path.
func Dial(path string) (*net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("no running lvsd to take over at %s: %w", path, err)
	}
	return c, nil
}

// peerUID returns the user of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return 0, false
	}
	return cred.Uid, true
}
