package conntrack

// Memory outside the Go heap for the slab's entries and the large indexes:
// anonymous mappings that the garbage collector neither scans nor counts,
// advised for transparent huge pages once the table is big. At ten million
// connections a random lookup touches two places in a gigabyte of memory
// (an index slot, then the entry); with 4 KiB pages both are TLB misses,
// which under a VM's nested paging cost about as much as the cache misses
// themselves. With 2 MiB pages the gigabyte needs about 500 TLB entries,
// which the second-level TLB holds.

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// hugePage is the size of a transparent huge page on amd64 and arm64
	// (with 4 KiB base pages).
	hugePage = 2 << 20
	// regionSize is how much an arena maps at a time: 16 huge pages. An
	// allocation of more than a quarter of it gets a mapping of its own.
	regionSize = 32 << 20
	// hugeFrom is how much an arena maps before it asks for huge pages: a
	// small table stays in 4 KiB pages, so that its few entries do not
	// each hold a 2 MiB page resident.
	hugeFrom = regionSize
	// minMappedIndex is the smallest index (in bytes) kept in an arena;
	// smaller ones are on the Go heap.
	minMappedIndex = 64 << 10
)

// An arena hands out memory outside the Go heap: zeroed, aligned, never
// moved. Its mappings are released when the table is garbage collected
// (see New), or, for one block, by free. Its methods are safe for
// concurrent use; allocation takes its mutex, so it is for rare, large
// allocations (a slab chunk, an index growing), never per packet.
type arena struct {
	mu sync.Mutex
	// maps are the arena's mappings: address and length. Guarded by mu.
	maps []mapping
	// cur is the region being carved, off the first free byte in it.
	// Guarded by mu.
	cur mapping
	off uintptr
	// mapped counts the bytes mapped; huge is set once they passed
	// hugeFrom, when every mapping is advised for huge pages. Guarded by
	// mu.
	mapped uintptr
	huge   bool
}

type mapping struct {
	p unsafe.Pointer
	n uintptr
}

// alloc returns n zeroed bytes aligned to align (a power of two, at most
// hugePage) outside the Go heap, or nil when the kernel refuses the
// mapping: the caller then uses the Go heap.
func (a *arena) alloc(n, align uintptr) unsafe.Pointer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n > regionSize/4 {
		m, ok := a.mmap(n)
		if !ok {
			return nil
		}
		return m.p
	}
	off := (a.off + align - 1) &^ (align - 1)
	if a.cur.p == nil || off+n > a.cur.n {
		m, ok := a.mmap(regionSize)
		if !ok {
			return nil
		}
		a.cur, off = m, 0
	}
	a.off = off + n
	return unsafe.Add(a.cur.p, off)
}

// mmap maps n bytes (rounded up to a huge page) at an address aligned to a
// huge page, so that every 2 MiB of it can be one.
//
// Preconditions: a.mu is held.
func (a *arena) mmap(n uintptr) (mapping, bool) {
	n = (n + hugePage - 1) &^ (hugePage - 1)
	// Map a huge page more and give back what lies before the first
	// aligned address and after the aligned block. MAP_NORESERVE: the
	// memory is committed page by page as the table fills it.
	p, err := unix.MmapPtr(-1, 0, nil, n+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return mapping{}, false
	}
	head := (hugePage - uintptr(p)%hugePage) % hugePage
	if head > 0 {
		_ = unix.MunmapPtr(p, head)
	}
	if tail := hugePage - head; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(p, head+n), tail)
	}
	m := mapping{unsafe.Add(p, head), n}
	a.maps = append(a.maps, m)
	a.mapped += n
	switch {
	case a.huge:
		adviseHuge(m)
	case a.mapped > hugeFrom:
		// The table outgrew the first region: huge pages from now on,
		// and for the memory mapped before (khugepaged collapses what
		// is already there).
		a.huge = true
		for _, m := range a.maps {
			adviseHuge(m)
		}
	}
	return m, true
}

// adviseHuge asks for transparent huge pages on m. Without them (THP
// disabled or "never"), the memory works in 4 KiB pages.
func adviseHuge(m mapping) {
	_ = unix.Madvise(unsafe.Slice((*byte)(m.p), m.n), unix.MADV_HUGEPAGE)
}

// free gives the memory of a block from alloc back to the kernel
// (MADV_DONTNEED) but keeps it mapped, reading as zeros: Table.Warm reads an
// index's slots without the shard's lock, and may read slots that grow has
// just freed. Its addresses are not handed out again: blocks freed are an
// index's old slots, each size once per shard, so the address space they
// keep is at most what the live indexes use; release unmaps them with the
// rest.
func (a *arena) free(p unsafe.Pointer, n uintptr) {
	_ = unix.Madvise(unsafe.Slice((*byte)(p), n), unix.MADV_DONTNEED)
}

// release unmaps everything. The table calls it when it is garbage
// collected: nothing refers to the memory any more.
func (a *arena) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.maps {
		_ = unix.MunmapPtr(m.p, m.n)
	}
	a.maps, a.cur, a.off, a.mapped = nil, mapping{}, 0, 0
}

// mappedBytes is the size of the arena's mappings (for tests and
// benchmarks).
func (a *arena) mappedBytes() uintptr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mapped
}

// allocRecs returns a slab chunk's entries from the arena, or nil.
func (a *arena) allocRecs() *recBlock {
	return (*recBlock)(a.alloc(unsafe.Sizeof(recBlock{}), 64))
}

// allocSlots returns n index slots from the arena, aligned to their size
// (up to a huge page, so that an index of up to 2 MiB lies within one huge
// page), or nil.
func (a *arena) allocSlots(n int) []uint64 {
	size := uintptr(n) * 8
	if p := a.alloc(size, min(size, hugePage)); p != nil {
		return unsafe.Slice((*uint64)(p), n)
	}
	return nil
}

// freeSlots gives slots from allocSlots back to the kernel.
func (a *arena) freeSlots(s []uint64) {
	a.free(unsafe.Pointer(unsafe.SliceData(s)), uintptr(len(s))*8)
}

// slot is k's place in a shard's cache.
func (k *bindKey) slot() int {
	// Dests are 128-byte objects: the low 7 bits of their address are 0.
	h := uint(uintptr(unsafe.Pointer(k.d))>>7) ^ uint(k.vip[15])<<3 ^ uint(k.vip[14])<<5 ^ uint(k.proto)
	return int(h % bindCacheSize)
}
