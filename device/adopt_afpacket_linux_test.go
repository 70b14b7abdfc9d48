//go:build linux

package device_test

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/device/devicetest"
)

// TestAdoptAFPacket hands a packet device over as a graceful restart does:
// frames that arrive while no one reads wait in the sockets, the original
// closes, and the device adopted from the duplicates reads them, in order,
// with the virtio-net header setting of the original, and sends on the
// same interface.
func TestAdoptAFPacket(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{VNetHdr: true})
	orig := lab.Devs[0]
	files, err := orig.Dup()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("Dup: %d descriptors, want 3", len(files))
	}
	// Queued before the handoff, read after it.
	var frames [][]byte
	for i := range 4 {
		frames = append(frames, devicetest.Frame(devicetest.LoMAC, i, 80+i))
	}
	lab.Inject(t, frames...)
	time.Sleep(50 * time.Millisecond)
	closeWithin(t, orig, time.Second)

	var fds [3]int
	for i, f := range files {
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	d, err := device.AdoptAFPacket(fds[0], fds[1], fds[2])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if d.Name() != "lo" || !d.VNetHdr() {
		t.Errorf("adopted %q vnet %v, want lo with the virtio-net header", d.Name(), d.VNetHdr())
	}
	const vh = 10 // virtio-net header
	got := readFrames(t, d, len(frames), 5*time.Second)
	for i := range frames {
		if len(got[i]) < vh || !bytes.Equal(got[i][vh:], frames[i]) {
			t.Errorf("frame %d:\n got % x\nwant %d bytes of header, then % x", i, got[i], vh, frames[i])
		}
	}
	// And it sends: a frame written on the adopted device comes back in.
	out := append(make([]byte, vh), devicetest.Frame(devicetest.LoMAC, 9, 90)...)
	if _, err := d.Write(out); err != nil {
		t.Fatalf("write on the adopted device: %v", err)
	}
	back := readFrames(t, d, 1, 5*time.Second)
	if !bytes.Equal(back[0], out) {
		t.Errorf("sent frame came back as % x, want % x", back[0], out)
	}
}

// TestAdoptAFPacketNotPacket checks that descriptors of something else are
// refused and all three closed.
func TestAdoptAFPacketNotPacket(t *testing.T) {
	var readers []*os.File
	var fds [3]int
	for i := range fds {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, r)
		fd, err := unix.Dup(int(w.Fd()))
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	if _, err := device.AdoptAFPacket(fds[0], fds[1], fds[2]); err == nil {
		t.Fatal("pipes adopted as packet sockets")
	}
	for i, r := range readers {
		if n, err := r.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("pipe %d still has a writer: %d %v", i, n, err)
		}
	}
}

// TestStopReadingAFPacket: StopReading wakes a reader blocked in ReadBatch
// with ErrStopped (which IsClosed recognises) and later reads fail at
// once, while the device still sends; what arrives after it waits in the
// socket for the device adopted from a duplicate.
func TestStopReadingAFPacket(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	orig := lab.Devs[0]
	files, err := orig.Dup()
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		bufs, sizes := newBufs(device.AFPacketBatch, 2048)
		_, err := orig.ReadBatch(bufs, sizes)
		blocked <- err
	}()
	time.Sleep(50 * time.Millisecond)
	orig.StopReading()
	select {
	case err := <-blocked:
		if !errors.Is(err, device.ErrStopped) || !device.IsClosed(err) {
			t.Fatalf("blocked ReadBatch returned %v, want ErrStopped", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadBatch still blocked after StopReading")
	}
	// Sent by the stopped device, received by the adopted one.
	frame := devicetest.Frame(devicetest.LoMAC, 1, 64)
	if _, err := orig.Write(frame); err != nil {
		t.Fatalf("write after StopReading: %v", err)
	}
	if _, err := orig.Read(make([]byte, 2048)); !errors.Is(err, device.ErrStopped) {
		t.Errorf("read after StopReading: %v, want ErrStopped", err)
	}
	var fds [3]int
	for i, f := range files {
		fds[i], err = unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := device.AdoptAFPacket(fds[0], fds[1], fds[2])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	got := readFrames(t, d, 1, 5*time.Second)
	if !bytes.Equal(got[0], frame) {
		t.Errorf("adopted device read % x, want % x", got[0], frame)
	}
}
