package sched

import (
	"fmt"
	"math/bits"

	"github.com/lvsd/lvsd/lvs"
)

// mhPrimes are the kernel's mh table sizes, indexed by CONFIG_IP_VS_MH_TAB_INDEX
// less 8.
var mhPrimes = [...]uint32{251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071}

// The kernel's fixed mh keys: hsiphash keys of two equal words. Key 1 places
// a destination's first slot and hashes flows; key 2 sets a destination's
// step through the table.
var (
	mhKey1 = sipKey{2654435761, 2654435761}
	mhKey2 = sipKey{2654446892, 2654446892}
)

// maglevIPVS is ip_vs_mh, the kernel's variant of Maglev hashing. Each
// destination walks the table from a slot and with a step derived from its
// address and port, claiming the first free slot on each turn; destinations
// take turns in list order, each claiming weight/gcd slots in a row (scaled
// down so that the largest takes at most 2^(index/2) in a row). A flow's
// client address (and with mh-port its port) then hashes to a slot.
//
// A slot whose destination is not usable gives no destination, unless
// mh-fallback is set: then the flow is re-hashed with offsets from its slot
// on, a sequence that depends only on the flow.
//
// As the kernel, the table is built from each destination's last non-zero
// weight (lvs.Dest.LastWeight), so that quiescing a destination (weight 0)
// keeps its slots and moves no other flow: its own flows get no destination,
// or with mh-fallback are re-hashed, until its weight returns. A destination
// added with weight 0 never had a weight and takes no slot.
type maglevIPVS struct{ rebuilt[mhTable] }

var _ Scheduler = (*maglevIPVS)(nil)

// mhTable is maglevIPVS's table over one list, immutable once built.
type mhTable struct {
	dests []*lvs.Dest // immutable
	// table has size slots, immutable after New; all nil when no
	// destination has a positive weight.
	table    []*lvs.Dest
	size     uint32
	fallback bool // mh-fallback (flag-1)
	port     bool // mh-port (flag-2)
}

func newMHTable(dests []*lvs.Dest, c *config) (*mhTable, error) {
	size := mhPrimes[c.mhTableIndex-minMHTableIndex]
	if uint64(len(dests)) > uint64(size) {
		return nil, fmt.Errorf("%d destinations do not fit %d mh slots (raise MHTableIndex)", len(dests), size)
	}
	s := &mhTable{
		dests:    dests,
		table:    make([]*lvs.Dest, size),
		size:     size,
		fallback: c.flags&flagSched1 != 0,
		port:     c.flags&flagSched2 != 0,
	}
	weights := make([]int32, len(dests))
	for i, d := range dests {
		weights[i] = max(d.LastWeight.Load(), 0)
	}
	s.populate(weights, c.mhTableIndex/2)
	return s, nil
}

// mhHash is ip_vs_mh_hashkey: hsiphash of offset + port + folded address.
func mhHash(fold uint32, port uint16, k sipKey, offset uint32) uint32 {
	return uint32(sip13Uint32(k, offset+uint32(port)+fold))
}

// populate fills s.table as ip_vs_mh_permutate and ip_vs_mh_populate do.
// tabBits is the kernel's IP_VS_MH_TAB_BITS.
func (s *mhTable) populate(weights []int32, tabBits int) {
	var g, maxw int32
	for _, w := range weights {
		if w > 0 {
			g = gcd(g, w)
			maxw = max(maxw, w)
		}
	}
	if g < 1 {
		return // no positive weight: every slot stays empty
	}
	// Keep a run of one destination's slots below 2^tabBits.
	shift := max(bits.Len32(uint32(maxw/g))-tabBits, 0)

	n := len(s.dests)
	perm := make([]uint32, n) // next slot each destination tries
	skip := make([]uint32, n)
	turns := make([]int32, n) // slots claimed in a row per turn
	for i, d := range s.dests {
		fold := addrFold(&d.Addr)
		perm[i] = mhHash(fold, d.Port, mhKey1, 0) % s.size
		skip[i] = mhHash(fold, d.Port, mhKey2, 0)%(s.size-1) + 1
		turns[i] = (weights[i] / g) >> shift
		if turns[i] == 0 && weights[i] != 0 {
			turns[i] = 1
		}
	}

	taken := make([]bool, s.size)
	filled := uint32(0)
	run := int32(0) // slots the current destination claimed this turn
	for filled < s.size {
		for i := 0; i < n; {
			if turns[i] < 1 {
				i++
				continue
			}
			c := perm[i]
			for taken[c] {
				if perm[i] += skip[i]; perm[i] >= s.size {
					perm[i] -= s.size
				}
				c = perm[i]
			}
			taken[c] = true
			s.table[c] = s.dests[i]
			if filled++; filled == s.size {
				return
			}
			if run++; run >= turns[i] {
				run = 0
				i++
			}
		}
	}
}

func (r *maglevIPVS) Schedule(t *lvs.Tuple) *lvs.Dest {
	s := &r.cur.Load().p // one load: the table is in the published state
	var port uint16
	if s.port && hasPorts(t.Proto) {
		port = t.SPort
	}
	fold := addrFold(&t.Src)
	first := mhHash(fold, port, mhKey1, 0) % s.size
	d := s.table[first]
	if d == nil || d.Usable() {
		return d
	}
	if !s.fallback || !s.anyUsable() {
		// Without any usable destination the kernel's probe below walks
		// the whole table to find none; skip it.
		return nil
	}
	for off := range s.size {
		roff := (off + first) % s.size
		d = s.table[mhHash(fold, port, mhKey1, roff)%s.size]
		if d.Usable() {
			return d
		}
	}
	return nil
}

func (s *mhTable) anyUsable() bool {
	for _, d := range s.dests {
		if d.Usable() {
			return true
		}
	}
	return false
}
