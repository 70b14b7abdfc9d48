package stack

import (
	"fmt"
	"sync"
	"testing"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
)

// warmProc is scriptProc with a Warm that records, in one log with the
// Process calls, the frames each Warm was given.
type warmProc struct {
	scriptProc
	mu  sync.Mutex
	log []string
}

func (w *warmProc) Warm(bufs [][]byte, sizes []int, offset int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := fmt.Sprintf("warm %d:", len(bufs))
	for i := range bufs {
		s += fmt.Sprintf(" %x", bufs[i][offset:sizes[i]][14:16])
	}
	w.log = append(w.log, s)
}

func (w *warmProc) Process(p *forward.Packet) forward.Verdict {
	w.mu.Lock()
	w.log = append(w.log, fmt.Sprintf("process %x", p.Frame()[14:16]))
	w.mu.Unlock()
	return w.scriptProc.Process(p)
}

func (w *warmProc) calls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.log...)
}

// TestBatchWarm checks that the reader gives a batch of more than one frame
// to the fast path's Warm, whole and before processing any of it, with the
// frames where Process finds them (after the virtio-net header), and that a
// batch of one frame goes to Process without it.
func TestBatchWarm(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		t.Run(fmt.Sprintf("vnethdr=%v", vnet), func(t *testing.T) {
			dev := newFakeBatchDev(16)
			proc := &warmProc{}
			l := NewLink(LinkOptions{
				Devices: []device.Device{dev}, Ethernet: true, VNetHdr: vnet, MTU: 1500, MAC: [6]byte(dirMAC),
				NewProcessor: func() Processor { return proc },
			})
			l.Attach(&recDispatcher{})
			t.Cleanup(func() { l.Close(); l.Wait() })
			dev.waitReads(t, 1)
			frame := func(mark byte, seq int) []byte {
				f := testFrame(mark, seq)
				if vnet {
					f = append(make([]byte, forward.VNetHdrLen), f...)
				}
				return f
			}
			dev.inject(frame(markTransmit, 1), frame(markStack, 2), frame(markDrop, 3))
			dev.waitReads(t, 2)
			dev.inject(frame(markTransmit, 4))
			dev.waitReads(t, 3)
			want := []string{
				fmt.Sprintf("warm 3: %02x01 %02x02 %02x03", markTransmit, markStack, markDrop),
				fmt.Sprintf("process %02x01", markTransmit),
				fmt.Sprintf("process %02x02", markStack),
				fmt.Sprintf("process %02x03", markDrop),
				fmt.Sprintf("process %02x04", markTransmit),
			}
			got := proc.calls()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("calls:\n%q\nwant\n%q", got, want)
			}
		})
	}
}
