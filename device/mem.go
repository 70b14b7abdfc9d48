package device

import (
	"context"
	"errors"
	"sync"
)

var errMemClosed = errors.New("memory device closed")

// Mem is an in-memory packet device: a Link over it behaves as over a
// TAP or TUN, but frames come from Inject and go to Outbound. It lets tests
// (lvsd's and its users') drive the whole director, netstack included, with
// exact frames and no privileges. Frames carry no virtio-net header.
//
// Inject copies the frame; frames read from Outbound belong to the caller.
type Mem struct {
	in  chan []byte
	out chan []byte

	closeOnce sync.Once
	done      chan struct{}
}

// NewMem returns a device that queues up to depth frames each way.
func NewMem(depth int) *Mem {
	return &Mem{
		in:   make(chan []byte, depth),
		out:  make(chan []byte, depth),
		done: make(chan struct{}),
	}
}

// Inject queues a frame as if it arrived from the wire. It returns false
// when the device is closed.
func (m *Mem) Inject(frame []byte) bool {
	b := append([]byte(nil), frame...)
	select {
	case m.in <- b:
		return true
	case <-m.done:
		return false
	}
}

// Outbound returns the channel of frames lvsd wrote to the wire.
func (m *Mem) Outbound() <-chan []byte { return m.out }

// Next returns the next frame lvsd wrote, or an error when ctx ends first.
func (m *Mem) Next(ctx context.Context) ([]byte, error) {
	select {
	case b := <-m.out:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Read implements Device.
func (m *Mem) Read(b []byte) (int, error) {
	select {
	case f := <-m.in:
		return copy(b, f), nil
	case <-m.done:
		return 0, errMemClosed
	}
}

// Write implements Device. It blocks while Outbound is full, as a device
// queue exerts back-pressure.
func (m *Mem) Write(b []byte) (int, error) {
	f := append([]byte(nil), b...)
	select {
	case m.out <- f:
		return len(b), nil
	case <-m.done:
		return 0, errMemClosed
	}
}

// Close implements Device.
func (m *Mem) Close() error {
	m.closeOnce.Do(func() { close(m.done) })
	return nil
}
