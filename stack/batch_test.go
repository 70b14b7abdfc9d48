package stack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	tcpipstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
)

// fakeBatchDev is a BatchDevice in memory. Each ReadBatch hands over one
// queued batch, whole; every WriteBatch and Write is recorded, in order, in
// one log, so that a test sees exactly which calls put which frames on the
// wire. It can refuse one frame and cut WriteBatch calls short.
type fakeBatchDev struct {
	size int // BatchSize

	// refuse is the index, among all frames offered to WriteBatch, of the
	// one it refuses with errRefused (-1: none). The frames before it in
	// that call are written; the call returns their count and the error.
	refuse int
	// perCall, when > 0, is the most frames one WriteBatch writes: a short
	// count with no error, as sendmmsg returns when the socket fills.
	perCall int

	mu      sync.Mutex
	changed *sync.Cond
	// stalled makes WriteBatch wait (until cleared, or Close) before it
	// writes: a device whose writes take long. stalls counts the calls
	// that waited.
	stalled bool
	stalls  int
	in      [][][]byte // batches not read yet; a nil frame stands for one too large (size -1)
	reads   int        // ReadBatch calls so far
	offered int        // frames offered to WriteBatch so far
	log     []writeOp  // every write call, in order
	closed  bool
	stopped bool // reads fail with device.ErrStopped, writes go on
}

// writeOp is one write call: a WriteBatch or a plain Write (the emitter's).
type writeOp struct {
	batch   bool
	offered int      // frames passed in
	frames  [][]byte // copies of the frames written, in order
	err     error
}

var errRefused = errors.New("fake: frame refused")

func newFakeBatchDev(size int) *fakeBatchDev {
	d := &fakeBatchDev{size: size, refuse: -1}
	d.changed = sync.NewCond(&d.mu)
	return d
}

// inject queues frames that one ReadBatch returns together.
func (d *fakeBatchDev) inject(frames ...[]byte) {
	if len(frames) > d.size {
		panic("fake: batch larger than BatchSize")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.in = append(d.in, frames)
	d.changed.Broadcast()
}

func (d *fakeBatchDev) BatchSize() int { return d.size }

func (d *fakeBatchDev) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reads++
	d.changed.Broadcast()
	for len(d.in) == 0 && !d.closed && !d.stopped {
		d.changed.Wait()
	}
	if d.closed {
		return 0, os.ErrClosed
	}
	if d.stopped {
		return 0, device.ErrStopped
	}
	batch := d.in[0]
	d.in = d.in[1:]
	if len(batch) > len(bufs) || len(batch) > len(sizes) {
		panic(fmt.Sprintf("fake: ReadBatch with %d buffers for a batch of %d", len(bufs), len(batch)))
	}
	for i, f := range batch {
		if f == nil {
			sizes[i] = -1
			continue
		}
		sizes[i] = copy(bufs[i], f)
	}
	return len(batch), nil
}

func (d *fakeBatchDev) WriteBatch(frames [][]byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stalled && !d.closed {
		d.stalls++
		d.changed.Broadcast()
		for d.stalled && !d.closed {
			d.changed.Wait()
		}
	}
	if d.closed {
		return 0, os.ErrClosed
	}
	op := writeOp{batch: true, offered: len(frames)}
	n := len(frames)
	if d.perCall > 0 {
		n = min(n, d.perCall)
	}
	for i := range n {
		k := d.offered
		d.offered++
		if k == d.refuse {
			op.err = errRefused
			break
		}
		op.frames = append(op.frames, bytes.Clone(frames[i]))
	}
	d.log = append(d.log, op)
	d.changed.Broadcast()
	return len(op.frames), op.err
}

func (d *fakeBatchDev) Read(b []byte) (int, error) {
	panic("fake: Read called on a BatchDevice; the reader must use ReadBatch")
}

func (d *fakeBatchDev) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	d.log = append(d.log, writeOp{offered: 1, frames: [][]byte{bytes.Clone(b)}})
	d.changed.Broadcast()
	return len(b), nil
}

