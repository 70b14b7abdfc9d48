package conntrack

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// procField returns a "Name:   N kB" field of a /proc/self file in bytes.
func procField(file, name string) uint64 {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// rssBytes returns the process's resident set size (VmRSS).
func rssBytes() uint64 { return procField("/proc/self/status", "VmRSS") }

// threadCPU returns the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
// MiB-rss the process's resident memory with the table full (VmRSS;
// MiB-rss-anon its anonymous part, RssAnon; MiB-huge the part in
// transparent huge pages, AnonHugePages); cpu-ns/op the lookup's CPU time;
// ns/insert;
// ms/gc a full garbage collection with the table in memory.
func benchScale(b *testing.B, n int) {
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	tab, insertNs := fillScale(b, n)
	e := tab.NewEntry()

	gcStart := time.Now()
	runtime.GC()
	gcMs := float64(time.Since(gcStart).Microseconds()) / 1000
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	rss := rssBytes()
	anon := procField("/proc/self/status", "RssAnon")
	huge := procField("/proc/self/smaps_rollup", "AnonHugePages")

	// Lookups in a pseudo-random order, so that each one misses the
	// caches as a busy director's would.
	next := flowOrder(n)
	// The lookups' CPU time (this thread's, locked to it), beside ns/op:
	// on a machine shared with other work, wall time counts the time
	// slices other processes took; CPU time does not (their cache and TLB
	// pollution it does).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lookups := 0
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := threadCPU()
	for b.Loop() {
		lookups++
		k := scaleKey(next())
		if found, _ := tab.LookupInto(&k, e); !found {
			b.Fatalf("flow %v not found", k)
		}
	}
	cpu := threadCPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(lookups, 1)), "cpu-ns/op")
	b.ReportMetric(float64(anon)/(1<<20), "MiB-rss-anon")
	b.ReportMetric(float64(huge)/(1<<20), "MiB-huge")
	b.ReportMetric(float64(tableBytes(tab))/float64(n), "B/entry")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/entry")
	b.ReportMetric(float64(rss)/(1<<20), "MiB-rss")
	b.ReportMetric(insertNs, "ns/insert")
	b.ReportMetric(gcMs, "ms/gc")
	runtime.KeepAlive(tab)
}

// fillScale returns a table of n distinct NAT flows (two index slots each,
// the costliest method), and the time an insertion took.
func fillScale(b *testing.B, n int) (*Table, float64) {
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
	return tab, float64(time.Since(start).Nanoseconds()) / float64(n)
}

// flowOrder returns the flows' numbers below n in a pseudo-random order:
// a full-period LCG over the next power of two, skipping those of n or
// more.
func flowOrder(n int) func() int {
	x := uint64(1)
	mask := uint64(1)
	for mask < uint64(n) {
		mask <<= 1
	}
	mask--
	return func() int {
		for {
			x = (x*6364136223846793005 + 1442695040888963407) & mask
			if x < uint64(n) {
				return int(x)
			}
		}
	}
}

// benchScaleBatch times lookups of random flows among n, in batches of 1
// (each lookup alone, as benchScale) and of 8, 16 and 32, each batch's
// tuples given to Warm before their lookups, as the forwarder does with a
// batch of frames (Worker.Warm). ns/op and cpu-ns/op are per lookup, the
// batch's Warm included.
func benchScaleBatch(b *testing.B, n int) {
	tab, _ := fillScale(b, n)
	e := tab.NewEntry()
	var sink uint64
	for _, size := range []int{1, 8, 16, 32} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			next := flowOrder(n)
			keys := make([]lvs.Tuple, size)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			j, lookups := 0, 0
			b.ReportAllocs()
			cpu0 := threadCPU()
			for b.Loop() {
				if j == 0 {
					for i := range keys {
						keys[i] = scaleKey(next())
					}
					if size > 1 {
						sink += tab.Warm(keys)
					}
				}
				if found, _ := tab.LookupInto(&keys[j], e); !found {
					b.Fatalf("flow %v not found", keys[j])
				}
				j = (j + 1) % size
				lookups++
			}
			cpu := threadCPU() - cpu0
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(lookups, 1)), "cpu-ns/op")
		})
	}
	benchSink = sink
	runtime.KeepAlive(tab)
}

// benchSink keeps Warm's results, so that its reads count.
var benchSink uint64

// BenchmarkScaleBatch1M is benchScaleBatch at one million connections.
func BenchmarkScaleBatch1M(b *testing.B) { benchScaleBatch(b, 1_000_000) }

// BenchmarkScaleBatch10M is benchScaleBatch at ten million connections,
// with LVSD_BENCH_10M=1 as BenchmarkScale10M:
//
//	LVSD_BENCH_10M=1 go test -run '^$' -bench ScaleBatch10M -benchtime 5000000x ./conntrack/
func BenchmarkScaleBatch10M(b *testing.B) {
	if os.Getenv("LVSD_BENCH_10M") == "" {
		b.Skip("set LVSD_BENCH_10M=1 to run the 10-million-connection benchmark")
	}
	benchScaleBatch(b, 10_000_000)
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
