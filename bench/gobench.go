//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// The Go micro-benchmarks of the packet path, the connection table, the
// persistence templates, the schedulers and the packet device: `go test
// -bench` on these packages, once per suite run, after the lab's rounds (never
// while a contestant is measured).
var goBenchPkgs = []string{"./forward/", "./conntrack/", "./persist/", "./sched/", "./device/"}

const (
	// goBenchTime is -benchtime for a full run: about 70 s for every
	// benchmark of goBenchPkgs on 2 vCPUs (their compilation aside), with
	// results within a few percent of longer runs.
	goBenchTime = "0.5s"
	// goBenchTimeQuick is -benchtime under -quick: about 20 s (the setup of
	// conntrack's BenchmarkScale1M and the ramp-up of every benchmark stay).
	goBenchTimeQuick = "0.1s"
	// goBenchTimeout bounds the whole `go test`, a cold compilation included.
	goBenchTimeout = 15 * time.Minute
)

// goBenchRun is the outcome of one `go test -bench` run.
type goBenchRun struct {
	cmd     string // the command, as typed at the module root
	elapsed time.Duration
	pkgs    []*goBenchPkg // in the order of go test's output
	err     string        // why it failed or could not run ("" if it passed); pkgs may still hold results
}

// goBenchPkg is one package's benchmarks.
type goBenchPkg struct {
	path    string // import path
	status  string // "ok", "FAIL", "FAIL [build failed]", ...; "" if go test printed none
	results []goBenchResult
	failed  []string // benchmarks that reported --- FAIL
}

// goBenchResult is one line of benchmark output.
type goBenchResult struct {
	name   string // full name without the -GOMAXPROCS suffix, e.g. BenchmarkLookup/hit/1000
	procs  int    // GOMAXPROCS from the name's suffix; 1 if none
	iters  int64
	nsOp   float64
	bOp    float64 // -1 if not reported (no -benchmem)
	allocs float64 // allocs/op; -1 if not reported
	other  []goBenchMetric
}

// goBenchMetric is a metric other than ns/op, B/op and allocs/op: MB/s of
// b.SetBytes, or a custom one of b.ReportMetric (frames/s, B/entry, ...).
type goBenchMetric struct {
	value float64
	unit  string
}

// parseGoBench parses the standard output of `go test -bench -benchmem` for
// one or more packages. Benchmark lines belong to the package of the last
// "pkg:" line; status lines ("ok  pkg 1.2s", "FAIL pkg [build failed]")
// record each package's outcome. Lines that do not parse are ignored.
func parseGoBench(out string) []*goBenchPkg {
	var pkgs []*goBenchPkg
	byPath := map[string]*goBenchPkg{}
	get := func(path string) *goBenchPkg {
		p := byPath[path]
		if p == nil {
			p = &goBenchPkg{path: path}
			byPath[path] = p
			pkgs = append(pkgs, p)
		}
		return p
	}
	var cur *goBenchPkg
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch {
		case fields[0] == "pkg:" && len(fields) == 2:
			cur = get(fields[1])
		case (fields[0] == "ok" || fields[0] == "FAIL") && len(fields) >= 2 && !strings.HasPrefix(fields[1], "["):
			p := get(fields[1])
			p.status = fields[0]
			for i, f := range fields[2:] {
				if strings.HasPrefix(f, "[") { // [build failed], [setup failed]
					p.status += " " + strings.Join(fields[2+i:], " ")
					break
				}
			}
			if p == cur {
				cur = nil
			}
		case strings.Contains(line, "--- FAIL: Benchmark"):
			// A failing benchmark, on a line of its own or after its name:
			// "BenchmarkX-2   \t--- FAIL: BenchmarkX-2".
			_, after, _ := strings.Cut(line, "--- FAIL: ")
			name, _ := splitProcs(strings.Fields(after)[0])
			if cur == nil {
				cur = get("")
			}
			cur.failed = append(cur.failed, name)
		case strings.HasPrefix(fields[0], "Benchmark"):
			r, ok := parseGoBenchLine(fields)
			if !ok {
				continue
			}
			if cur == nil {
				cur = get("")
			}
			cur.results = append(cur.results, r)
		}
	}
	return pkgs
}

// parseGoBenchLine parses the fields of one result line: name, iterations,
// then value-unit pairs, ns/op among them.
func parseGoBenchLine(fields []string) (goBenchResult, bool) {
	if len(fields) < 4 || len(fields)%2 != 0 {
		return goBenchResult{}, false
	}
	r := goBenchResult{nsOp: -1, bOp: -1, allocs: -1}
	r.name, r.procs = splitProcs(fields[0])
	n, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || n <= 0 {
		return goBenchResult{}, false
	}
	r.iters = n
	for i := 2; i < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil || math.IsNaN(v) {
			return goBenchResult{}, false
		}
		switch unit := fields[i+1]; unit {
		case "ns/op":
			r.nsOp = v
		case "B/op":
			r.bOp = v
		case "allocs/op":
			r.allocs = v
		default:
			r.other = append(r.other, goBenchMetric{v, unit})
		}
	}
	if r.nsOp < 0 {
		return goBenchResult{}, false
	}
	return r, true
}

