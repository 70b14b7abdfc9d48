package stack

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
)

// startSenderLink is startBatchLink with a sender per queue.
func startSenderLink(t *testing.T, dev *fakeBatchDev, vnet bool) (*Link, *recDispatcher) {
	t.Helper()
	l := NewLink(LinkOptions{
		Devices: []device.Device{dev}, Ethernet: true, VNetHdr: vnet, MTU: 1500, MAC: [6]byte(dirMAC),
		NewProcessor: func() Processor { return scriptProc{} }, Sender: true,
	})
	disp := &recDispatcher{}
	l.Attach(disp)
	t.Cleanup(func() { l.Close(); l.Wait() })
	dev.waitReads(t, 1)
	return l, disp
}

// waitWire waits until n frames were written, whatever the calls.
func (d *fakeBatchDev) waitWire(t *testing.T, n int) {
	t.Helper()
	d.waitFor(t, "frames written", func() int { return len(wire(d.log)) }, n)
}

// waitFor waits, under d.mu, until count() reaches n.
func (d *fakeBatchDev) waitFor(t *testing.T, what string, count func() int, n int) {
	t.Helper()
	expired := false
	timer := time.AfterFunc(5*time.Second, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		expired = true
		d.changed.Broadcast()
	})
	defer timer.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for count() < n {
		if expired {
			t.Fatalf("%s: %d in 5 s, want %d", what, count(), n)
		}
		d.changed.Wait()
	}
}

func (d *fakeBatchDev) setStalled(v bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stalled = v
	d.changed.Broadcast()
}

// TestSenderKeepsOrder: with a sender, every frame the fast path forwards or
// emits reaches the wire once and in order, across many batches of mixed
// verdicts and bursts of emitted frames that overflow the sender's slots and
// arenas, while the device's writes stall now and then (so that the ring
// fills and the reader waits). Run it with -race: the reader and the sender
// share the slots and the buffers.
func TestSenderKeepsOrder(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "vnethdr"}[vnet], func(t *testing.T) {
			testSenderKeepsOrder(t, vnet)
		})
	}
}

func testSenderKeepsOrder(t *testing.T, vnet bool) {
	const batches, size = 60, 16
	dev := newFakeBatchDev(size)
	l, disp := startSenderLink(t, dev, vnet)
	hdr := func(f []byte) []byte {
		if !vnet {
			return f
		}
		return append(make([]byte, forward.VNetHdrLen), f...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	marks := []byte{markTransmit, markTransmit, markTransmit, markStack, markDrop, markEmit, markBurst}
	var want, wantStack [][]byte
	rx := 0

	// Stall the device's writes on and off while the batches go through.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				dev.setStalled(false)
				return
			case <-time.After(time.Duration(200+rng2(i)%800) * time.Microsecond):
				dev.setStalled(i%2 == 0)
			}
		}
	}()

	seq := 0
	for b := range batches {
		var in [][]byte
		for range 1 + rng.IntN(size) {
			m := marks[rng.IntN(len(marks))]
			n := 60 + rng.IntN(1500)
			if m == markBurst {
				n = 300 + rng.IntN(1200) // longer than the burst's shrinking
			}
			f := testFrameN(m, seq, n)
			seq++
			in = append(in, hdr(f))
			rx++
			switch m {
			case markTransmit:
				want = append(want, hdr(f))
			case markStack:
				wantStack = append(wantStack, f)
			case markEmit:
				x := bytes.Clone(f)
				x[14] = markEmitted
				want = append(want, hdr(x), hdr(f))
			case markBurst:
				for j := range burstLen {
					x := bytes.Clone(f[:len(f)-burstShrink*j])
					x[14], x[16] = markBursted, byte(j)
					want = append(want, hdr(x))
				}
				want = append(want, hdr(f))
			}
		}
		dev.inject(in...)
		if b%7 == 0 {
			// Sometimes wait for the reader, sometimes let batches queue.
			dev.waitReads(t, b+2)
		}
	}
	close(stop)
	wg.Wait()
	dev.waitWire(t, len(want))
	dev.waitReads(t, batches+1)

	ops := dev.writes()
	diffFrames(t, "wire", wire(ops), want)
	for _, op := range ops {
		if !op.batch {
			t.Errorf("a plain Write; want only WriteBatch calls (emitted frames go with the batch)")
			break
		}
	}
	diffFrames(t, "netstack", disp.delivered(), wantStack)
	s := l.Stats()
	if s.RxFrames != uint64(rx) || s.TxFrames != uint64(len(want)) || s.TxErrors != 0 || s.RxErrors != 0 {
		t.Errorf("stats %+v; want RxFrames=%d TxFrames=%d and no errors", s, rx, len(want))
	}
	dev.mu.Lock()
	stalls := dev.stalls
	dev.mu.Unlock()
	t.Logf("%d frames in %d write calls, %d of them stalled", len(want), len(ops), stalls)
}