func (d *fakeBatchDev) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.changed.Broadcast()
	return nil
}

// waitReads waits until ReadBatch has been called n times. The reader calls
// it again only after it processed the previous batch and flushed what it
// forwards, so afterwards every effect of the batches before is visible.
func (d *fakeBatchDev) waitReads(t *testing.T, n int) {
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
	for d.reads < n {
		if expired {
			t.Fatalf("reader made %d ReadBatch calls in 5 s, want %d", d.reads, n)
		}
		d.changed.Wait()
	}
}

// writes returns a copy of the write log.
func (d *fakeBatchDev) writes() []writeOp {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]writeOp(nil), d.log...)
}

// wire returns every frame written, in order, whatever call wrote it.
func wire(ops []writeOp) [][]byte {
	var all [][]byte
	for _, op := range ops {
		all = append(all, op.frames...)
	}
	return all
}

// recDispatcher records the frames the link delivers to the netstack,
// whole (the Ethernet header the link consumed included).
type recDispatcher struct {
	mu     sync.Mutex
	frames [][]byte
}

func (r *recDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *tcpipstack.PacketBuffer) {
	v := pkt.ToView()
	defer v.Release()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, v.ToSlice())
}

func (r *recDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *tcpipstack.PacketBuffer) {}

func (r *recDispatcher) delivered() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.frames...)
}

// Verdict marks: the first payload byte of a test frame (frame[14]) tells
// scriptProc what to do with it; frame[15] is its sequence number.
const (
	markTransmit = 'T'
	markStack    = 'S'
	markDrop     = 'D'
	markEmit     = 'E' // emit a copy marked markEmitted, then transmit
	markEmitted  = 'X'
	markBurst    = 'B' // emit burstLen copies marked markBursted, then transmit
	markBursted  = 'Y'
)

// burstLen is how many frames a markBurst frame emits: more than a batch's
// queue of frames holds, so that the link must write some in between.
const burstLen = 40

// burstShrink is how many bytes shorter each emitted frame of a burst is
// than the one before.
const burstShrink = 7

// scriptProc is a fast path that follows the mark in each frame.
type scriptProc struct{}

func (scriptProc) Process(p *forward.Packet) forward.Verdict {
	f := p.Frame()
	if len(f) < 16 {
		return forward.Drop
	}
	switch f[14] {
	case markTransmit:
		return forward.Transmit
	case markStack:
		return forward.ToStack
	case markEmit:
		if p.Emit == nil {
			return forward.Drop
		}
		// Build the extra frame in place, emit it, and restore the
		// frame: Emit has written it before it returns.
		f[14] = markEmitted
		err := p.Emit.Emit(p.Buf, p.Off, p.Len)
		f[14] = markEmit
		if err != nil {
			return forward.Drop
		}
		return forward.Transmit
	case markBurst:
		if p.Emit == nil {
			return forward.Drop
		}
		f[14] = markBursted
		for j := range burstLen {
			// Each shorter than the one before, so that copies of them
			// do not all land at the same offsets.
			f[16] = byte(j)
			if err := p.Emit.Emit(p.Buf, p.Off, p.Len-burstShrink*j); err != nil {
				return forward.Drop
			}
		}
		f[14], f[16] = markBurst, 0
		return forward.Transmit
	}
	return forward.Drop
}

// testFrame returns a 60-byte Ethernet frame for the director with a mark
// and a sequence number; the tail tells frames apart by more than one byte.
func testFrame(mark byte, seq int) []byte { return testFrameN(mark, seq, 60) }

// testFrameN is testFrame of n bytes (n > 16); frame[16] is 0.
func testFrameN(mark byte, seq, n int) []byte {
	f := make([]byte, n)
	copy(f, dirMAC)
	copy(f[6:], clientMAC)
	f[12], f[13] = 0x88, 0xb5 // local experimental Ethertype
	f[14], f[15] = mark, byte(seq)
	for i := 17; i < len(f); i++ {
		f[i] = byte(seq*31 + i)
	}
	return f
}

