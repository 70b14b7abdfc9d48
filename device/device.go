package device

import (
	"errors"
	"io"
	"os"
)

// Device is one queue of a packet device: a TAP or TUN queue (Tun), an
// AF_PACKET socket pair (AFPacket) or an in-memory device (Mem). Read
// returns one frame per call, Write takes one frame per call; with a
// virtio-net header both start with it. Close must wake a goroutine blocked
// in Read, which then returns an error that IsClosed recognises.
type Device interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Close() error
}

// BatchDevice is a Device that moves several frames per system call: an
// AFPacket.
type BatchDevice interface {
	Device
	// BatchSize is the most frames one call moves.
	BatchSize() int
	// ReadBatch blocks until at least one frame arrives, reads up to
	// len(bufs) frames, frame i into bufs[i], and sets sizes[i] to its
	// length, or to -1 for a frame that did not fit. It returns the count.
	ReadBatch(bufs [][]byte, sizes []int) (int, error)
	// WriteBatch writes the frames in order and returns how many were sent;
	// fewer than all with an error means frames[n] failed.
	WriteBatch(frames [][]byte) (int, error)
}

var (
	_ Device      = (*Tun)(nil)
	_ BatchDevice = (*AFPacket)(nil)
	_ Device      = (*Mem)(nil)
)

// IsClosed reports whether an I/O error means the device was closed, or
// its reading stopped (ErrStopped): the reader's normal way out, not a
// failure.
func IsClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, errMemClosed) || errors.Is(err, ErrStopped)
}

// ErrStopped is the error of a read after StopReading (Tun, AFPacket): the
// device's reading was handed over; IsClosed recognises it.
var ErrStopped = errors.New("device reading stopped (handed over)")
