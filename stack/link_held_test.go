package stack

import (
	"testing"
	"time"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
)

// TestLinkHeld: a link made with Held reads nothing when attached (the
// devices' previous owner still reads them) until Release; Replace(nil)
// then stops its readers (Wait returns) without a device, and Devices
// follows.
func TestLinkHeld(t *testing.T) {
	mem := device.NewMem(8)
	l := NewLink(LinkOptions{Devices: []device.Device{mem}, MTU: 1500, Held: true})
	l.Attach(nopDispatcher{})
	defer func() { l.Close(); l.Wait() }()
	mem.Inject(make([]byte, 60))
	time.Sleep(100 * time.Millisecond)
	if n := l.Stats().RxFrames; n != 0 {
		t.Fatalf("held link read %d frames", n)
	}
	if got := l.Devices(); len(got) != 1 || got[0] != mem {
		t.Errorf("Devices() = %v, want the one device", got)
	}
	l.Release()
	deadline := time.Now().Add(2 * time.Second)
	for l.Stats().RxFrames == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := l.Stats().RxFrames; n != 1 {
		t.Fatalf("after Release: %d frames read, want 1 (the one waiting)", n)
	}
	l.Release() // a second time: nothing more
	if err := l.Replace(nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { l.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("readers still running after Replace(nil)")
	}
	if got := l.Devices(); len(got) != 0 {
		t.Errorf("Devices() = %v after Replace(nil)", got)
	}
}

// stoppable is a device whose reading StopReading ends, as device.Tun's.
type stoppable struct {
	in      chan []byte
	out     chan []byte
	stopped chan struct{}
}

func (s *stoppable) Read(b []byte) (int, error) {
	select {
	case f := <-s.in:
		return copy(b, f), nil
	case <-s.stopped:
		return 0, device.ErrStopped
	}
}
func (s *stoppable) Write(b []byte) (int, error) {
	s.out <- append([]byte(nil), b...)
	return len(b), nil
}
func (s *stoppable) Close() error { return nil }
func (s *stoppable) StopReading() { close(s.stopped) }

// gateProc transmits every frame, after it was told to go on.
type gateProc struct{ in, goOn chan struct{} }

func (g gateProc) Process(*forward.Packet) forward.Verdict {
	g.in <- struct{}{}
	<-g.goOn
	return forward.Transmit
}

// TestLinkStopReading: StopReading returns only once the frame a reader
// was forwarding is written, on the device that stays open for writing,
// and the reader has stopped.
func TestLinkStopReading(t *testing.T) {
	dev := &stoppable{in: make(chan []byte, 1), out: make(chan []byte, 4), stopped: make(chan struct{})}
	g := gateProc{in: make(chan struct{}), goOn: make(chan struct{})}
	l := NewLink(LinkOptions{Devices: []device.Device{dev}, MTU: 1500, NewProcessor: func() Processor { return g }})
	l.Attach(nopDispatcher{})
	defer func() { l.Close(); l.Wait() }()
	dev.in <- []byte("a frame being forwarded")
	<-g.in // the reader is in the fast path
	stopped := make(chan struct{})
	go func() { l.StopReading(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("StopReading returned while a frame was being forwarded")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.goOn)
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("StopReading did not return")
	}
	select {
	case f := <-dev.out:
		if string(f) != "a frame being forwarded" {
			t.Errorf("wrote %q", f)
		}
	default:
		t.Error("the frame read before StopReading was not written")
	}
}
