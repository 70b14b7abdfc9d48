package sched

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/lvsd/lvsd/lvs"
)

// Fixed keys of the maglev hashes: a backend's first slot, its step, and the
// flow hash. Changing any of them moves every flow of every maglev service.
var (
	maglevOffsetKey = sipKey{0x6c76_7364_6d61_676c, 0x6f66_6673_6574_0001} // "lvsdmagl" "offset"
	maglevSkipKey   = sipKey{0x6c76_7364_6d61_676c, 0x736b_6970_0000_0002} // "lvsdmagl" "skip"
	maglevFlowKey   = sipKey{0x6c76_7364_6d61_676c, 0x666c_6f77_0000_0003} // "lvsdmagl" "flow"
)

// maglevProbes is how many re-hashes of a flow maglev tries when its slot's
// backend is not usable, before it scans the backends in order.
const maglevProbes = 8

// maglev is Maglev hashing as in the Maglev paper (NSDI '16, section 3.4) and
// Katran, with weights: unlike mh, it hashes the whole 5-tuple, so the flows
// of one client spread over the backends, and its table is large (65537 slots
// by default) so that shares are even and a change of backends moves few
// flows.
//
// Every destination of positive weight at New is a backend. Backends are
// ordered by address and port, not by list order, so that any instance with
// the same backends builds the same table. Each backend walks the table from
// a slot and with a step (coprime with the prime size) derived from its
// address and port, claiming the first free slot on each turn. Each backend's
// number of slots is its share by weight, rounded by largest remainder (so
// within one slot of exact), and at least one. Turns go to the backend
// furthest from its number, (claimed+1)/number smallest, ties to the earlier
// backend, so every backend fills at the same pace: with equal numbers that
// is the paper's round robin.
//
// A slot whose backend is not usable sends the flow to the backend of one of
// maglevProbes re-hashed slots, and failing those to the first usable backend
// from a position the flow's hash gives; either way a flow keeps its
// destination while the set of usable backends stays the same, and the flows
// of a failed backend spread over the others.
type maglev struct{ rebuilt[maglevTable] }

var _ Scheduler = (*maglev)(nil)

// maglevTable is maglev's table over one list, immutable once built.
type maglevTable struct {
	backends []*lvs.Dest // immutable, sorted by address and port
	// table holds an index into backends per slot; immutable after New,
	// empty when there are no backends.
	table []uint32
}