// rng2 is a cheap deterministic jitter for the staller (its own goroutine
// must not share the test's rand.Rand).
func rng2(i int) int { return (i*7919 + 13) % 1000 }

// TestSenderBackPressure: while the device's writes hang, the reader reads
// no more batches than its buffer sets hold, and none of their frames is
// overwritten: when the writes resume, all of them go out, in order.
func TestSenderBackPressure(t *testing.T) {
	const batches = 6
	dev := newFakeBatchDev(8)
	dev.setStalled(true)
	startSenderLink(t, dev, false)
	var want [][]byte
	for b := range batches {
		var in [][]byte
		for i := range 8 {
			f := testFrame(markTransmit, 8*b+i)
			in = append(in, f)
			want = append(want, f)
		}
		dev.inject(in...)
	}
	dev.waitFor(t, "stalled writes", func() int { return dev.stalls }, 1)
	dev.waitReads(t, sendSets)
	time.Sleep(50 * time.Millisecond) // room for a reader that would not wait
	dev.mu.Lock()
	reads, stalls := dev.reads, dev.stalls
	dev.mu.Unlock()
	if reads != sendSets || stalls != 1 {
		t.Errorf("while the first write hangs: %d ReadBatch calls and %d writes, want %d and 1", reads, stalls, sendSets)
	}
	dev.setStalled(false)
	dev.waitWire(t, len(want))
	diffFrames(t, "wire", wire(dev.writes()), want)
}

// TestSenderCloseWhileBusy: closing a link whose sender hangs in a write
// with batches queued behind it ends the reader and the sender (Wait
// returns) and leaves no goroutine behind.
func TestSenderCloseWhileBusy(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 5 {
		dev := newFakeBatchDev(8)
		dev.setStalled(true)
		l := NewLink(LinkOptions{
			Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC),
			NewProcessor: func() Processor { return scriptProc{} }, Sender: true,
		})
		l.Attach(&recDispatcher{})
		for b := range 5 {
			dev.inject(testFrame(markTransmit, b), testFrameN(markBurst, b, 400), testFrame(markTransmit, b+1))
		}
		dev.waitFor(t, "stalled writes", func() int { return dev.stalls }, 1)
		done := make(chan struct{})
		go func() { l.Close(); l.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Close and Wait did not return in 5 s with the sender busy")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestSenderStopReading: StopReading returns only after the sender wrote
// every frame read before (a graceful restart's giver hands over devices
// with nothing of its own left to send).
func TestSenderStopReading(t *testing.T) {
	dev := &stopBatchDev{fakeBatchDev: newFakeBatchDev(8)}
	dev.setStalled(true)
	l := NewLink(LinkOptions{
		Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC),
		NewProcessor: func() Processor { return scriptProc{} }, Sender: true,
	})
	l.Attach(&recDispatcher{})
	t.Cleanup(func() { l.Close(); l.Wait() })
	// Two batches: as many as the reader holds while the first write
	// hangs.
	want := [][]byte{testFrame(markTransmit, 0), testFrame(markTransmit, 1), testFrame(markTransmit, 2)}
	dev.inject(want[:2]...)
	dev.inject(want[2])
	dev.waitFor(t, "stalled writes", func() int { return dev.stalls }, 1)
	dev.waitFor(t, "batches read", func() int { return 2 - len(dev.in) }, 2)
	stopped := make(chan struct{})
	go func() { l.StopReading(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("StopReading returned while the sender still had frames to write")
	case <-time.After(50 * time.Millisecond):
	}
	dev.setStalled(false)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("StopReading did not return in 5 s")
	}
	diffFrames(t, "wire", wire(dev.writes()), want)
}

// stopBatchDev is a fakeBatchDev whose StopReading ends its reads (with
// device.ErrStopped) and keeps its writes.
type stopBatchDev struct{ *fakeBatchDev }

func (d *stopBatchDev) StopReading() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	d.changed.Broadcast()
}

// tryDev is a one-frame device with TryRead, as device.Tun has: frames
// queued with inject are read one per call, and every call is logged.
type tryDev struct {
	mu     sync.Mutex
	cond   *sync.Cond
	in     [][]byte
	reads  []string // "Read" or "TryRead", for each call that returned a frame
	out    [][]byte
	closed bool
}

func newTryDev() *tryDev { d := &tryDev{}; d.cond = sync.NewCond(&d.mu); return d }

func (d *tryDev) inject(fs ...[]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.in = append(d.in, fs...)
	d.cond.Broadcast()
}

