package main

import (
	"strings"
	"testing"
)

func TestScalingMarkdown(t *testing.T) {
	out := `goos: linux
pkg: github.com/lvsd/lvsd/forward
BenchmarkNATIn-2                	 7000000	       165.9 ns/op	 711.40 MB/s	       0 B/op	       0 allocs/op
BenchmarkScaleServices/1-2      	 1000000	      2900 ns/op	       0 B/op	       0 allocs/op	       900.0 cpu-ns/op
BenchmarkScaleServices/100000-2 	 1000000	      1500 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleReals/lc/8-2      	 1000000	       950.5 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleReals/lc/1024-2   	 1000000	      4100 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleReals/rr/8-2      	 1000000	       901.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleReals/rr/1024-2   	 1000000	       902.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleConns/1000-2      	 5000000	       180.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleConns/batch32/1000-2      	 5000000	       190.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleConns/warm32/1000-2      	 5000000	       200.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleConns/1000000-2   	 2000000	       600.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleConns/batch32/1000000-2   	 2000000	       610.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkScaleConns/warm32/1000000-2   	 2000000	       300.0 ns/op	       0 B/op	       0 allocs/op
ok  	github.com/lvsd/lvsd/forward	30.1s
`
	g := &goBenchRun{pkgs: parseGoBench(out)}
	md := g.scalingMarkdown()
	for _, want := range []string{
		"| virtual services | 1 | 100,000 |\n|---|---:|---:|\n| ns per new connection | 900.0 | 1,500 |\n",
		"| scheduler \\ real servers | 8 | 1,024 |\n|---|---:|---:|\n| `lc` | 950.5 | 4,100 |\n| `rr` | 901.0 | 902.0 |\n",
		"| connections | 1,000 | 1,000,000 | 10,000,000 |\n|---|---:|---:|---:|\n| ns per packet | 180.0 | 600.0 | – |\n" +
			"| ns per packet, batches of 32 | 190.0 | 610.0 | – |\n| ns per packet, batches of 32, warm pass | 200.0 | 300.0 | – |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("scaling section lacks\n%s\nin\n%s", want, md)
		}
	}
	if md := (&goBenchRun{pkgs: parseGoBench("pkg: github.com/lvsd/lvsd/forward\n")}).scalingMarkdown(); strings.Contains(md, "| ns per") {
		t.Errorf("tables without results:\n%s", md)
	}
}