func newMaglevTable(dests []*lvs.Dest, c *config) (*maglevTable, error) {
	type backend struct {
		d *lvs.Dest
		w int64
	}
	var bs []backend
	for _, d := range dests {
		if w := d.Weight.Load(); w > 0 {
			bs = append(bs, backend{d, int64(w)})
		}
	}
	slices.SortStableFunc(bs, func(a, b backend) int {
		if c := bytes.Compare(a.d.Addr[:], b.d.Addr[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.d.Port, b.d.Port)
	})
	m := c.maglevSize
	if uint64(len(bs)) > uint64(m) {
		return nil, fmt.Errorf("%d destinations do not fit %d maglev slots (raise MaglevSize)", len(bs), m)
	}
	s := &maglevTable{backends: make([]*lvs.Dest, len(bs))}
	if len(bs) == 0 {
		return s, nil
	}
	weights := make([]int64, len(bs))
	for i, b := range bs {
		s.backends[i], weights[i] = b.d, b.w
	}
	s.table = maglevPopulate(s.backends, weights, m)
	return s, nil
}

// maglevPermutation returns where backend d starts in a table of m slots and
// its step.
func maglevPermutation(d *lvs.Dest, m uint32) (offset, skip uint32) {
	var key [18]byte
	copy(key[:16], d.Addr[:])
	binary.BigEndian.PutUint16(key[16:], d.Port)
	offset = uint32(sip13(maglevOffsetKey, key[:]) % uint64(m))
	skip = uint32(sip13(maglevSkipKey, key[:])%uint64(m-1)) + 1
	return offset, skip
}

// maglevPopulate builds the table of m slots for backends with positive
// weights; m is at least len(backends).
func maglevPopulate(backends []*lvs.Dest, weights []int64, m uint32) []uint32 {
	const empty = ^uint32(0)
	n := len(backends)
	table := make([]uint32, m)
	for i := range table {
		table[i] = empty
	}
	next := make([]uint32, n) // next slot each backend tries
	skip := make([]uint32, n)
	for i, d := range backends {
		next[i], skip[i] = maglevPermutation(d, m)
	}
	target := apportion(weights, int64(m))
	claimed := make([]int64, n)

	// behind orders backends by whose turn is first: the smallest
	// (claimed+1)/target, compared by cross-multiplication (both factors
	// at most 2^24), ties to the lower index. A backend that has its
	// target comes after every one that does not, so all end exactly on
	// target.
	behind := func(a, b int) bool {
		x, y := (claimed[a]+1)*target[b], (claimed[b]+1)*target[a]
		return x < y || x == y && a < b
	}
	// heap is a binary min-heap of backend indexes under behind.
	heap := make([]int, n)
	for i := range heap {
		heap[i] = i
	}
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= n {
				return
			}
			c := l
			if r := l + 1; r < n && behind(heap[r], heap[l]) {
				c = r
			}
			if !behind(heap[c], heap[i]) {
				return
			}
			heap[i], heap[c] = heap[c], heap[i]
			i = c
		}
	}
	for i := n/2 - 1; i >= 0; i-- {
		down(i)
	}

	for range m {
		b := heap[0]
		c := next[b]
		for table[c] != empty {
			if c += skip[b]; c >= m {
				c -= m
			}
		}
		table[c] = uint32(b)
		next[b] = c
		claimed[b]++
		down(0)
	}
	return table
}

// apportion divides m slots among positive weights by largest remainder
// (Hamilton's method; ties to the lower index), then gives a backend left
// with none one slot, taken from the backend with the most (the first of
// equals). The targets sum to m, which is at least len(weights).
func apportion(weights []int64, m int64) []int64 {
	var total int64 // at most 2^24 weights below 2^31
	for _, w := range weights {
		total += w
	}
	target := make([]int64, len(weights))
	rem := make([]int64, len(weights))
	left := m
	for i, w := range weights {
		q := m * w // below 2^55
		target[i], rem[i] = q/total, q%total
		left -= target[i]
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rem[b], rem[a]) })
	for _, i := range order[:left] {
		target[i]++
	}
	for i := range target {
		if target[i] == 0 {
			target[slices.Index(target, slices.Max(target))]--
			target[i] = 1
		}
	}
	return target
}

// flowHash hashes the whole tuple.
func flowHash(t *lvs.Tuple) uint64 {
	var msg [37]byte
	copy(msg[0:16], t.Src[:])
	copy(msg[16:32], t.Dst[:])
	binary.BigEndian.PutUint16(msg[32:], t.SPort)
	binary.BigEndian.PutUint16(msg[34:], t.DPort)
	msg[36] = byte(t.Proto)
	return sip13(maglevFlowKey, msg[:])
}

func (r *maglev) Schedule(t *lvs.Tuple) *lvs.Dest {
	s := &r.cur.Load().p // one load: the table is in the published state
	m := uint64(len(s.table))
	if m == 0 {
		return nil
	}
	h := flowHash(t)
	if d := s.backends[s.table[h%m]]; d.Usable() {
		return d
	}
	for i := range uint64(maglevProbes) {
		if d := s.backends[s.table[splitmix64(h+(i+1)*splitmixGamma)%m]]; d.Usable() {
			return d
		}
	}
	n := uint64(len(s.backends))
	start := h % n
	for i := range n {
		if d := s.backends[(start+i)%n]; d.Usable() {
			return d
		}
	}
	return nil
}
