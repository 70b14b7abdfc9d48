package device

import (
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAdoptTun opens a TAP in a network namespace of its own, adopts a
// duplicate of its descriptor as another process would after a handoff,
// and checks that the adopted queue has the device's name and flags and
// alone keeps the (non-persistent) device alive once the original is
// closed.
func TestAdoptTun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace and a TAP)")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread enters a new network namespace and is never unlocked:
		// it ends with this goroutine, and the namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		const name = "lvttake0"
		orig, err := OpenTun(TunOptions{Name: name, TAP: true, VNetHdr: true})
		if err != nil {
			t.Errorf("open: %v", err)
			return
		}
		f, err := orig[0].Dup()
		if err != nil {
			t.Errorf("dup: %v", err)
			return
		}
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			t.Errorf("dup: %v", err)
			return
		}
		d, err := AdoptTun(fd)
		if err != nil {
			t.Errorf("adopt: %v", err)
			return
		}
		if d.Name() != name || !d.VNetHdr() || !d.l2 || d.multi {
			t.Errorf("adopted %q vnet %v l2 %v multi %v", d.Name(), d.VNetHdr(), d.l2, d.multi)
		}
		orig[0].Close()
		if _, err := net.InterfaceByName(name); err != nil {
			t.Errorf("device gone with the original closed, the adopted queue still open: %v", err)
		}
		d.Close()
		if _, err := net.InterfaceByName(name); err == nil {
			t.Error("device still there with every queue closed")
		}
	}()
	<-done
}

// TestAdoptTunNotTun checks that a descriptor of something else is refused
// and closed.
func TestAdoptTunNotTun(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := unix.Dup(int(w.Fd()))
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AdoptTun(fd); err == nil {
		t.Fatal("a pipe adopted as a tun")
	}
	// fd was closed: the pipe has no writer left.
	if n, err := r.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("pipe still written to: %d %v", n, err)
	}
}

// TestStopReadingTun: StopReading wakes a reader blocked in Read with
// ErrStopped; the queue still writes.
func TestStopReadingTun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace and a TAP)")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: see TestAdoptTun
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		qs, err := OpenTun(TunOptions{Name: "lvtstop0", TAP: true})
		if err != nil {
			t.Errorf("open: %v", err)
			return
		}
		d := qs[0]
		defer d.Close()
		blocked := make(chan error, 1)
		go func() {
			_, err := d.Read(make([]byte, 2048))
			blocked <- err
		}()
		time.Sleep(50 * time.Millisecond)
		d.StopReading()
		select {
		case err := <-blocked:
			if !errors.Is(err, ErrStopped) || !IsClosed(err) {
				t.Errorf("blocked Read returned %v, want ErrStopped", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("Read still blocked after StopReading")
			return
		}
		if _, err := d.Read(make([]byte, 2048)); !errors.Is(err, ErrStopped) {
			t.Errorf("read after StopReading: %v", err)
		}
		// The TAP is down: the kernel takes the frame and drops it.
		frame := make([]byte, 60)
		frame[0] = 0xff
		if _, err := d.Write(frame); err != nil && !errors.Is(err, unix.EIO) {
			t.Errorf("write after StopReading: %v", err)
		}
	}()
	<-done
}
