package stack

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lvsd/lvsd/capture"
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

// captureTap offers a link's frames to a capture (as the director's
// adapter does).
type captureTap struct{ c *capture.Capture }

func (t captureTap) Frame(out bool, frame []byte) { t.c.Frame(0, out, frame) }

// forwardLink is a link whose fast path transmits every IPv4 frame back,
// over a device.Mem, with no netstack.
func forwardLink(tb testing.TB) (*Link, *device.Mem) {
	dev := device.NewMem(1024)
	var n int
	link := NewLink(LinkOptions{
		Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC),
		NewProcessor: func() Processor { return countingProc{&n} },
	})
	st := New(Options{})
	if _, err := st.AddNIC(NICOptions{Name: "lvt0", Link: link, Ethernet: true,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	return link, dev
}

// pump injects n copies of frame and waits until the link wrote them all.
func pump(tb testing.TB, dev *device.Mem, frame []byte, n int) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			for !dev.Inject(frame) {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}()
	for got := 0; got < n; {
		select {
		case <-dev.Outbound():
			got++
		case <-time.After(10 * time.Second):
			tb.Fatalf("%d of %d frames forwarded", got, n)
		}
	}
	<-done
}

var udpFrame = func() []byte {
	f := append(append(append([]byte{}, dirMAC...), clientMAC...), 0x08, 0x00)
	ip := []byte{0x45, 0, 0, 33, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 10, 192, 0, 2, 1, 0x9c, 0x40, 0, 53, 0, 13, 0, 0, 'h', 'e', 'l', 'l', 'o'}
	return append(f, ip...)
}()

// TestLinkCaptureSlowReader: a capture whose reader never reads forwards
// every frame all the same; what the ring cannot hold is counted missed.
func TestLinkCaptureSlowReader(t *testing.T) {
	link, dev := forwardLink(t)
	c := capture.New([]capture.Iface{{Name: "lvt0", Ethernet: true}}, capture.Options{Slots: 64})
	link.SetTap(captureTap{c})
	const n = 5000
	pump(t, dev, udpFrame, n)
	// Each frame is offered twice: as read and as written.
	if got := c.Missed(); got != 2*n-64 {
		t.Errorf("missed %d, want %d (every offer the 64-slot ring could not hold)", got, 2*n-64)
	}
}

// traceTap is a capture tap that is also a Tracer whose filter matches
// nothing, as an armed `lvsd trace` waiting for its packets.
type traceTap struct {
	captureTap
	f capture.Filter
}

func (t traceTap) Trace(frame []byte) bool { return t.f.Match(frame, true) }
func (t traceTap) Processed(before, after []byte, v forward.Verdict, proc Processor) {
	panic("traced a frame the filter does not match")
}

// BenchmarkLinkCapture is a link's forwarding cost per frame (device.Mem,
// a fast path that transmits every frame): no capture, a capture whose
// filter rejects every frame, a capture of every frame whose reader never
// reads (the ring full: every frame is missed), and a capture and a trace
// armed that match nothing.
func BenchmarkLinkCapture(b *testing.B) {
	for _, bc := range []struct{ name, filter string }{{"off", ""}, {"nomatch", "tcp"}, {"slowreader", "udp"}, {"trace-nomatch", "tcp"}} {
		b.Run(bc.name, func(b *testing.B) {
			link, dev := forwardLink(b)
			if bc.name != "off" {
				f, err := capture.ParseFilter(bc.filter)
				if err != nil {
					b.Fatal(err)
				}
				c := captureTap{capture.New([]capture.Iface{{Name: "lvt0", Ethernet: true}}, capture.Options{Filter: f, Slots: 64})}
				if bc.name == "trace-nomatch" {
					link.SetTap(traceTap{c, f})
				} else {
					link.SetTap(c)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			pump(b, dev, udpFrame, b.N)
		})
	}
}
