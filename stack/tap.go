package stack

import "github.com/lvsd/lvsd/forward"

// Tap receives a copy of the frames a Link reads and the frames its fast
// path writes (package capture's Capture, through the director). Frame must
// not block nor keep frame, which stays the reader's: it runs on the
// reader goroutine, between reading a frame and processing it, and between
// the rewrite and the write (a frame that waited for its neighbour's MAC is
// offered when it is written, by the goroutine that learnt the MAC: several
// goroutines may call Frame at once, as several readers do).
type Tap interface {
	// Frame offers a frame: out false for a frame as read, true for a
	// frame as written after the rewrite (without the virtio-net header).
	Frame(out bool, frame []byte)
}

type tapBox struct {
	t  Tap
	tr Tracer // t as a Tracer, or nil
}

// frame hands a frame to the tap; a nil box (no tap armed) does nothing.
func (b *tapBox) frame(out bool, frame []byte) {
	if b != nil {
		b.t.Frame(out, frame)
	}
}

// SetTap arms t on the link's readers, or disarms with nil. Frames read
// after it returns go to the new tap; a reader that loaded the old one
// may still hand it the frames of its current batch, so the old tap must
// stay usable (not panic) after SetTap replaced it. Unarmed, a reader pays
// one atomic load per frame.
func (l *Link) SetTap(t Tap) {
	if t == nil {
		l.tap.Store(nil)
		return
	}
	tr, _ := t.(Tracer)
	l.tap.Store(&tapBox{t: t, tr: tr})
}

// Tracer is an optional interface of a Tap: it explains chosen frames.
// Both methods run on the reader goroutine and must not block.
type Tracer interface {
	// Trace reports whether the frame, as read, is to be traced; the link
	// then keeps a copy of its first TraceBytes bytes.
	Trace(frame []byte) bool
	// Processed tells what the fast path did with a traced frame: before
	// is the copy of its first bytes as read, after the frame as it is now
	// (as written for Transmit), v the verdict, proc the reader's fast
	// path (package forward's Worker). None may be kept.
	Processed(before, after []byte, v forward.Verdict, proc Processor)
}

// TraceBytes is how much of a traced frame a reader keeps from before the
// rewrite: the headers, with an encapsulation's.
const TraceBytes = 256

// traced copies the frame's first bytes into hdr when a tracer wants it,
// and returns how many (0: not traced).
func (b *tapBox) traced(frame, hdr []byte) int {
	if b == nil || b.tr == nil || !b.tr.Trace(frame) {
		return 0
	}
	return copy(hdr, frame)
}

func (b *tapBox) processed(before, after []byte, v forward.Verdict, proc Processor) {
	b.tr.Processed(before, after, v, proc)
}
