package stack

// Tap receives a copy of the frames a Link reads and the frames its fast
// path writes (package capture's Capture, through the director). Frame must
// not block nor keep frame, which stays the reader's: it runs on the
// reader goroutine, between reading a frame and processing it, and between
// the rewrite and the write.
type Tap interface {
	// Frame offers a frame: out false for a frame as read, true for a
	// frame as written after the rewrite (without the virtio-net header).
	Frame(out bool, frame []byte)
}

type tapBox struct{ t Tap }

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
	l.tap.Store(&tapBox{t: t})
}
