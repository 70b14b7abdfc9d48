//go:build linux

package main

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/lvsd/lvsd/forward
cpu: Oxide Virtual Turin-like Processor             
BenchmarkNATIn-2                        	 3820880	       156.4 ns/op	 754.69 MB/s	       0 B/op	       0 allocs/op
BenchmarkNewConnPersistentNewClient-2   	  150475	      3621 ns/op	     251 B/op	       1 allocs/op
BenchmarkBroken-2                       	--- FAIL: BenchmarkBroken-2
    perf_test.go:99: frame dropped
BenchmarkGarbage-2   	  1000	   abc ns/op	       0 B/op	       0 allocs/op
BenchmarkNoNs-2   	  1000	   12 B/op
Benchmarking the parser is not a result line
FAIL
FAIL	github.com/lvsd/lvsd/forward	6.427s
goos: linux
goarch: amd64
pkg: github.com/lvsd/lvsd/conntrack
BenchmarkScale1M-2    	  891716	       601.5 ns/op	       114.4 B/entry	       131.0 MiB-rss	         2.687 ms/gc	       0 B/op	       0 allocs/op
BenchmarkLookup/hit/1000-16         	14952170	        39.22 ns/op	       0 B/op	       0 allocs/op
BenchmarkUpdate	87727519	         6.245 ns/op
PASS
ok  	github.com/lvsd/lvsd/conntrack	8.961s
# github.com/lvsd/lvsd/sched [github.com/lvsd/lvsd/sched.test]
sched/sched_test.go:1:1: syntax error
FAIL	github.com/lvsd/lvsd/sched [build failed]
`
	got := parseGoBench(out)
	want := []*goBenchPkg{
		{
			path:   "github.com/lvsd/lvsd/forward",
			status: "FAIL",
			results: []goBenchResult{
				{name: "BenchmarkNATIn", procs: 2, iters: 3820880, nsOp: 156.4, bOp: 0, allocs: 0,
					other: []goBenchMetric{{754.69, "MB/s"}}},
				{name: "BenchmarkNewConnPersistentNewClient", procs: 2, iters: 150475, nsOp: 3621, bOp: 251, allocs: 1},
			},
			failed: []string{"BenchmarkBroken"},
		},
		{
			path:   "github.com/lvsd/lvsd/conntrack",
			status: "ok",
			results: []goBenchResult{
				{name: "BenchmarkScale1M", procs: 2, iters: 891716, nsOp: 601.5, bOp: 0, allocs: 0,
					other: []goBenchMetric{{114.4, "B/entry"}, {131, "MiB-rss"}, {2.687, "ms/gc"}}},
				// A subbenchmark with another GOMAXPROCS.
				{name: "BenchmarkLookup/hit/1000", procs: 16, iters: 14952170, nsOp: 39.22, bOp: 0, allocs: 0},
				// GOMAXPROCS=1: no suffix; no -benchmem: no B/op, allocs/op.
				{name: "BenchmarkUpdate", procs: 1, iters: 87727519, nsOp: 6.245, bOp: -1, allocs: -1},
			},
		},
		{path: "github.com/lvsd/lvsd/sched", status: "FAIL [build failed]"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseGoBench:")
		for _, p := range got {
			t.Errorf("  got  %+v", *p)
		}
		for _, p := range want {
			t.Errorf("  want %+v", *p)
		}
	}
	if got := parseGoBench("no Go here\n"); len(got) != 0 {
		t.Errorf("parseGoBench of nothing = %v", got)
	}
}

func TestSplitProcs(t *testing.T) {
	for in, want := range map[string]struct {
		name  string
		procs int
	}{
		"BenchmarkX-2":             {"BenchmarkX", 2},
		"BenchmarkX":               {"BenchmarkX", 1},
		"BenchmarkX/a-b":           {"BenchmarkX/a-b", 1},
		"BenchmarkX/size-64-8":     {"BenchmarkX/size-64", 8},
		"BenchmarkSchedule/dh/8-2": {"BenchmarkSchedule/dh/8", 2},
	} {
		if name, procs := splitProcs(in); name != want.name || procs != want.procs {
			t.Errorf("splitProcs(%q) = %q, %d; want %q, %d", in, name, procs, want.name, want.procs)
		}
	}
}

func TestGoBenchReport(t *testing.T) {
	g := &goBenchRun{
		cmd:     goBenchCommand("0.5s"),
		elapsed: 69 * time.Second,
		pkgs: parseGoBench(`pkg: github.com/lvsd/lvsd/forward
