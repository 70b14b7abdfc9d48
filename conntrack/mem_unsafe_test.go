package conntrack

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/lvsd/lvsd/lvs"
)

// smapsFlags returns the VmFlags of the mapping of /proc/self/smaps that
// holds p, and whether there is one.
func smapsFlags(t *testing.T, p unsafe.Pointer) ([]string, bool) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	addr := uint64(uintptr(p))
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := strings.Cut(strings.Fields(line + " ")[0], "-"); ok && !strings.HasSuffix(strings.Fields(line)[0], ":") {
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && a <= addr && addr < b
			continue
		}
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.Fields(rest), true
		}
	}
	return nil, false
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// TestArenaHugePages checks the arena's memory: zeroed, aligned, outside
// the Go heap, in 4 KiB pages while it is small, advised for transparent
// huge pages (the "hg" flag of /proc/self/smaps) once it maps more than
// hugeFrom, the memory mapped before included.
func TestArenaHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skip("kernel without transparent huge pages")
	}
	a := new(arena)
	defer a.release()
	size := unsafe.Sizeof(recBlock{})
	first := a.alloc(size, 64)
	if first == nil {
		t.Fatal("alloc failed")
	}
	if uintptr(first)%hugePage != 0 {
		t.Errorf("first block at %p, not on a huge page boundary", first)
	}
	b := unsafe.Slice((*byte)(first), size)
	for i, v := range b {
		if v != 0 {
			t.Fatalf("byte %d is %d, want zeroed memory", i, v)
		}
	}
	b[0], b[size-1] = 1, 1
	if flags, ok := smapsFlags(t, first); !ok || hasFlag(flags, "hg") {
		t.Errorf("small arena: flags %v (found %v), want no hg", flags, ok)
	}
	var last unsafe.Pointer
	for a.mappedBytes() <= hugeFrom {
		p := a.alloc(size, 64)
		if p == nil {
			t.Fatal("alloc failed")
		}
		if uintptr(p)%64 != 0 {
			t.Fatalf("block at %p not aligned to 64", p)
		}
		last = p
	}
	for _, p := range []unsafe.Pointer{first, last} {
		if flags, ok := smapsFlags(t, p); !ok || !hasFlag(flags, "hg") {
			t.Errorf("arena over hugeFrom: block %p flags %v (found %v), want hg", p, flags, ok)
		}
	}
	if b[0] != 1 || b[size-1] != 1 {
		t.Error("first block's contents lost")
	}
}

// TestIndexInArena grows one index past minMappedIndex: its slots move
// into the arena and every key stays reachable through growth and
// deletion.
func TestIndexInArena(t *testing.T) {
	a := new(arena)
	defer a.release()
	var x index
	x.init(a)
	const n = 3 * minMappedIndex / 8 // slots for 3/4 of an index twice minMappedIndex
	tagOf := func(i int) uint32 {
		return uint32(hashTuple(&lvs.Tuple{SPort: uint16(i), DPort: uint16(i >> 16)}, hashSeed{1, 2}) >> 33)
	}
	for i := 1; i <= n; i++ {
		x.add(tagOf(i), uint32(i), false)
	}
	if !x.mapped || uintptr(len(x.slots))*8 < minMappedIndex {
		t.Fatalf("%d slots, mapped %v: want the index in the arena", len(x.slots), x.mapped)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(x.slots)))%min(uintptr(len(x.slots))*8, hugePage) != 0 {
		t.Errorf("slots at %p not aligned to their size", unsafe.SliceData(x.slots))
	}
	find := func(i int) int {
		tag := tagOf(i)
		want := uint64(tag)<<tagShift | uint64(i)
		for j := x.home(tag); ; j = x.next(j) {
			switch x.slots[j] {
			case 0:
				return -1
			case want:
				return j
			}
		}
	}
	for i := 1; i <= n; i++ {
		if find(i) < 0 {
			t.Fatalf("key %d lost", i)
		}
	}
	for i := 1; i <= n; i += 2 {
		x.del(find(i))
	}
	for i := 1; i <= n; i++ {
		if got := find(i) >= 0; got != (i%2 == 0) {
			t.Fatalf("key %d present %v after deleting the odd ones", i, got)
		}
	}
	if x.n != n/2 {
		t.Errorf("n = %d, want %d", x.n, n/2)
	}
}

