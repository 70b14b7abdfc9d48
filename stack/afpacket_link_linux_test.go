//go:build linux

package stack

import (
	"bytes"
	"testing"
	"time"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/device/devicetest"
	"github.com/lvsd/lvsd/forward"
)

// loopProc forwards each frame once: it marks a frame it has not seen
// (frame[14] == 'T') as forwarded and transmits it; on lo the frame comes
// back, and the forwarded copy is reported and dropped.
type loopProc struct{ back chan<- []byte }

func (p loopProc) Process(pk *forward.Packet) forward.Verdict {
	f := pk.Frame()
	if len(f) < 16 || f[12] != 0x88 || f[13] != 0xb5 {
		return forward.Drop
	}
	switch f[14] {
	case 'T':
		f[14] = 'F'
		return forward.Transmit
	case 'F':
		p.back <- bytes.Clone(f)
	}
	return forward.Drop
}

// TestPacketLink runs a Link over an AFPacket: what the fast path
// forwards leaves on lo and comes back in order, and Close stops the reader.
func TestPacketLink(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	d := lab.Devs[0]
	back := make(chan []byte, 64)
	l := NewLink(LinkOptions{
		Devices: []device.Device{d}, Ethernet: true, MTU: 1500, MAC: [6]byte(devicetest.LoMAC),
		NewProcessor: func() Processor { return loopProc{back} },
	})
	l.Attach(nopDispatcher{})
	var want [][]byte
	for i := range 16 {
		f := devicetest.Frame(devicetest.LoMAC, i, 64)
		f[14] = 'T'
		lab.Inject(t, f)
		f = bytes.Clone(f)
		f[14] = 'F'
		want = append(want, f)
	}
	timeout := time.After(5 * time.Second)
	for i := range want {
		select {
		case f := <-back:
			if !bytes.Equal(f, want[i]) {
				t.Errorf("forwarded frame %d:\n got % x\nwant % x", i, f, want[i])
			}
		case <-timeout:
			t.Fatalf("%d of %d forwarded frames came back", i, len(want))
		}
	}
	stopped := make(chan struct{})
	go func() { l.Close(); l.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Second):
		t.Fatal("Link reader still running 1 s after Close")
	}
	s := l.Stats()
	if s.TxFrames != 16 || s.TxErrors != 0 || s.RxErrors != 0 || s.RxFrames != 32 {
		t.Errorf("stats %+v; want RxFrames=32 TxFrames=16 and no errors", s)
	}
	select {
	case f := <-back:
		t.Errorf("a frame came back twice: % x", f)
	default:
	}
}
