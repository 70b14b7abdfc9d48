package takeover

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns the two ends of a connected Unix stream socket.
func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// TestHandoff passes two devices (pipes standing for a TAP's queues and a
// packet socket) and a table: the taker's descriptors reach the same open
// files, the giver stops only after the taker holds them, and the table
// arrives whole.
func TestHandoff(t *testing.T) {
	giver, taker := pair(t)
	var readers []*os.File
	var devs []Device
	for _, d := range []struct {
		name, kind string
		queues     int
	}{{"lan", "tap", 2}, {"wan", "packet", 3}} {
		dev := Device{Interface: d.name, Kind: d.kind, MAC: [6]byte{2, 0, 0, 0, 0, byte(len(d.name))}}
		for range d.queues {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			readers = append(readers, r)
			dev.Files = append(dev.Files, w)
		}
		devs = append(devs, dev)
	}
	table := bytes.Repeat([]byte("conntrack"), 10000)
	var held, stopped atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- Give(giver, devs, func() ([]byte, error) {
			if !held.Load() {
				t.Error("giver stopped before the taker held the devices")
			}
			stopped.Store(true)
			return table, nil
		})
	}()

	r, err := Take(taker)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Devices) != 2 || r.Devices[0].Interface != "lan" || r.Devices[0].Kind != "tap" || len(r.Devices[0].Files) != 2 ||
		r.Devices[1].Interface != "wan" || r.Devices[1].Kind != "packet" || len(r.Devices[1].Files) != 3 ||
		r.Devices[0].MAC != devs[0].MAC || r.Devices[1].MAC != devs[1].MAC {
		t.Fatalf("devices %+v", r.Devices)
	}
	if stopped.Load() {
		t.Error("giver stopped before Table")
	}
	held.Store(true)
	k := 0
	for _, d := range r.Devices {
		for _, f := range d.Files {
			msg := []byte{byte('a' + k)}
			if _, err := f.Write(msg); err != nil {
				t.Fatalf("write on received descriptor: %v", err)
			}
			got := make([]byte, 1)
			if _, err := io.ReadFull(readers[k], got); err != nil || got[0] != msg[0] {
				t.Errorf("queue %d: read %q (%v), want %q", k, got, err, msg)
			}
			f.Close()
			k++
		}
	}
	got, err := r.Table()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, table) {
		t.Errorf("table of %d bytes, want %d", len(got), len(table))
	}
	if err := r.Running(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Give: %v", err)
	}
}

// TestGiveTakerGone checks that the giver learns of a taker that goes away
// before holding the devices, without stopping.
func TestGiveTakerGone(t *testing.T) {
	giver, taker := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	done := make(chan error, 1)
	go func() {
		done <- Give(giver, []Device{{Interface: "lan", Kind: "tun", Files: []*os.File{w}}}, func() ([]byte, error) {
			t.Error("stop called")
			return nil, nil
		})
	}()
	rc, err := Take(taker)
	if err != nil {
		t.Fatal(err)
	}
	rc.Devices[0].Files[0].Close()
	taker.Close()
	if err := <-done; err == nil {
		t.Error("Give returned nil with the taker gone")
	}
}

// TestTakeBadManifest checks that a manifest that does not match its
// descriptors is refused and the descriptors closed.
func TestTakeBadManifest(t *testing.T) {
	tests := []struct {
		name string
		js   string
		nfd  int
	}{
		{"count", `{"version":1,"devices":[{"interface":"lan","kind":"tap","fds":2}]}`, 1},
		{"version", `{"version":2,"devices":[{"interface":"lan","kind":"tap","fds":1}]}`, 1},
		{"kind", `{"version":1,"devices":[{"interface":"lan","kind":"eth","fds":1}]}`, 1},
		{"name", `{"version":1,"devices":[{"interface":"","kind":"tap","fds":1}]}`, 1},
		{"json", `{"version":1,`, 1},
		{"packet", `{"version":1,"devices":[{"interface":"wan","kind":"packet","fds":2}]}`, 2},
		{"mac", `{"version":1,"devices":[{"interface":"lan","kind":"tap","mac":"AQID","fds":1}]}`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			giver, taker := pair(t)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			fds := make([]int, tt.nfd)
			for i := range fds {
				fds[i] = int(w.Fd())
			}
			msg := append([]byte{0, 0, 0, byte(len(tt.js))}, tt.js...)
			if _, _, err := giver.WriteMsgUnix(msg, unix.UnixRights(fds...), nil); err != nil {
				t.Fatal(err)
			}
			if _, err := Take(taker); !errors.Is(err, ErrProtocol) {
				t.Errorf("Take: %v, want ErrProtocol", err)
			}
			// Every received descriptor was closed: the pipe's only writer
			// left is w.
			w.Close()
			if _, err := r.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("pipe still has a writer: %v", err)
			}
		})
	}
}

// FuzzManifest checks that any manifest is refused with ErrProtocol or
// describes devices whose descriptors add up.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"devices":[{"interface":"lan","kind":"tap","fds":2}]}`), 2)
	f.Add([]byte(`{"version":1,"devices":[]}`), 0)
	f.Add([]byte(`{"version":1,"devices":[{"interface":"x","kind":"packet","fds":-1}]}`), 0)
	f.Fuzz(func(t *testing.T, b []byte, nfds int) {
		m, err := parseManifest(b, nfds)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		total := 0
		for _, d := range m.Devices {
			if d.FDs < 1 || d.Interface == "" {
				t.Fatalf("accepted device %+v", d)
			}
			total += d.FDs
		}
		if total != nfds {
			t.Fatalf("accepted %d descriptors for %d", total, nfds)
		}
	})
}

// TestListenDialAccept: a taker dials the giver's socket and is accepted;
// a stale socket file is replaced, a live one refused, and the socket is
// its owner's only.
func TestListenDialAccept(t *testing.T) {
	path := Path(t.TempDir() + "/lvsd.sock")
	// A stale socket: bound, never listened on again.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	defer ln.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	done := make(chan error, 1)
	go func() {
		c, err := Accept(ln)
		if err == nil {
			_, err = c.Write([]byte{'x'})
			c.Close()
		}
		done <- err
	}()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'x' {
		t.Errorf("read %q, %v", b, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Last: its probe connection waits in the listener's backlog.
	if _, err := Listen(path); !errors.Is(err, ErrInUse) {
		t.Errorf("second Listen: %v, want ErrInUse", err)
	}
	if _, err := Dial(path + ".none"); err == nil {
		t.Error("Dial of a missing socket: no error")
	}
}

// TestGiveTakerHangs checks that a taker that stops answering once the
// giver stopped cannot hold the giver: Give returns an error within
// RunningWait, so that the giver resumes.
func TestGiveTakerHangs(t *testing.T) {
	defer func(w time.Duration) { RunningWait = w }(RunningWait)
	RunningWait = 100 * time.Millisecond
	giver, taker := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	done := make(chan error, 1)
	go func() {
		done <- Give(giver, []Device{{Interface: "lan", Kind: "tap", Files: []*os.File{w}}}, func() ([]byte, error) {
			return []byte("state"), nil
		})
	}()
	rc, err := Take(taker)
	if err != nil {
		t.Fatal(err)
	}
	rc.Devices[0].Files[0].Close()
	if _, err := rc.Table(); err != nil {
		t.Fatal(err)
	}
	// The taker never says it runs.
	select {
	case err := <-done:
		if err == nil {
			t.Error("Give returned nil with no running ack")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Give still waiting 5 s after the taker hung")
	}
}
