package main

import (
	"fmt"
	"strconv"
	"strings"
)

// The scaling section: how the packet path's cost grows with the work, from
// the Go benchmarks' BenchmarkScaleServices, BenchmarkScaleReals and
// BenchmarkScaleConns (forward/scale_test.go), pivoted into tables. The
// device queues' part of the section, from the lab, is in queues.go.

// scaleConnsRows label the rows of BenchmarkScaleConns's sub-benchmarks
// (BenchmarkScaleConns/MID/N).
var scaleConnsRows = map[string]string{
	"batch32": "ns per packet, batches of 32",
	"warm32":  "ns per packet, batches of 32, warm pass",
}

// scaleResult returns the cpu-ns/op of the forward benchmark name (the
// CPU time of its thread per operation), or its ns/op if it reported none,
// or -1.
func (g *goBenchRun) scaleResult(name string) float64 {
	for _, p := range g.pkgs {
		if shortPkg(p.path) != "forward" {
			continue
		}
		for _, r := range p.results {
			if r.name != name {
				continue
			}
			for _, m := range r.other {
				if m.unit == "cpu-ns/op" {
					return m.value
				}
			}
			return r.nsOp
		}
	}
	return -1
}

// scaleSizes returns the sizes (the last name element) of the forward
// results named prefix/SIZE, in the order they ran, and the other elements
// between prefix and the size (schedulers), in order too.
func (g *goBenchRun) scaleSizes(prefix string) (sizes, mids []string) {
	seen := map[string]bool{}
	for _, p := range g.pkgs {
		if shortPkg(p.path) != "forward" {
			continue
		}
		for _, r := range p.results {
			rest, ok := strings.CutPrefix(r.name, prefix+"/")
			if !ok {
				continue
			}
			mid, size := "", rest
			if i := strings.LastIndexByte(rest, '/'); i >= 0 {
				mid, size = rest[:i], rest[i+1:]
			}
			if !seen["s"+size] {
				seen["s"+size] = true
				sizes = append(sizes, size)
			}
			if mid != "" && !seen["m"+mid] {
				seen["m"+mid] = true
				mids = append(mids, mid)
			}
		}
	}
	return sizes, mids
}

// scaleCell formats a ns/op figure, or says it did not run.
func scaleCell(v float64) string {
	if v < 0 {
		return "–"
	}
	return formatGoBench(v)
}

// sizeHeader formats a benchmark size ("100000") as a number ("100,000").
func sizeHeader(s string) string {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return formatNum(n, 0)
	}
	return s
}

// scalingMarkdown is the "Scaling" section of the report.
func (g *goBenchRun) scalingMarkdown() string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	w("## Scaling\n\n")
	w("How the cost of the packet path grows with the work: ns per packet (or per new connection) from the Go\n")
	w("benchmarks above (`forward/scale_test.go`, one worker, NAT over Ethernet, 0 allocations each), one run each.\n")
	w("The figures are the benchmarks' `cpu-ns/op`, the CPU time of the benchmark's thread per operation, rather than\n")
	w("ns/op: on a machine shared with other work, wall time also counts the time slices other processes took.\n\n")

	row := func(label, prefix string, sizes []string) {
		w("| %s |", label)
		for _, s := range sizes {
			w(" %s |", scaleCell(g.scaleResult(prefix+"/"+s)))
		}
		w("\n")
	}
	header := func(first string, sizes []string) {
		w("| %s |", first)
		for _, s := range sizes {
			w(" %s |", sizeHeader(s))
		}
		w("\n|---|%s\n", strings.Repeat("---:|", len(sizes)))
	}

	if sizes, _ := g.scaleSizes("BenchmarkScaleServices"); len(sizes) > 0 {
		w("**Virtual services** (`BenchmarkScaleServices`): a new connection (a SYN) to a service picked at random among\n")
		w("N, each with one real server (`rr`). Established connections never look a service up.\n\n")
		header("virtual services", sizes)
		row("ns per new connection", "BenchmarkScaleServices", sizes)
		w("\n")
	}
	if sizes, scheds := g.scaleSizes("BenchmarkScaleReals"); len(sizes) > 0 {
		w("**Real servers per service** (`BenchmarkScaleReals`): ns per new connection to one service of N real servers\n")
		w("(weight 1 each), by scheduler; the table's insertion (about the `rr` figure) is in every cell.\n\n")
		header("scheduler \\ real servers", sizes)
		for _, s := range scheds {
			row("`"+s+"`", "BenchmarkScaleReals/"+s, sizes)
		}
		w("\n")
	}
	if sizes, mids := g.scaleSizes("BenchmarkScaleConns"); len(sizes) > 0 {
		if sizes[len(sizes)-1] != "10000000" {
			sizes = append(sizes, "10000000") // skipped without LVSD_BENCH_10M
		}
		w("**Connections in the table** (`BenchmarkScaleConns`): a client's packet (64-byte payload) of an established\n")
		w("connection picked at random among N: the lookup's cache and TLB misses as the table grows. The 10 M case\n")
		w("runs only with `LVSD_BENCH_10M=1` (– otherwise).")
		if len(mids) > 0 {
			w(" In batches of 32 (as an AF_PACKET reader receives them): the\n")
			w("32 frames written first, then processed one by one, without and with the warm pass (`Worker.Warm`) first;\n")
			w("ns per packet, the warm pass included.")
		}
		w("\n\n")
		header("connections", sizes)
		row("ns per packet", "BenchmarkScaleConns", sizes)
		for _, m := range mids {
			label, ok := scaleConnsRows[m]
			if !ok {
				label = "`" + m + "`"
			}
			row(label, "BenchmarkScaleConns/"+m, sizes)
		}
		w("\n")
	}
	return sb.String()
}