// splitProcs removes the -GOMAXPROCS suffix go test appends to a
// benchmark's name when GOMAXPROCS is not 1.
func splitProcs(name string) (string, int) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name, 1
	}
	p, err := strconv.Atoi(name[i+1:])
	if err != nil || p < 1 || strings.HasPrefix(name[i+1:], "+") {
		return name, 1
	}
	return name[:i], p
}

// goBenchArgs are go's arguments for a run with the given -benchtime.
func goBenchArgs(benchtime string) []string {
	return append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", benchtime}, goBenchPkgs...)
}

// goBenchCommand is the command as typed in a shell at the module root.
func goBenchCommand(benchtime string) string {
	args := goBenchArgs(benchtime)
	for i, a := range args {
		if a == "^$" {
			args[i] = "'^$'"
		}
	}
	return "go " + strings.Join(args, " ")
}

// validBenchtime reports whether s is a -benchtime go test accepts: a
// positive duration or a positive count followed by x.
func validBenchtime(s string) bool {
	if n, ok := strings.CutSuffix(s, "x"); ok {
		v, err := strconv.ParseInt(n, 10, 64)
		return err == nil && v > 0
	}
	d, err := time.ParseDuration(s)
	return err == nil && d > 0
}

// runGoBenchmarks runs goBenchArgs(benchtime) at the module root and parses
// its output. It never fails the suite: a missing go command, a build
// failure or a failing benchmark is recorded in err, beside whatever did
// run.
func runGoBenchmarks(ctx context.Context, benchtime string) *goBenchRun {
	run := &goBenchRun{cmd: goBenchCommand(benchtime)}
	gocmd, err := lab.GoCommand()
	if err != nil {
		run.err = err.Error()
		return run
	}
	gomod, err := runHost(ctx, time.Minute, gocmd, "env", "GOMOD")
	gomod = strings.TrimSpace(gomod)
	switch {
	case err != nil:
		run.err = fmt.Sprintf("go env GOMOD: %v: %s", err, firstLine(gomod))
		return run
	case gomod == "" || gomod == os.DevNull:
		run.err = "not inside the lvsd module (go env GOMOD is empty): run the bench from the repository"
		return run
	}
	args := append([]string{"-C", filepath.Dir(gomod)}, goBenchArgs(benchtime)...)
	t0 := time.Now()
	out, err := runHost(ctx, goBenchTimeout, gocmd, args...)
	run.elapsed = time.Since(t0)
	run.pkgs = parseGoBench(out)
	if err != nil {
		var why []string
		for _, p := range run.pkgs {
			if p.status != "" && p.status != "ok" {
				why = append(why, fmt.Sprintf("%s: %s", p.path, p.status))
			}
		}
		if len(why) == 0 {
			why = append(why, tailString(strings.TrimSpace(out), 1500))
		}
		run.err = fmt.Sprintf("%v (%s)", err, strings.Join(why, "; "))
		if ctx.Err() != nil {
			run.err = "interrupted"
		}
	}
	return run
}

// runGoBench runs the Go micro-benchmarks once, after the rounds.
func (b *bench) runGoBench() {
	bt := b.f.goBenchTime
	logf("Go benchmarks: %s (about a minute)", goBenchCommand(bt))
	b.goBench = runGoBenchmarks(b.ctx, bt)
	if b.ctx.Err() != nil {
		b.s.Fatalf("interrupted")
	}
	g := b.goBench
	n := 0
	for _, p := range g.pkgs {
		n += len(p.results)
	}
	if g.err != "" {
		logf("Go benchmarks: FAILED after %s: %s (%d results kept)", g.elapsed.Round(time.Second), firstLine(g.err), n)
		return
	}
	logf("Go benchmarks: %d results from %d packages in %s", n, len(g.pkgs), g.elapsed.Round(time.Second))
}

// goBenchDecimals is the number of decimals go test prints for v (three
// significant digits at least, none from 1000 up).
func goBenchDecimals(v float64) int {
	switch y := math.Abs(v); {
	case y == 0 || y >= 999.95:
		return 0
	case y >= 99.995:
		return 1
	case y >= 9.9995:
		return 2
	case y >= 0.99995:
		return 3
	case y >= 0.099995:
		return 4
	default:
		return 5
	}
}

func formatGoBench(v float64) string { return formatNum(v, goBenchDecimals(v)) }

