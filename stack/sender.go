package stack

import (
	"sync/atomic"

	"github.com/lvsd/lvsd/device"
)

// A sender writes the batches of one device queue on a goroutine of its own
// (LinkOptions.Sender), so that the work the kernel does inside a write (on
// a TAP or packet socket: the bridge, and the destination's whole receive
// path) runs beside the reader's next read and fast path rather than after
// it.
//
// The reader and its sender share two single-producer, single-consumer
// rings, with no lock:
//
//   - sendSlots batches of frames to write (txSlot: the frames, views into
//     the reader's buffers or into the slot's own arena of copies). The
//     reader fills slot published%sendSlots and publishes it (published++);
//     the sender writes slot sent%sendSlots and frees it (sent++). The
//     reader fills a slot only while published-sent < sendSlots.
//   - sendSets sets of receive buffers (bufSet), which the reader reads
//     into in turn. A set's frames are referenced by the slots published
//     while it was the reader's; the reader reads into a set again only
//     when sent has reached the count of published slots at the time it
//     left the set (bufSet.last). A frame's buffer is thus never reused
//     before the frame is written.
//
// Back-pressure: when the ring is full the reader waits for the sender to
// free a slot (or a set). Writing the batch itself instead would overtake
// the batches queued before it, reordering a flow; and a reader that waits
// leaves the next frames in the kernel's queue, where they would have
// waited anyway while the reader wrote: the same drops as without a
// sender, at the same rate the device takes frames.
//
// Waking: each side sleeps on a channel of one token, and is sent a token
// (without blocking) only when it said it sleeps: under load neither side
// sleeps, and a hand-off is two atomic operations. The sleeper announces
// itself, then checks the counter again before it sleeps; the other side
// moves the counter, then looks for the announcement (sequentially
// consistent atomics: one of them sees the other).
//
// The sender is a goroutine, not locked to an OS thread: Go runs it on a
// thread of its own while both it and the reader have work (lvsd's raw
// system calls keep their processor), and when the reader sleeps in poll(2)
// the sender can run on the reader's processor without a thread switch. A
// goroutine locked to a thread would cost a thread hand-off at every
// wake-up.
type sender struct {
	l   *Link
	dev device.BatchDevice
	qs  *queueStats

	slots [sendSlots]txSlot
	sets  [sendSets]bufSet
	set   int    // the set the reader reads into now; the reader's
	pub   uint64 // the reader's copy of published

	published atomic.Uint64 // slots handed over; written by the reader
	sent      atomic.Uint64 // slots written; written by the sender
	sleeping  atomic.Bool   // the sender waits (or is about to) on kick
	waiting   atomic.Bool   // the reader waits (or is about to) on freed
	stopping  atomic.Bool   // the reader is gone: write what is published and exit

	kick  chan struct{} // to the sender: published moved; capacity 1
	freed chan struct{} // to the reader: sent moved; capacity 1
	done  chan struct{} // closed when the sender exits
}

const (
	// sendSlots is how many batches a queue's reader may be ahead of its
	// sender. Slots cost little (the frames' views and a copy arena); the
	// segments of a TUN super-frame fill about half an arena each, so a
	// batch of large frames may take several slots.
	sendSlots = 4
	// sendSets is how many sets of receive buffers a reader with a sender
	// cycles through. Each holds a batch of 64 KiB buffers (2 MiB on a
	// packet socket); two let the reader read and process the next batch
	// while the last one is written, which is all the overlap a sender
	// gives; bursts wait in the kernel's queue.
	sendSets = 2
)

// txSlot is one batch handed to the sender.
type txSlot struct {
	frames [][]byte // views into a bufSet or arena, valid until written
	arena  []byte   // copies of emitted frames
}

// bufSet is one set of receive buffers, as a reader without a sender has
// one (see reader).
type bufSet struct {
	bufs, rd [][]byte
	sizes    []int
	last     uint64 // slots published when the reader left this set
}

