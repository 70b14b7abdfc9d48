package conntrack

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// scaleKey is the In tuple of flow i of a scale benchmark: distinct for
// i < 2^24 * 60000, IPv4 clients 10.0.0.0/8 to one VIP.
func scaleKey(i int) lvs.Tuple {
	return lvs.Tuple{
		Src:   lvs.AddrFrom4([]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
		Dst:   lvs.AddrFrom4([]byte{192, 0, 2, 100}),
		SPort: uint16(1024 + i>>24), DPort: 80, Proto: lvs.TCP,
	}
}

// rssBytes returns the process's resident set size (VmRSS).
func rssBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// tableBytes is the memory the table's own structures hold: slab chunks
// and index slots.
func tableBytes(t *Table) uint64 {
	var n uint64
	for i := range t.shards {
		s := &t.shards[i]
		n += uint64(len(*s.chunks.Load())) * chunkBytes
		n += uint64(len(s.idx.slots)) * 8
	}
	return n + tableStructBytes
}

// benchScale inserts n distinct NAT flows (two index slots each, the
// costliest method) and measures memory, then times lookups of random
// flows. Metrics: ns/op is one lookup (a hit); B/entry the table's memory
// per connection; heap-B/entry the Go heap's growth per connection;
// MiB-rss the process's resident memory with the table full; ns/insert;
// ms/gc a full garbage collection with the table in memory.
func benchScale(b *testing.B, n int) {
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	c := &fakeClock{}
	tab := New(Options{Max: n, Clock: c.now})
	d := lvs.NewDest(lvs.AddrFrom4([]byte{192, 0, 2, 21}).Netip(), 8080, lvs.NAT, 1)
	e := tab.NewEntry()
	start := time.Now()
	for i := range n {
		k := scaleKey(i)
		if created, err := tab.InsertInto(e, &k, d, nil, lvs.MAC{}, c.now(), nil); !created || err != nil {
			b.Fatalf("insert %d: %v %v", i, created, err)
		}
		tab.Update(e, FlagSYN, true, c.now())
	}
	insertNs := float64(time.Since(start).Nanoseconds()) / float64(n)

	gcStart := time.Now()
	runtime.GC()
	gcMs := float64(time.Since(gcStart).Microseconds()) / 1000
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	rss := rssBytes()

	// Lookups in a pseudo-random order (a full-period LCG over the flows'
	// numbers), so that each one misses the caches as a busy director's
	// would.
	x := uint64(1)
	mask := uint64(1)
	for mask < uint64(n) {
		mask <<= 1
	}
	mask--
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for {
			x = (x*6364136223846793005 + 1442695040888963407) & mask
			if x < uint64(n) {
				break
			}
		}
		k := scaleKey(int(x))
		if found, _ := tab.LookupInto(&k, e); !found {
			b.Fatalf("flow %d not found", x)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(tableBytes(tab))/float64(n), "B/entry")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/entry")
	b.ReportMetric(float64(rss)/(1<<20), "MiB-rss")
	b.ReportMetric(insertNs, "ns/insert")
	b.ReportMetric(gcMs, "ms/gc")
	runtime.KeepAlive(tab)
}

// BenchmarkScale1M is the 1-million-connection benchmark (about 10 s).
func BenchmarkScale1M(b *testing.B) { benchScale(b, 1_000_000) }

// BenchmarkScale10M is the 10-million-connection benchmark: about a minute
// and 1.5 GiB, so it runs only with LVSD_BENCH_10M=1:
//
//	LVSD_BENCH_10M=1 go test -run '^$' -bench Scale10M -benchtime 5000000x ./conntrack/
func BenchmarkScale10M(b *testing.B) {
	if os.Getenv("LVSD_BENCH_10M") == "" {
		b.Skip("set LVSD_BENCH_10M=1 to run the 10-million-connection benchmark")
	}
	benchScale(b, 10_000_000)
}
