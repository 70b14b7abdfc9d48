package stack

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
)

// recordTap keeps copies of the frames a link offers it.
type recordTap struct {
	mu     sync.Mutex
	in     [][]byte
	out    [][]byte
	frames chan struct{}
}

func (r *recordTap) Frame(out bool, frame []byte) {
	r.mu.Lock()
	c := bytes.Clone(frame)
	if out {
		r.out = append(r.out, c)
	} else {
		r.in = append(r.in, c)
	}
	r.mu.Unlock()
	r.frames <- struct{}{}
}

// TestLinkTap checks that an armed tap sees each frame as read (before
// the fast path) and each frame written (the emitted ones and the
// Transmit verdict's, after the rewrite, without virtio-net header), and
// that a disarmed one sees nothing more.
func TestLinkTap(t *testing.T) {
	dev := device.NewMem(16)
	st := New(Options{})
	link := NewLink(LinkOptions{
		Devices: []device.Device{dev}, Ethernet: true, VNetHdr: true, MTU: 1500, MAC: [6]byte(dirMAC),
		NewProcessor: func() Processor { return emitProc{} },
	})
	if _, err := st.AddNIC(NICOptions{Name: "lvt0", Link: link, Ethernet: true,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	tap := &recordTap{frames: make(chan struct{}, 16)}
	link.SetTap(tap)

	frame := append(append(append([]byte{}, dirMAC...), clientMAC...), 0x08, 0x00, 0x45, 0xaa, 0xbb)
	dev.Inject(append(make([]byte, forward.VNetHdrLen), frame...))
	for i := range 4 {
		select {
		case <-tap.frames:
		case <-time.After(5 * time.Second):
			t.Fatalf("the tap got %d frames, want 4", i)
		}
	}
	tap.mu.Lock()
	if len(tap.in) != 1 || !bytes.Equal(tap.in[0], frame) {
		t.Errorf("frames in: %x, want the frame as read %x", tap.in, frame)
	}
	var firsts []byte
	for _, f := range tap.out {
		firsts = append(firsts, f[0])
		if !bytes.Equal(f[1:], frame[1:]) {
			t.Errorf("frame out %x, want the rewritten frame without virtio-net header", f)
		}
	}
	if !bytes.Equal(firsts, []byte{1, 2, 3}) {
		t.Errorf("frames out in order %v, want the emitted 1, 2 then the transmitted 3", firsts)
	}
	tap.mu.Unlock()

	link.SetTap(nil)
	dev.Inject(append(make([]byte, forward.VNetHdrLen), frame...))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 6 { // the first frame's three and this one's
		if _, err := dev.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-tap.frames:
		t.Errorf("a disarmed tap got a frame")
	case <-time.After(50 * time.Millisecond):
	}
}
