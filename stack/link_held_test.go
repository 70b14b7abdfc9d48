package stack

import (
	"testing"
	"time"

	"github.com/lvsd/lvsd/device"
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
