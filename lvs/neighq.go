package lvs

import "sync"

// The hold queue of a neighbour slot: frames forwarded to a next hop whose
// MAC is not known yet wait there until it is, as the kernel's neighbour
// layer queues packets on an unresolved neighbour (struct neighbour's
// arp_queue) instead of dropping them.
//
// Bounds, after the kernel's defaults: each queue holds at most HoldBytes
// (net.ipv4.neigh.default.unres_qlen_bytes, 212992), where each frame counts
// its length plus HoldOverhead, the kernel's per-skb overhead in truesize
// (SKB_TRUESIZE on 64-bit), so that 101 full-size (1514-byte) frames fit:
// the older unres_qlen default. When a frame does not fit, the oldest frames
// are dropped first, as __neigh_event_send does.
const (
	HoldBytes    = 212992
	HoldOverhead = 576
	// holdRecs bounds the records of one queue: HoldBytes over the cost of
	// the smallest frame the fast path forwards (Ethernet, IPv4, 8 bytes).
	holdRecs = HoldBytes/(HoldOverhead+42) + 1
)

// holdArena is the storage of one non-empty queue. Arenas are pooled: a
// queue takes one when its first frame arrives and gives it back when it
// empties, so only neighbours with frames waiting hold memory.
type holdArena struct {
	buf  [HoldBytes]byte
	recs [holdRecs]heldRec
}

// heldRec is one held frame: buf[off:off+n], whose Ethernet header starts
// at buf[off+macAt], held since at (the caller's clock), from device queue
// tag.
type heldRec struct {
	off, n, macAt int32
	tag           int32
	at            int64
}

var holdArenas = sync.Pool{New: func() any { return new(holdArena) }}

// holdQueue is a FIFO of frames in one arena, used as a ring: the bytes of
// the frames, oldest first, run from the oldest record's offset to the end
// of the newest one, wrapping at most once.
type holdQueue struct {
	mu sync.Mutex
	// a is the arena while frames wait, nil when none does. head is the
	// index of the oldest record, n the number of records, charged the
	// bytes they count against HoldBytes. All guarded by mu.
	a       *holdArena
	head, n int
	charged int
}

// HoldResult is what Neighbor.Hold did with a frame.
type HoldResult struct {
	// Known: the MAC was published meanwhile (MAC): the frame was not
	// queued, and the caller sends it itself with that MAC.
	Known bool
	MAC   MAC
	// Queued: the frame waits in the queue. First: the queue was empty
	// before it (the caller makes sure the neighbour is being resolved).
	Queued, First bool
	// Dropped is how many older frames were dropped to make room (or 1
	// for the frame itself when it could never fit: not Queued).
	Dropped int
}

// Hold queues a copy of frame (its Ethernet header at frame[macAt:]) until
// the MAC is known, unless it is known already by the time the queue's lock
// is taken. tag and at are the caller's: the device queue to send it on,
// and the time it was held (see Expire). The rare path of the fast path: it
// takes the neighbour's own lock and may take an arena from a pool.
func (n *Neighbor) Hold(frame []byte, macAt, tag int, at int64) HoldResult {
	q := &n.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if m, ok := n.Load(); ok {
		return HoldResult{Known: true, MAC: m}
	}
	cost := len(frame) + HoldOverhead
	if cost > HoldBytes {
		return HoldResult{Dropped: 1}
	}
	var r HoldResult
	r.First = q.n == 0
	for q.n > 0 && (q.charged+cost > HoldBytes || q.n == holdRecs) {
		q.dropOldest()
		r.Dropped++
	}
	off := q.place(len(frame))
	for off < 0 {
		// Enough bytes are free, but not in one piece: drop more.
		q.dropOldest()
		r.Dropped++
		off = q.place(len(frame))
	}
	if q.a == nil {
		q.a = holdArenas.Get().(*holdArena)
	}
	copy(q.a.buf[off:], frame)
	q.a.recs[(q.head+q.n)%holdRecs] = heldRec{off: int32(off), n: int32(len(frame)), macAt: int32(macAt), tag: int32(tag), at: at}
	q.n++
	q.charged += cost
	r.Queued = true
	return r
}

// place returns where a frame of size bytes goes in the ring, or -1 when
// no free piece is large enough. Preconditions: q.mu held.
func (q *holdQueue) place(size int) int {
	if q.n == 0 {
		return 0
	}
	first := &q.a.recs[q.head]
	last := &q.a.recs[(q.head+q.n-1)%holdRecs]
	start, end := int(first.off), int(last.off+last.n)
	if end > start {
		// One piece, [start, end): room after it, else before it.
		if HoldBytes-end >= size {
			return end
		}
		if start >= size {
			return 0
		}
		return -1
	}
	// Wrapped: the free piece is [end, start).
	if start-end >= size {
		return end
	}
	return -1
}

// dropOldest forgets the oldest frame. Preconditions: q.mu held, q.n > 0.
func (q *holdQueue) dropOldest() {
	r := &q.a.recs[q.head]
	q.charged -= int(r.n) + HoldOverhead
	q.head = (q.head + 1) % holdRecs
	q.n--
	if q.n == 0 {
		q.release()
	}
}

// release gives the arena back. Preconditions: q.mu held, q.n == 0.
func (q *holdQueue) release() {
	q.head, q.charged = 0, 0
	if q.a != nil {
		holdArenas.Put(q.a)
		q.a = nil
	}
}

// Resolve publishes m as the neighbour's MAC, after it has handed every
// held frame, oldest first and with m written in as its destination, to
// send (with the frame's tag); all under the queue's lock, so that no frame
// that sees the MAC overtakes the held ones, and Hold sends nothing later
// through the queue. The frame passed to send is valid only during the
// call. It returns how many frames it sent.
func (n *Neighbor) Resolve(m MAC, send func(frame []byte, tag int)) int {
	q := &n.q
	q.mu.Lock()
	defer q.mu.Unlock()
	sent := q.n
	for q.n > 0 {
		r := q.a.recs[q.head]
		f := q.a.buf[r.off : r.off+r.n]
		copy(f[r.macAt:r.macAt+6], m[:])
		send(f, int(r.tag))
		q.head = (q.head + 1) % holdRecs
		q.n--
	}
	q.release()
	n.Store(m)
	return sent
}

// Fail drops every held frame (the neighbour's resolution failed) and
// returns how many.
func (n *Neighbor) Fail() int {
	q := &n.q
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.n
	q.n = 0
	q.release()
	return d
}

// Expire drops the held frames held before the time before (oldest
// first) and returns how many.
func (n *Neighbor) Expire(before int64) int {
	q := &n.q
	q.mu.Lock()
	defer q.mu.Unlock()
	d := 0
	for q.n > 0 && q.a.recs[q.head].at < before {
		q.dropOldest()
		d++
	}
	return d
}

// Held returns how many frames wait, and the bytes they count against
// HoldBytes.
func (n *Neighbor) Held() (frames, bytes int) {
	q := &n.q
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.charged
}