// newSender returns the sender of a reader whose batches hold size frames,
// with its buffer sets allocated; start runs it.
func newSender(l *Link, dev device.BatchDevice, qs *queueStats, size int) *sender {
	s := &sender{
		l: l, dev: dev, qs: qs,
		kick:  make(chan struct{}, 1),
		freed: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	for i := range s.slots {
		s.slots[i] = txSlot{frames: make([][]byte, 0, max(2*size, 64)), arena: make([]byte, emitArena)}
	}
	for i := range s.sets {
		s.sets[i].bufs, s.sets[i].rd, s.sets[i].sizes = l.readBuffers(size)
	}
	s.set = sendSets - 1 // the reader's first nextSet returns set 0
	return s
}

func (s *sender) start() { go s.run() }

// nextSet is the reader's: it leaves its set, whose frames are all
// published, and returns the next one, once the sender wrote every frame
// that set held.
func (s *sender) nextSet() *bufSet {
	s.sets[s.set].last = s.pub
	s.set = (s.set + 1) % sendSets
	b := &s.sets[s.set]
	s.waitSent(b.last)
	return b
}

// bind points t at the next free slot (waiting for the sender to free it).
func (s *sender) bind(t *txBatch) {
	if s.pub >= sendSlots {
		s.waitSent(s.pub - sendSlots + 1)
	}
	sl := &s.slots[s.pub%sendSlots]
	t.frames, t.arena, t.used = sl.frames[:0], sl.arena, 0
}

// handOff publishes t's frames, if any, and binds t to the next slot.
func (s *sender) handOff(t *txBatch) {
	if len(t.frames) == 0 {
		t.used = 0
		return
	}
	s.slots[s.pub%sendSlots].frames = t.frames
	s.pub++
	s.published.Store(s.pub)
	if s.sleeping.Load() {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.bind(t)
}

// drain waits until the sender wrote everything published: the reader
// then writes a frame itself, in order.
func (s *sender) drain() { s.waitSent(s.pub) }

// waitSent waits until the sender wrote n slots.
func (s *sender) waitSent(n uint64) {
	for s.sent.Load() < n {
		s.waiting.Store(true)
		if s.sent.Load() < n {
			<-s.freed
		}
		s.waiting.Store(false)
	}
}

// stop is the reader's last call: the sender writes what was published and
// exits; stop returns when it has.
func (s *sender) stop() {
	s.stopping.Store(true)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	<-s.done
}

// run is the sender's loop.
func (s *sender) run() {
	defer close(s.done)
	var seq uint64
	for {
		if seq == s.published.Load() {
			if s.stopping.Load() && seq == s.published.Load() {
				return
			}
			s.sleeping.Store(true)
			if seq == s.published.Load() && !s.stopping.Load() {
				<-s.kick
			}
			s.sleeping.Store(false)
			continue
		}
		sl := &s.slots[seq%sendSlots]
		s.l.writeFrames(s.dev, s.qs, sl.frames)
		clear(sl.frames) // drop the views: their buffers are read into next
		sl.frames = sl.frames[:0]
		seq++
		s.sent.Store(seq)
		if s.waiting.Load() {
			select {
			case s.freed <- struct{}{}:
			default:
			}
		}
	}
}

// tryReader is a one-frame device that can also read without sleeping:
// device.Tun. TryRead returns 0 and no error when no frame is waiting.
type tryReader interface {
	device.Device
	TryRead(b []byte) (int, error)
}

// queuedReads is a one-frame-per-call device (a TAP or TUN queue) read in
// batches for a sender: the first frame of a batch is waited for, the rest
// are those already waiting. Each frame is still one read; what the batch
// saves is hand-offs to the sender. Written one frame per call.
type queuedReads struct {
	tryReader
	size int
}

func (q queuedReads) BatchSize() int { return q.size }

func (q queuedReads) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	n, err := q.Read(bufs[0])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	got := 1
	for got < min(len(bufs), len(sizes)) {
		// An error here shows again at the next Read, which reports it.
		n, err := q.TryRead(bufs[got])
		if err != nil || n == 0 {
			break
		}
		sizes[got] = n
		got++
	}
	return got, nil
}

func (q queuedReads) WriteBatch(frames [][]byte) (int, error) {
	return oneByOne{q.tryReader}.WriteBatch(frames)
}

// queuedBatch is how many frames a queuedReads batch holds at most.
const queuedBatch = 32
