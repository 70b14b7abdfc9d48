package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered the network namespace ns, and
// returns fn's error. A socket that fn creates stays in ns after Do returns.
//
// fn runs on a fresh goroutine locked to its thread; the thread returns to
// its original namespace afterwards on every path (fn returning, failing or
// panicking). If it cannot return, the goroutine exits still locked, so the
// Go runtime destroys the thread instead of reusing it. A panic in fn is
// raised again in the caller.
//
// fn must not start goroutines that expect to be in ns: only its own thread
// is.
func Do(ns NS, fn func() error) error {
	type result struct {
		err   error
		panic any
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var res result
		defer func() { ch <- res }()

		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			res.err = fmt.Errorf("enter netns %s: %w", ns, err)
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, string(ns)))
		if err != nil {
			res.err = fmt.Errorf("enter netns %s: %w", ns, err)
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			res.err = fmt.Errorf("enter netns %s: setns: %w", ns, err)
			runtime.UnlockOSThread()
			return
		}
		defer func() {
			if r := recover(); r != nil {
				res.panic = r
			}
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				// Leave the thread locked: it dies with this goroutine.
				if res.err == nil {
					res.err = fmt.Errorf("leave netns %s: setns: %w", ns, err)
				}
				return
			}
			runtime.UnlockOSThread()
		}()
		res.err = fn()
	}()
	res := <-ch
	if res.panic != nil {
		panic(res.panic)
	}
	return res.err
}

// DialContext returns a dial function whose sockets are created inside ns,
// for net/http.Transport.DialContext and the like. addr must be an IP
// address and port: a name would be resolved inside the caller's namespace
// by goroutines that are not.
func DialContext(ns NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialContextFrom(ns, netip.Addr{})
}

// DialContextFrom is DialContext with the local address src (one of ns's;
// the zero Addr lets the kernel choose).
func DialContextFrom(ns NS, src netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() error {
			var d net.Dialer
			if src.IsValid() {
				d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
			}
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// mknodTun makes a character device node for the TUN/TAP driver (10, 200)
// at path, read-write for everyone.
func mknodTun(path string) error {
	if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
		return fmt.Errorf("mknod %s: %w", path, err)
	}
	// The umask narrowed the mode given to mknod.
	if err := os.Chmod(path, 0o666); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

// backgroundAttr is the SysProcAttr of a lab's background process: its own
// process group (a Ctrl-C at the terminal reaches the program, which stops
// it in order), and SIGKILL when the program dies without its teardown
// (go test's timeout), instead of running on in a namespace that only the
// next lab deletes. The kernel drops the death signal when the process
// changes its uid, as setpriv does.
func backgroundAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// SendUDP sends one datagram with payload from ns to addr (an IP address
// and port) from a fresh socket, with the IPv4 socket option opt (at level
// IPPROTO_IP, such as IP_TTL or IP_MTU_DISCOVER) set to value first.
func SendUDP(ns NS, addr string, opt, value int, payload []byte) error {
	return Do(ns, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		rc, err := c.(*net.UDPConn).SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, opt, value)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt %d = %d: %w", opt, value, serr)
		}
		_, err = c.Write(payload)
		return err
	})
}