// startBatchLink returns a Link over dev with scriptProc as its fast path,
// attached to a recording dispatcher, and waits until its reader is in its
// first ReadBatch.
func startBatchLink(t *testing.T, dev *fakeBatchDev, vnet bool) (*Link, *recDispatcher) {
	t.Helper()
	l := NewLink(LinkOptions{
		Devices: []device.Device{dev}, Ethernet: true, VNetHdr: vnet, MTU: 1500, MAC: [6]byte(dirMAC),
		NewProcessor: func() Processor { return scriptProc{} },
	})
	disp := &recDispatcher{}
	l.Attach(disp)
	t.Cleanup(func() { l.Close(); l.Wait() })
	dev.waitReads(t, 1)
	return l, disp
}

func diffFrames(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d frames, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("%s: frame %d:\n got % x\nwant % x", what, i, got[i], want[i])
		}
	}
}

// TestBatchTransmitOneWrite: a batch the fast path forwards whole leaves in
// one WriteBatch, in the order it came, each frame from its own buffer.
func TestBatchTransmitOneWrite(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		t.Run(fmt.Sprintf("vnethdr=%v", vnet), func(t *testing.T) {
			const n = 8
			dev := newFakeBatchDev(16)
			l, disp := startBatchLink(t, dev, vnet)
			var in, want [][]byte
			for i := range n {
				f := testFrame(markTransmit, i)
				if vnet {
					// A header the fast path keeps: it must come back as
					// it came (the link decodes and re-encodes it).
					h := []byte{forward.VirtioNetHdrFNeedsCsum, 0, 14, 0, 0, 0, 14, 0, byte(i), 0}
					f = append(h, f...)
				}
				in = append(in, f)
				want = append(want, f)
			}
			dev.inject(in...)
			dev.waitReads(t, 2)

			ops := dev.writes()
			if len(ops) != 1 || !ops[0].batch || ops[0].offered != n {
				t.Errorf("write calls: %s; want one WriteBatch of %d frames", describeOps(ops), n)
			}
			diffFrames(t, "wire", wire(ops), want)
			if got := disp.delivered(); len(got) != 0 {
				t.Errorf("%d frames reached the netstack, want none", len(got))
			}
			s := l.Stats()
			if s.RxFrames != n || s.TxFrames != n || s.TxErrors != 0 || s.RxErrors != 0 {
				t.Errorf("stats %+v; want RxFrames=TxFrames=%d and no errors", s, n)
			}
		})
	}
}

// TestBatchToStackNotWritten: in a mixed batch, frames for the netstack go to
// the dispatcher and only there, dropped frames go nowhere, and the
// forwarded rest leaves in one WriteBatch in order.
func TestBatchToStackNotWritten(t *testing.T) {
	dev := newFakeBatchDev(16)
	l, disp := startBatchLink(t, dev, false)
	marks := []byte{markTransmit, markStack, markTransmit, markDrop, markStack, markStack, markTransmit, markDrop}
	var in, wantWire, wantStack [][]byte
	for i, m := range marks {
		f := testFrame(m, i)
		in = append(in, f)
		switch m {
		case markTransmit:
			wantWire = append(wantWire, f)
		case markStack:
			wantStack = append(wantStack, f)
		}
	}
	dev.inject(in...)
	dev.waitReads(t, 2)

	ops := dev.writes()
	if len(ops) != 1 || !ops[0].batch || ops[0].offered != len(wantWire) {
		t.Errorf("write calls: %s; want one WriteBatch of %d frames", describeOps(ops), len(wantWire))
	}
	diffFrames(t, "wire", wire(ops), wantWire)
	diffFrames(t, "netstack", disp.delivered(), wantStack)
	s := l.Stats()
	if s.RxFrames != uint64(len(marks)) || s.TxFrames != uint64(len(wantWire)) || s.StackIn != uint64(len(wantStack)) {
		t.Errorf("stats %+v; want RxFrames=%d TxFrames=%d StackIn=%d", s, len(marks), len(wantWire), len(wantStack))
	}
}

