package conntrack

// Warming a batch of lookups: the cache misses of several lookups overlap
// instead of following one another.

import "github.com/lvsd/lvsd/lvs"

// WarmBatch is how many tuples Warm reads in one round; it takes a longer
// list in rounds of WarmBatch.
const WarmBatch = 32

// maxWarmProbes bounds Warm's walk of an index cluster. At the index's
// load (at most 3/4) a key is found within a few slots; Warm reads slots
// that may be changing under it and must stop whatever it reads.
const maxWarmProbes = 16

// Warm is a hint that the connections of the tuples ks are about to be
// looked up (LookupInto, as Worker.Process does for each packet of a
// batch). A lookup in a big table waits for two memory accesses in turn:
// the index slot of the tuple's hash, then the entry the slot names. Warm
// reads, for every tuple, its slot, and then, for every tuple, the entry of
// the first slot with its tag (and the entry's sequence window when the
// RST check is on), so that the misses of the tuples are in flight
// together: the lookups then find what they read in the cache.
//
// Warm changes nothing and takes no lock: it reads the index through
// index.view and the entries as they are (chunks never move, and an
// index's freed slots stay mapped). What it reads may be stale or torn
// between a writer's steps, and a tuple may have no entry; that costs only
// the hint. The lookups that follow are the real ones and decide alone.
// Warm allocates nothing.
//
// The result is a sum of what Warm read and means nothing: the caller keeps
// it (e.g. in a field) so that no compiler may drop the reads as unused.
func (t *Table) Warm(ks []lvs.Tuple) uint64 {
	var sum uint64
	for len(ks) > 0 {
		n := min(len(ks), WarmBatch)
		sum += t.warm(ks[:n])
		ks = ks[n:]
	}
	return sum
}

// warm is one round of Warm, at most WarmBatch tuples. It is excluded from
// the race detector's instrumentation: it reads slots and entries that
// writers change under their shard's lock, on purpose and without it (see
// Warm); every value it reads is only summed or bounds-checked.
//
//go:norace
func (t *Table) warm(ks []lvs.Tuple) uint64 {
	var hs [WarmBatch]uint64
	var sum uint64
	ks = ks[:min(len(ks), WarmBatch)]
	// First pass: every tuple's home slot. The loads are independent of
	// each other, so the processor has several misses in flight.
	for i := range ks {
		h := hashTuple(&ks[i], t.seed)
		hs[i] = h
		v := t.shards[shardOfHash(h)].idx.view.Load()
		sum += v.slots[int(tagOfHash(h)>>v.shift)&(len(v.slots)-1)]
	}
	// Second pass: the slots are in the cache now; the entry each names.
	rst := t.checkRST.Load()
	for i := range ks {
		h := hs[i]
		s := &t.shards[shardOfHash(h)]
		v := s.idx.view.Load()
		tag := tagOfHash(h)
		mask := len(v.slots) - 1
		j := int(tag>>v.shift) & mask
		for range maxWarmProbes {
			sv := v.slots[j]
			if sv == 0 {
				break
			}
			if slotTag(sv) == tag {
				sum += t.warmRec(slotLoc(sv), rst)
				break
			}
			j = (j + 1) & mask
		}
	}
	return sum
}

// warmRec reads the entry at loc: its first and last bytes, so every cache
// line it spans (a 56-byte entry crosses a line boundary in six places of
// eight), and its sequence window when rst. loc comes from a slot read
// without the lock: it is checked against the shard's published chunks
// before use.
//
//go:norace
func (t *Table) warmRec(loc uint32, rst bool) uint64 {
	s := &t.shards[loc>>idxBits]
	i := loc & maxIdx
	ci := int(i >> chunkLog)
	recs := *s.recs.Load()
	if ci >= len(recs) {
		return 0
	}
	r := &recs[ci][i&(chunkSize-1)]
	sum := uint64(r.src[0]) + uint64(r.fprev)
	if rst {
		if chunks := *s.chunks.Load(); ci < len(chunks) {
			if w := chunks[ci].win.Load(); w != nil {
				sum += uint64(w[i&(chunkSize-1)].nxt[0].Load())
			}
		}
	}
	return sum
}