// shortPkg is the last element of an import path ("" stays "").
func shortPkg(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// allocating lists "pkg BenchmarkX (N)" for results with allocs/op > 0.
func (g *goBenchRun) allocating() []string {
	var out []string
	for _, p := range g.pkgs {
		for _, r := range p.results {
			if r.allocs > 0 {
				out = append(out, fmt.Sprintf("%s %s (%s)", shortPkg(p.path), r.name, optCount(r.allocs)))
			}
		}
	}
	return out
}

// amortized reports whether a result allocates bytes but rounds to 0
// allocs/op.
func (g *goBenchRun) amortized() bool {
	for _, p := range g.pkgs {
		for _, r := range p.results {
			if r.bOp > 0 && r.allocs == 0 {
				return true
			}
		}
	}
	return false
}

func (g *goBenchRun) count() (results, pkgs int) {
	for _, p := range g.pkgs {
		if len(p.results) > 0 {
			pkgs++
			results += len(p.results)
		}
	}
	return results, pkgs
}

// procsNote names the GOMAXPROCS the benchmarks ran with.
func (g *goBenchRun) procsNote() string {
	seen := map[int]bool{}
	var ps []int
	for _, p := range g.pkgs {
		for _, r := range p.results {
			if !seen[r.procs] {
				seen[r.procs] = true
				ps = append(ps, r.procs)
			}
		}
	}
	sort.Ints(ps)
	var s []string
	for _, p := range ps {
		s = append(s, strconv.Itoa(p))
	}
	return strings.Join(s, ", ")
}

// markdown is the report's section body (without its heading).
func (g *goBenchRun) markdown() string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	w("```sh\n%s\n```\n\n", g.cmd)
	results, npkgs := g.count()
	if results > 0 {
		w("Run at the module root after the lab's rounds (no contestant running), in %s; %d benchmarks in %d packages,\n", g.elapsed.Round(time.Second), results, npkgs)
		w("GOMAXPROCS %s (the `-N` suffix of the names is dropped). Every figure is one run of the benchmark, not a median.\n", g.procsNote())
		w("They exercise the code on in-memory frames and tables without any device, except `device`'s\n")
		w("`BenchmarkPacketLoopback` (AF_PACKET sockets on the loopback of a private namespace: system call cost).\n")
		w("*Other metrics* are MB/s of `b.SetBytes` and the benchmarks' own `b.ReportMetric` figures.\n\n")
	}
	if g.err != "" {
		w("**The Go benchmarks did not all run**: %s\n\n", strings.ReplaceAll(strings.TrimSpace(g.err), "\n", "\n  "))
	}
	for _, p := range g.pkgs {
		if len(p.results) == 0 && len(p.failed) == 0 {
			if p.status != "" && p.status != "ok" {
				w("- `%s`: %s\n\n", p.path, p.status)
			}
			continue
		}
		name := p.path
		if name == "" {
			name = "(package unknown)"
		}
		w("### %s\n\n", shortPkg(name))
		w("`%s`%s\n\n", name, optional(": "+p.status, p.status != "" && p.status != "ok"))
		w("| benchmark | ns/op | B/op | allocs/op | other metrics |\n|---|---:|---:|---:|---|\n")
		for _, r := range p.results {
			var other []string
			for _, m := range r.other {
				other = append(other, formatGoBench(m.value)+" "+m.unit)
			}
			w("| %s | %s | %s | %s | %s |\n", r.name, formatGoBench(r.nsOp), optCount(r.bOp), optCount(r.allocs), strings.Join(other, ", "))
		}
		for _, f := range p.failed {
			w("| %s | failed | | | |\n", f)
		}
		w("\n")
	}
	if results > 0 {
		if a := g.allocating(); len(a) > 0 {
			w("Non-zero allocs/op: %s; every other benchmark allocates nothing per operation", strings.Join(a, ", "))
		} else {
			w("Non-zero allocs/op: none; every benchmark allocates nothing per operation")
		}
		if g.amortized() {
			w(" (B/op above 0 with 0 allocs/op: less than one allocation per operation, e.g. a table growing now and then)")
		}
		w(".\n\n")
	}
	return sb.String()
}

// optCount formats B/op or allocs/op (whole numbers), "–" if not reported.
func optCount(v float64) string {
	if v < 0 {
		return "–"
	}
	return formatNum(v, 0)
}

// text is the console summary: a row per package.
func (g *goBenchRun) text() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Go benchmarks (%s; %s)\n\n", g.cmd, g.elapsed.Round(time.Second))
	if g.err != "" {
		fmt.Fprintf(&sb, "FAILED: %s\n\n", strings.ReplaceAll(tailString(strings.TrimSpace(g.err), 1500), "\n", "\n  "))
	}
	if results, _ := g.count(); results == 0 {
		return sb.String()
	}
	sb.WriteString("| package | benchmarks | ns/op (min–max) | allocs/op > 0 |\n|---|---:|---:|---|\n")
	for _, p := range g.pkgs {
		if len(p.results) == 0 {
			continue
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		var allocs []string
		for _, r := range p.results {
			lo, hi = math.Min(lo, r.nsOp), math.Max(hi, r.nsOp)
			if r.allocs > 0 {
				allocs = append(allocs, fmt.Sprintf("%s (%s)", strings.TrimPrefix(r.name, "Benchmark"), optCount(r.allocs)))
			}
		}
		a := "none"
		if len(allocs) > 0 {
			a = strings.Join(allocs, ", ")
		}
		n := fmt.Sprint(len(p.results))
		if len(p.failed) > 0 {
			n += fmt.Sprintf(" [%d failed]", len(p.failed))
		}
		fmt.Fprintf(&sb, "| %s | %s | %s–%s | %s |\n", shortPkg(p.path), n, formatGoBench(lo), formatGoBench(hi), a)
	}
	return sb.String()
}