// TestBatchWriteRefused: a frame WriteBatch refuses is counted once and
// skipped, not retried; the frames after it still go out, in order, also
// when WriteBatch moves fewer frames per call than offered.
func TestBatchWriteRefused(t *testing.T) {
	const n = 6
	for _, tc := range []struct {
		name    string
		refuse  int
		perCall int
	}{
		{"middle", 2, 0},
		{"first", 0, 0},
		{"last", n - 1, 0},
		{"short counts", 3, 2},
		{"short counts, first of a call", 4, 2},
		{"short counts only", -1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newFakeBatchDev(16)
			dev.refuse, dev.perCall = tc.refuse, tc.perCall
			l, _ := startBatchLink(t, dev, false)
			var in, want [][]byte
			for i := range n {
				f := testFrame(markTransmit, i)
				in = append(in, f)
				if i != tc.refuse {
					want = append(want, f)
				}
			}
			dev.inject(in...)
			dev.waitReads(t, 2)

			ops := dev.writes()
			diffFrames(t, "wire", wire(ops), want)
			offered := 0
			for _, op := range ops {
				if !op.batch {
					t.Errorf("a plain Write in %s; want only WriteBatch", describeOps(ops))
				}
				offered += len(op.frames)
				if op.err != nil {
					offered++
				}
			}
			if offered != n {
				// More: a frame was offered twice (the refused one
				// retried); fewer: frames were given up.
				t.Errorf("WriteBatch consumed %d frames of %d: %s", offered, n, describeOps(ops))
			}
			wantErrs := uint64(0)
			if tc.refuse >= 0 {
				wantErrs = 1
			}
			s := l.Stats()
			if s.TxErrors != wantErrs || s.TxFrames != uint64(len(want)) {
				t.Errorf("stats %+v; want TxErrors=%d TxFrames=%d", s, wantErrs, len(want))
			}
		})
	}
}

// TestBatchEmitKeepsOrder: when the fast path emits a frame in the middle of
// a batch, the frames it forwarded earlier in that batch are on the wire
// before the emitted one, and the frame's own Transmit comes after it.
func TestBatchEmitKeepsOrder(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		t.Run(fmt.Sprintf("vnethdr=%v", vnet), func(t *testing.T) {
			dev := newFakeBatchDev(16)
			l, _ := startBatchLink(t, dev, vnet)
			hdr := func(f []byte) []byte {
				if !vnet {
					return f
				}
				return append(make([]byte, forward.VNetHdrLen), f...)
			}
			t0, t1, e2, t3 := testFrame(markTransmit, 0), testFrame(markTransmit, 1), testFrame(markEmit, 2), testFrame(markTransmit, 3)
			x2 := bytes.Clone(e2)
			x2[14] = markEmitted
			// The emitting frame carries a header of its own: its Transmit
			// keeps it, the emitted frame gets an empty one.
			e2in := hdr(e2)
			if vnet {
				copy(e2in, []byte{forward.VirtioNetHdrFNeedsCsum, 0, 14, 0, 0, 0, 14, 0, 16, 0})
			}
			dev.inject(hdr(t0), hdr(t1), e2in, hdr(t3))
			dev.waitReads(t, 2)

			ops := dev.writes()
			diffFrames(t, "wire", wire(ops), [][]byte{hdr(t0), hdr(t1), hdr(x2), e2in, hdr(t3)})
			t.Logf("write calls: %s", describeOps(ops))
			if s := l.Stats(); s.TxFrames != 5 || s.TxErrors != 0 {
				t.Errorf("stats %+v; want TxFrames=5 and no errors", s)
			}
		})
	}
}

