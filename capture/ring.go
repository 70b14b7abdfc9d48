package capture

import (
	"sync/atomic"
	"time"
)

// slot is one frame in the ring. seq says whose turn it is (Vyukov's
// bounded queue): seq == pos, free for the producer of position pos;
// seq == pos+1, filled and waiting for the consumer.
type slot struct {
	seq    atomic.Uint64
	t      int64  // time.Now().UnixNano() when offered
	iface  int32  // index of the capture interface (see Capture.Frame)
	length uint32 // the frame's whole length
	n      uint32 // bytes kept in data (at most the snap length)
	data   []byte // fixed at New, snap length long
}

// ring is a bounded multi-producer, single-consumer queue of frames with
// fixed-size slots, allocated once. Producers never block: when the ring
// is full the frame is counted as missed.
type ring struct {
	slots   []slot
	mask    uint64
	head    atomic.Uint64 // next position to fill; producers
	tail    uint64        // next position to read; the consumer only
	missed  atomic.Uint64
	offered atomic.Uint64
}

func newRing(size, snap int) *ring {
	n := 1
	for n < size {
		n <<= 1
	}
	r := &ring{slots: make([]slot, n), mask: uint64(n - 1)}
	buf := make([]byte, n*snap)
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
		r.slots[i].data = buf[i*snap : (i+1)*snap : (i+1)*snap]
	}
	return r
}

// put copies frame into a free slot, or counts it missed. Safe for
// concurrent producers; allocates nothing.
func (r *ring) put(iface int, frame []byte) {
	r.offered.Add(1)
	for {
		pos := r.head.Load()
		s := &r.slots[pos&r.mask]
		switch d := int64(s.seq.Load() - pos); {
		case d == 0:
			if !r.head.CompareAndSwap(pos, pos+1) {
				continue
			}
			s.t = time.Now().UnixNano()
			s.iface = int32(iface)
			s.length = uint32(len(frame))
			s.n = uint32(copy(s.data, frame))
			s.seq.Store(pos + 1)
			return
		case d < 0:
			// The consumer has not freed this slot yet: full.
			r.missed.Add(1)
			return
		}
		// Another producer took pos: try the next one.
	}
}

// get calls fn with the oldest filled slot and frees it; it returns false
// when the ring is empty. Only the consumer calls it. fn must not keep
// data.
func (r *ring) get(fn func(t int64, iface int, length int, data []byte)) bool {
	s := &r.slots[r.tail&r.mask]
	if s.seq.Load() != r.tail+1 {
		return false
	}
	fn(s.t, int(s.iface), int(s.length), s.data[:s.n])
	s.seq.Store(r.tail + r.mask + 1)
	r.tail++
	return true
}
