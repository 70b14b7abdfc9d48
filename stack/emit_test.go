package stack

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
)

// emitProc stands for a fast path that turns a frame into three: it emits
// the first two through Packet.Emit, each built in place and overwritten by
// the next, and transmits the third.
type emitProc struct{}

func (emitProc) Process(p *forward.Packet) forward.Verdict {
	if p.Emit == nil {
		return forward.Drop
	}
	f := p.Frame()
	for i := byte(1); i <= 2; i++ {
		f[0] = i
		if err := p.Emit.Emit(p.Buf, p.Off, p.Len); err != nil {
			return forward.Drop
		}
	}
	f[0] = 3
	p.VNet = forward.VNetHdr{}
	return forward.Transmit
}

// TestLinkEmit checks that a reader writes the frames a fast path emits, in
// order and before the Transmit verdict's own, each with an empty
// virtio-net header, on a link that carries one.
func TestLinkEmit(t *testing.T) {
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

	frame := append(append(append([]byte{}, dirMAC...), clientMAC...), 0x08, 0x00, 0x45, 0xaa, 0xbb)
	// A non-empty virtio header in front, which the emitted frames must not
	// inherit.
	in := append([]byte{forward.VirtioNetHdrFNeedsCsum, 0, 0, 0, 0, 0, 14, 0, 16, 0}, frame...)
	dev.Inject(in)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := byte(1); i <= 3; {
		b, err := dev.Next(ctx)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(b) != forward.VNetHdrLen+len(frame) || !bytes.Equal(b[forward.VNetHdrLen+1:], frame[1:]) {
			continue // the netstack's own
		}
		want := append(make([]byte, forward.VNetHdrLen), frame...)
		want[forward.VNetHdrLen] = i
		if !bytes.Equal(b, want) {
			t.Errorf("frame %d:\n got % x\nwant % x", i, b, want)
		}
		i++
	}
	// The writer counts a frame once the device took it, which is after a
	// reader of the device can see it: wait for the count to catch up
	// (until the deadline) before checking it is exactly 3.
	n := link.Stats().TxFrames
	for n < 3 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
		n = link.Stats().TxFrames
	}
	if n != 3 {
		t.Errorf("TxFrames %d, want 3", n)
	}
}