// TestTableMemoryReleased checks that a table's arenas are unmapped once
// the table is garbage collected.
func TestTableMemoryReleased(t *testing.T) {
	p := func() unsafe.Pointer {
		tab := New(Options{})
		d := lvs.NewDest(lvs.AddrFrom4([]byte{192, 0, 2, 21}).Netip(), 8080, lvs.NAT, 1)
		k := scaleKey(1)
		if created, err := tab.InsertInto(tab.NewEntry(), &k, d, nil, lvs.MAC{}, 0, nil); !created || err != nil {
			t.Fatalf("insert: %v %v", created, err)
		}
		if tab.slabMem.mappedBytes() == 0 {
			t.Fatal("no slab memory mapped")
		}
		for i := range tab.shards {
			if recs := *tab.shards[i].recs.Load(); len(recs) > 0 {
				return unsafe.Pointer(recs[0])
			}
		}
		t.Fatal("no chunk")
		return nil
	}()
	if _, ok := smapsFlags(t, p); !ok {
		t.Fatalf("slab memory at %p not mapped while the table lives", p)
	}
	for range 100 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if _, ok := smapsFlags(t, p); !ok {
			return
		}
	}
	t.Errorf("slab memory at %p still mapped after the table was collected", p)
}

// TestBindingsManyDests inserts connections to more real servers (and
// VIPs) than a shard's binding cache holds: every connection keeps its own
// real server and VIP through the cache's collisions, and each real
// server and VIP has one binding.
func TestBindingsManyDests(t *testing.T) {
	tab := New(Options{})
	const nd = 4 * bindCacheSize
	vips := []lvs.Addr{lvs.AddrFrom4([]byte{192, 0, 2, 100}), lvs.AddrFrom4([]byte{192, 0, 2, 101})}
	dests := make([]*lvs.Dest, nd)
	for i := range dests {
		dests[i] = lvs.NewDest(lvs.AddrFrom4([]byte{192, 0, 2, byte(i)}).Netip(), uint16(8000+i), lvs.NAT, 1)
	}
	e := tab.NewEntry()
	key := func(i, v int) lvs.Tuple {
		return lvs.Tuple{Src: lvs.AddrFrom4([]byte{192, 0, 2, 10}), Dst: vips[v], SPort: uint16(1000 + i), DPort: 80, Proto: lvs.TCP}
	}
	for round := range 3 { // the same real servers again: cache hits and misses
		for i, d := range dests {
			for v := range vips {
				k := key(i, v)
				k.SPort += uint16(round * nd)
				if created, err := tab.InsertInto(e, &k, d, nil, lvs.MAC{}, 0, nil); !created || err != nil {
					t.Fatalf("insert %d/%d: %v %v", i, v, created, err)
				}
			}
		}
	}
	for round := range 3 {
		for i, d := range dests {
			for v := range vips {
				k := key(i, v)
				k.SPort += uint16(round * nd)
				found, reply := tab.LookupInto(&k, e)
				if !found || reply || e.Dest != d || e.In != k {
					t.Fatalf("lookup %d/%d: found %v reply %v dest %v in %v, want %v %v", i, v, found, reply, e.Dest, e.In, d, k)
				}
				// Both VIPs' connections have this Out tuple: the newest
				// (the last VIP's) receives the replies.
				newest := key(i, len(vips)-1)
				newest.SPort = k.SPort
				out := lvs.Tuple{Src: d.Addr, Dst: k.Src, SPort: d.Port, DPort: k.SPort, Proto: lvs.TCP}
				if found, reply := tab.LookupInto(&out, e); !found || !reply || e.Dest != d || e.In != newest {
					t.Fatalf("reply lookup %d/%d: found %v reply %v dest %v in %v", i, v, found, reply, e.Dest, e.In)
				}
			}
			if n := d.InactiveConns.Load(); n != int32(len(vips)*3) {
				t.Fatalf("dest %d: %d inactive connections, want %d", i, n, len(vips)*3)
			}
		}
	}
	if n := len(*tab.binds.Load()) - 1; n != nd*len(vips) {
		t.Errorf("%d bindings, want %d (one per real server and VIP)", n, nd*len(vips))
	}
}
