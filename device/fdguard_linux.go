package device

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
)

// fdGuard is how lvsd's devices wait for I/O without the Go poller. A
// descriptor registered with the poller (epoll) wakes it for every frame
// received and, on a TAP or packet socket, for every frame sent that the
// kernel frees; each wake-up is a thread switch, which costs more than the
// frame. So a device's descriptor is non-blocking and in no epoll set: its
// reader tries the system call first and only when it would block sleeps in
// poll(2), on the descriptor and on an eventfd that Close signals.
//
// The sleep gives up the goroutine's processor (P) on entry, as gVisor's
// fdbased endpoint does (rawfile.BlockingPoll, the runtime's
// entersyscallblock), instead of keeping it in the system-call state as
// an ordinary system call does: while a P is in that state the runtime's
// sysmon thread, which sleeps deeply only when every P is idle, wakes every
// 20 µs to 10 ms to look at it and takes it away. That cost 16% of lvsd's
// CPU when it only ran health checks (docs/health.md); forwarding does not
// lose by it (docs/performance.md).
//
// fdGuard also keeps the descriptors open while system calls use them: I/O
// holds mu for reading (enter, leave), Close for writing while it closes
// them, so a descriptor number is never reused under a call.
type fdGuard struct {
	mu     sync.RWMutex
	closed atomic.Bool
	// stopped is set by stopReading: reads fail with ErrStopped, writes
	// go on (a graceful restart's giver, see adopt_linux.go).
	stopped atomic.Bool
	wake    int // eventfd; -1 before init and after Close
}

func (g *fdGuard) init() error {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		g.wake = -1
		return os.NewSyscallError("eventfd", err)
	}
	g.wake = fd
	return nil
}

// pollSet returns the poll(2) set of fd for events plus the eventfd.
func (g *fdGuard) pollSet(fd int, events int16) [2]rawfile.PollEvent {
	return [2]rawfile.PollEvent{{FD: int32(fd), Events: events}, {FD: int32(g.wake), Events: unix.POLLIN}}
}

// enter starts an I/O call: the descriptors stay open until leave. It
// returns os.ErrClosed once Close began.
func (g *fdGuard) enter() error {
	g.mu.RLock()
	if g.closed.Load() {
		g.mu.RUnlock()
		return os.ErrClosed
	}
	return nil
}

func (g *fdGuard) leave() { g.mu.RUnlock() }

// wait sleeps, between enter and leave, until set[0] is ready or Close.
// set is the caller's (poll writes into it).
func (g *fdGuard) wait(set []rawfile.PollEvent) error {
	for {
		_, errno := rawfile.BlockingPoll(&set[0], len(set), nil)
		if g.closed.Load() {
			return os.ErrClosed
		}
		if g.stopped.Load() {
			return ErrStopped
		}
		if errno == 0 {
			return nil
		}
		if errno != unix.EINTR {
			return os.NewSyscallError("ppoll", errno)
		}
	}
}

// shut wakes the sleepers, waits for the calls under way to leave, and
// closes fds and the eventfd. Only the first call does anything.
func (g *fdGuard) shut(fds ...*int) {
	if g.closed.Swap(true) {
		return
	}
	if g.wake >= 0 {
		var one [8]byte
		one[0] = 1 // the eventfd counter, native (little-endian) order
		unix.Write(g.wake, one[:])
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, fd := range append(fds, &g.wake) {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