func (d *tryDev) take(b []byte, kind string) int {
	n := copy(b, d.in[0])
	d.in = d.in[1:]
	d.reads = append(d.reads, kind)
	return n
}

func (d *tryDev) Read(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.in) == 0 && !d.closed {
		d.cond.Wait()
	}
	if d.closed {
		return 0, os.ErrClosed
	}
	return d.take(b, "Read"), nil
}

func (d *tryDev) TryRead(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	if len(d.in) == 0 {
		return 0, nil
	}
	return d.take(b, "TryRead"), nil
}

func (d *tryDev) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	d.out = append(d.out, bytes.Clone(b))
	d.cond.Broadcast()
	return len(b), nil
}

func (d *tryDev) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.cond.Broadcast()
	return nil
}

// TestSenderQueuedReads: with a sender, a one-frame device that can read
// without sleeping (a TAP or TUN queue) is read in batches of the frames
// waiting: one Read that waits, then TryRead for the others; they go out
// in order, one Write each.
func TestSenderQueuedReads(t *testing.T) {
	dev := newTryDev()
	var want [][]byte
	for i := range 5 {
		f := testFrame(markTransmit, i)
		want = append(want, f)
	}
	dev.inject(want...) // all waiting before the reader starts
	l := NewLink(LinkOptions{
		Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC),
		NewProcessor: func() Processor { return scriptProc{} }, Sender: true,
	})
	l.Attach(&recDispatcher{})
	t.Cleanup(func() { l.Close(); l.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	dev.mu.Lock()
	for len(dev.out) < len(want) && time.Now().Before(deadline) {
		dev.mu.Unlock()
		time.Sleep(time.Millisecond)
		dev.mu.Lock()
	}
	out, reads := dev.out, dev.reads
	dev.mu.Unlock()
	diffFrames(t, "wire", out, want)
	wantReads := []string{"Read", "TryRead", "TryRead", "TryRead", "TryRead"}
	if !slices.Equal(reads, wantReads) {
		t.Errorf("reads %v, want %v", reads, wantReads)
	}
}

// loopDev is a BatchDevice that allocates nothing: each ReadBatch waits for
// a grant and returns one batch of copies of frame; each WriteBatch counts
// its frames and signals written when a whole batch was written.
type loopDev struct {
	frame   []byte
	size    int
	grant   chan struct{}
	written chan struct{}
	closed  chan struct{}
	once    sync.Once
	pending atomic.Int64
}

func (d *loopDev) BatchSize() int { return d.size }

func (d *loopDev) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	select {
	case <-d.grant:
	case <-d.closed:
		return 0, os.ErrClosed
	}
	for i := range d.size {
		sizes[i] = copy(bufs[i], d.frame)
	}
	return d.size, nil
}

func (d *loopDev) WriteBatch(frames [][]byte) (int, error) {
	if d.pending.Add(int64(len(frames))) >= int64(d.size) {
		d.pending.Add(-int64(d.size))
		d.written <- struct{}{}
	}
	return len(frames), nil
}

func (d *loopDev) Read([]byte) (int, error)    { return 0, errors.New("loopDev: Read") }
func (d *loopDev) Write(b []byte) (int, error) { return len(b), nil }
func (d *loopDev) Close() error                { d.once.Do(func() { close(d.closed) }); return nil }

func newLoopLink(tb testing.TB, sender bool) *loopDev {
	dev := &loopDev{
		frame: testFrame(markTransmit, 1), size: 32,
		grant: make(chan struct{}), written: make(chan struct{}, 1), closed: make(chan struct{}),
	}
	l := NewLink(LinkOptions{
		Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC),
		NewProcessor: func() Processor { return scriptProc{} }, Sender: sender,
	})
	l.Attach(&recDispatcher{})
	tb.Cleanup(func() { l.Close(); l.Wait() })
	return dev
}

// TestSenderAllocs: a batch read, forwarded and written through the
// sender allocates nothing (reader, ring and sender together).
func TestSenderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, sender := range []bool{false, true} {
		dev := newLoopLink(t, sender)
		batch := func() { dev.grant <- struct{}{}; <-dev.written }
		batch() // first use: the sender's goroutine starts
		if a := testing.AllocsPerRun(200, batch); a != 0 {
			t.Errorf("sender=%v: %.1f allocations per batch, want 0", sender, a)
		}
	}
}

// BenchmarkSenderBatch: one batch of 32 frames through the link, read,
// forwarded and written, with and without a sender: the hand-off's cost
// where writing costs nothing.
func BenchmarkSenderBatch(b *testing.B) {
	for _, sender := range []bool{false, true} {
		b.Run(map[bool]string{false: "reader", true: "sender"}[sender], func(b *testing.B) {
			dev := newLoopLink(b, sender)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				dev.grant <- struct{}{}
				<-dev.written
			}
		})
	}
}