// TestBatchEmitBurst: frames that emit many large frames each, in a batch
// with forwarded frames around them: more frames, and more bytes, than the
// link keeps for one write, so it must write some in between, and the order
// on the wire still follows the order of Transmit verdicts and Emit calls.
func TestBatchEmitBurst(t *testing.T) {
	for _, tc := range []struct{ batch, size int }{
		{5, 1500},  // more frames than a write holds
		{16, 9000}, // more bytes than the link keeps copies of (jumbo frames)
	} {
		for _, vnet := range []bool{false, true} {
			t.Run(fmt.Sprintf("batch=%d/size=%d/vnethdr=%v", tc.batch, tc.size, vnet), func(t *testing.T) {
				testEmitBurst(t, tc.batch, tc.size, vnet)
			})
		}
	}
}

func testEmitBurst(t *testing.T, batch, size int, vnet bool) {
	dev := newFakeBatchDev(batch)
	l, _ := startBatchLink(t, dev, vnet)
	hdr := func(f []byte) []byte {
		if !vnet {
			return f
		}
		return append(make([]byte, forward.VNetHdrLen), f...)
	}
	var in, want [][]byte
	for i, m := range []byte{markTransmit, markBurst, markBurst, markTransmit, markBurst} {
		f := testFrameN(m, i, size)
		in = append(in, hdr(f))
		if m == markBurst {
			for j := range burstLen {
				x := bytes.Clone(f[:len(f)-burstShrink*j])
				x[14], x[16] = markBursted, byte(j)
				want = append(want, hdr(x))
			}
		}
		want = append(want, hdr(f))
	}
	dev.inject(in...)
	dev.waitReads(t, 2)

	ops := dev.writes()
	diffFrames(t, "wire", wire(ops), want)
	t.Logf("write calls: %s", describeOps(ops))
	if s := l.Stats(); s.TxFrames != uint64(len(want)) || s.TxErrors != 0 {
		t.Errorf("stats %+v; want TxFrames=%d and no errors", s, len(want))
	}
}

// TestBatchTruncatedFrame: a frame too large for its buffer (size -1) is a
// receive error and is skipped; the rest of its batch is processed.
func TestBatchTruncatedFrame(t *testing.T) {
	dev := newFakeBatchDev(16)
	l, _ := startBatchLink(t, dev, false)
	t0, t2 := testFrame(markTransmit, 0), testFrame(markTransmit, 2)
	dev.inject(t0, nil, t2)
	dev.waitReads(t, 2)
	diffFrames(t, "wire", wire(dev.writes()), [][]byte{t0, t2})
	if s := l.Stats(); s.RxErrors != 1 || s.RxFrames != 2 || s.TxFrames != 2 {
		t.Errorf("stats %+v; want RxErrors=1 RxFrames=2 TxFrames=2", s)
	}
}

// TestBatchSuccessive: batches in a row each leave in their own WriteBatch,
// and a frame of one batch never leaks into the next (the buffers are
// reused).
func TestBatchSuccessive(t *testing.T) {
	dev := newFakeBatchDev(4)
	l, _ := startBatchLink(t, dev, false)
	var want [][]byte
	for b := range 3 {
		var in [][]byte
		for i := range 4 - b { // 4, 3, then 2 frames
			f := testFrame(markTransmit, 10*b+i)
			in = append(in, f)
			want = append(want, f)
		}
		dev.inject(in...)
		dev.waitReads(t, b+2)
	}
	ops := dev.writes()
	diffFrames(t, "wire", wire(ops), want)
	if len(ops) != 3 || len(ops[0].frames) != 4 || len(ops[1].frames) != 3 || len(ops[2].frames) != 2 {
		t.Errorf("write calls: %s; want WriteBatch calls of 4, 3 and 2 frames", describeOps(ops))
	}
	if s := l.Stats(); s.TxFrames != 9 {
		t.Errorf("TxFrames %d, want 9", s.TxFrames)
	}
}

func describeOps(ops []writeOp) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, op := range ops {
		if i > 0 {
			b.WriteString(", ")
		}
		if op.batch {
			fmt.Fprintf(&b, "WriteBatch(%d)=%d", op.offered, len(op.frames))
		} else {
			b.WriteString("Write")
		}
		if op.err != nil {
			fmt.Fprintf(&b, " %v", op.err)
		}
	}
	b.WriteByte(']')
	return b.String()
}