BenchmarkNATIn-2   	 3820880	       156.4 ns/op	 754.69 MB/s	       0 B/op	       0 allocs/op
BenchmarkNewConn-2 	  702586	       761.6 ns/op	      35 B/op	       0 allocs/op
ok  	github.com/lvsd/lvsd/forward	6.427s
pkg: github.com/lvsd/lvsd/device
BenchmarkPacketLoopback-2   	   21176	     28675 ns/op	   1115968 frames/s	       0 B/op	       0 allocs/op
pkg: github.com/lvsd/lvsd/persist
BenchmarkCreate-2        	  855195	       702.2 ns/op	      96 B/op	       1 allocs/op
`),
	}
	md := g.markdown()
	for _, s := range []string{
		"go test -run '^$' -bench . -benchmem -benchtime 0.5s ./forward/ ./conntrack/ ./persist/ ./sched/ ./device/\n",
		"### forward\n",
		"| benchmark | ns/op | B/op | allocs/op | other metrics |",
		"| BenchmarkNATIn | 156.4 | 0 | 0 | 754.7 MB/s |",
		"| BenchmarkPacketLoopback | 28,675 | 0 | 0 | 1,115,968 frames/s |",
		"Non-zero allocs/op: persist BenchmarkCreate (1); every other benchmark allocates nothing per operation (B/op above 0 with 0 allocs/op",
		"GOMAXPROCS 2",
	} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	if txt := g.text(); !strings.Contains(txt, "| forward | 2 | 156.4–761.6 | none |") || !strings.Contains(txt, "| persist | 1 | 702.2–702.2 | Create (1) |") {
		t.Errorf("text:\n%s", txt)
	}

	failed := &goBenchRun{cmd: goBenchCommand("0.1s"), err: "the go command is not on PATH nor in /usr/local/go/bin"}
	if md := failed.markdown(); !strings.Contains(md, "did not all run**: the go command is not on PATH") || strings.Contains(md, "Non-zero") {
		t.Errorf("markdown of a failure:\n%s", md)
	}
}

func TestGoBenchFlags(t *testing.T) {
	for _, tt := range []struct {
		args      []string
		on        bool
		benchtime string
	}{
		{nil, true, goBenchTime},
		{[]string{"-quick"}, true, goBenchTimeQuick},
		{[]string{"-quick", "-go-benchtime", "2000x"}, true, "2000x"},
		{[]string{"-go-bench=false"}, false, goBenchTime},
	} {
		f, err := parseFlags(tt.args)
		if err != nil {
			t.Fatal(err)
		}
		if f.goBench != tt.on || f.goBenchTime != tt.benchtime {
			t.Errorf("parseFlags(%q): go-bench %v, benchtime %q; want %v, %q", tt.args, f.goBench, f.goBenchTime, tt.on, tt.benchtime)
		}
	}
	for _, bad := range []string{"0s", "x", "-1x", "fast"} {
		if _, err := parseFlags([]string{"-go-benchtime", bad}); err == nil {
			t.Errorf("-go-benchtime %q: no error", bad)
		}
	}
}

// TestRunGoBenchmarks runs the real thing (about 20 s, go test inside go
// test), only with LVSD_BENCH_GOBENCH=1.
func TestRunGoBenchmarks(t *testing.T) {
	if os.Getenv("LVSD_BENCH_GOBENCH") == "" {
		t.Skip("set LVSD_BENCH_GOBENCH=1 to run the Go benchmarks")
	}
	g := runGoBenchmarks(context.Background(), "100x")
	if g.err != "" {
		t.Fatalf("runGoBenchmarks: %s", g.err)
	}
	seen := map[string]bool{}
	for _, p := range g.pkgs {
		if p.status != "ok" || len(p.results) == 0 {
			t.Errorf("%s: status %q, %d results", p.path, p.status, len(p.results))
		}
		seen[shortPkg(p.path)] = true
	}
	for _, p := range goBenchPkgs {
		if p := strings.Trim(p, "./"); !seen[p] {
			t.Errorf("no results from %s", p)
		}
	}
	t.Logf("%s\n%s", g.elapsed, g.text())
}
