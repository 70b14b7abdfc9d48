//go:build linux

// Command bench is lvsd's benchmark suite: it builds a network-namespace lab
// and measures lvsd (NAT, DR and TUN forwarding) against the kernel's
// nftables DNAT, HAProxy in TCP mode and a direct path without a balancer,
// round by round, and writes the results to docs/benchmarks.md. Run it as
// root from the repository root:
//
//	go run ./bench                        # 5 rounds, 5 s per run (about 40 min)
//	go run ./bench -queue-sweep           # and lvsd NAT at 2 and 4 queues (7 min more)
//	go run ./bench -quick                 # 1 round, 3 s per run (smoke test)
//	go run ./bench -only lvsd-nat,nft -workloads tcp1,http
//
// Workloads: tcp1 and tcp4 (iperf3, 1 and 4 TCP streams, to one real
// server), http (wrk with Connection: close against nginx on three real
// servers: new connections per second, p50 and p99 latency), udp (64-byte
// UDP datagrams from iperf 2: the loss-free rate, found by a rate sweep, and
// the rate delivered under overload, both counted at the receiver). For each
// run it also measures the CPU time of the balancer.
//
// After the rounds it runs the Go micro-benchmarks of the packet path, the
// connection table, the persistence templates, the schedulers and the packet
// device (go test -bench, see gobench.go) and reports them too, unless
// -go-bench=false.
//
// Two topologies: the one-armed L2 lab (lvsd's TAP or AF_PACKET veth on the
// bridge of the client and the real servers), and a routed one (the
// -routed contestants, routed.go): lvsd's TAP, or a veth it attaches to by
// AF_PACKET, in a router namespace whose kernel forwards the client's
// packets into it and its output on to the same real servers; nft-routed is
// that router's own DNAT. Each lvsd contestant is compared with the others
// of its own topology.
//
// -queue-sweep adds lvsd-nat and lvsd-nat-pkt at 2 and 4 queues (TCP and
// HTTP only), reported by queue count in the scaling section (queues.go).
//
// The lab lives in namespaces named lvt-<pid>-*, with addresses from
// 198.18.0.0/15 only, and is removed on every exit path (Ctrl-C, failure,
// panic). Missing tools are installed from Debian packages with apt-get
// unless -no-install.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// defaultDuration is one measured run's length. With the default 5 rounds
// and every default contestant, 5 s keeps `make bench` near 40 minutes on
// the project's 2 vCPUs (10 s made it about 70: docs/performance.md,
// "Running make bench"), and 5 rounds of 5 s measure each contestant and metric 25 s
// in all, about the 30 s of the 3 rounds of 10 s before, with a median
// that two bad rounds cannot move instead of one.
const defaultDuration = 5 * time.Second

// flags are the command line.
type flags struct {
	rounds    int
	duration  time.Duration
	only      []string // contestant names, in the order of allContestants
	workloads []string // workload names, in the order of allWorkloads
	out       string   // markdown report; "" for none
	quick     bool
	noInstall bool
	verbose   bool
	queues    int    // lvsd's device queues
	sender    string // lvsd's [[interface]] sender; "" for its default
	// queueSweep adds the queue sweep's contestants (lvsd-nat-q2 ...) to
	// only.
	queueSweep bool
	httpConns  int // wrk connections
	lossFree   float64
	hold       string // set this contestant up and wait for Ctrl-C instead of measuring

	goBench     bool   // run the Go micro-benchmarks after the rounds
	goBenchTime string // their -benchtime
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func parseFlags(args []string) (*flags, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	f := &flags{}
	var only, workloads string
	fs.IntVar(&f.rounds, "rounds", 5, "rounds; each runs every contestant once per workload, in rotating order")
	fs.DurationVar(&f.duration, "duration", defaultDuration, "length of one measured run")
	fs.StringVar(&only, "only", "", "comma-separated contestants (default all but the queue sweep's): "+strings.Join(contestantNames(), ","))
	fs.StringVar(&workloads, "workloads", "", "comma-separated workloads (default all): "+strings.Join(workloadNames(), ","))
	fs.StringVar(&f.out, "out", "docs/benchmarks.md", "markdown report to write (a plot goes beside it, .svg); \"\" for none")
	fs.BoolVar(&f.quick, "quick", false, "smoke test: 1 round, 3 s per run (overrides -rounds and -duration)")
	fs.BoolVar(&f.noInstall, "no-install", false, "do not install missing tools with apt-get; contestants that need them are n/a")
	fs.BoolVar(&f.verbose, "v", false, "print the lab's log lines and each command")
	fs.IntVar(&f.queues, "queues", 1, "lvsd's TAP queues, and AF_PACKET sockets of lvsd-nat-pkt (the config's `queues`)")
	fs.StringVar(&f.sender, "sender", "", "lvsd's `sender` (\"reader\" or \"thread\"; default: the config's default)")
	fs.BoolVar(&f.queueSweep, "queue-sweep", false, "also run lvsd-nat and lvsd-nat-pkt at "+sweepQueuesText()+" queues (TCP throughput and HTTP conn/s; needs -queues 1)")
	fs.IntVar(&f.httpConns, "http-conns", 50, "wrk's concurrent connections")
	fs.Float64Var(&f.lossFree, "loss", 0.001, "the most loss (fraction) a rate may have to count as loss-free")
	fs.StringVar(&f.hold, "hold", "", "set this contestant up in the lab and wait for Ctrl-C (to poke at it by hand), measure nothing")
	fs.BoolVar(&f.goBench, "go-bench", true, "after the rounds, run the Go benchmarks of "+strings.Join(goBenchPkgs, " ")+" (go test -bench) and report them")
	fs.StringVar(&f.goBenchTime, "go-benchtime", "", "-benchtime of the Go benchmarks (default "+goBenchTime+"; "+goBenchTimeQuick+" with -quick)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if f.hold != "" {
		if _, err := pick("-hold", f.hold, contestantNames()); err != nil {
			return nil, err
		}
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if f.quick {
		f.rounds = 1
		f.duration = 3 * time.Second
	}
	if f.goBenchTime == "" {
		f.goBenchTime = goBenchTime
		if f.quick {
			f.goBenchTime = goBenchTimeQuick
		}
	}
	if !validBenchtime(f.goBenchTime) {
		return nil, fmt.Errorf("-go-benchtime %q: want a duration (0.5s) or a count (1000x)", f.goBenchTime)
	}
	if f.rounds < 1 {
		return nil, fmt.Errorf("-rounds %d: want at least 1", f.rounds)
	}
	if f.duration < time.Second {
		return nil, fmt.Errorf("-duration %v: want at least 1s", f.duration)
	}
	if f.sender != "" && f.sender != "reader" && f.sender != "thread" {
		return nil, fmt.Errorf("-sender %q: want reader or thread", f.sender)
	}
	if f.queues < 1 || f.queues > 16 {
		return nil, fmt.Errorf("-queues %d: want 1 to 16", f.queues)
	}
	var err error
	if f.only, err = selectContestants(only, f.queueSweep); err != nil {
		return nil, err
	}
	if f.queues != 1 {
		for _, c := range f.only {
			if contestantByName(c).sweep > 0 {
				return nil, fmt.Errorf("-queues %d with %s: the queue sweep's 1-queue figures are lvsd-nat's and lvsd-nat-pkt's, so it needs -queues 1", f.queues, c)
			}
		}
	}
	if f.workloads, err = pick("-workloads", workloads, workloadNames()); err != nil {
		return nil, err
	}
	return f, nil
}

// selectContestants parses -only (default: defaultContestants) and adds
// the queue sweep's contestants when sweep; the result is in the order of
// allContestants.
func selectContestants(only string, sweep bool) ([]string, error) {
	names := defaultContestants()
	if strings.TrimSpace(only) != "" {
		var err error
		if names, err = pick("-only", only, contestantNames()); err != nil {
			return nil, err
		}
	}
	if sweep {
		for _, c := range allContestants {
			if c.sweep > 0 {
				names = append(names, c.name)
			}
		}
	}
	return pick("-only", strings.Join(names, ","), contestantNames())
}

// sweepQueuesText lists the sweep's queue counts for help texts: "2 and 4".
func sweepQueuesText() string {
	var s []string
	for _, q := range sweepQueues {
		s = append(s, fmt.Sprint(q))
	}
	return strings.Join(s, " and ")
}

// pick parses a comma-separated subset of all, returned in all's order.
func pick(flagName, list string, all []string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		found := false
		for _, a := range all {
			if a == s {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: unknown name %q (known: %s)", flagName, s, strings.Join(all, ", "))
		}
		want[s] = true
	}
	var out []string
	for _, a := range all {
		if want[a] {
			out = append(out, a)
		}
	}
	return out, nil
}

// run returns the exit status: 0 success, 1 failure, 2 usage, 130
// interrupted. The deferred teardown runs on every path, panics included.
func run(args []string) (code int) {
	f, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	if err := preflight(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}

	// First signal: cancel, which makes the command under way fail and the
	// teardown run. Later signals are absorbed until the teardown is done.
	ctx, stop := lab.SignalContext("bench: ")
	defer stop()

	s := lab.NewSession(ctx, writerFunc(func(b []byte) (int, error) {
		if ctx.Err() != nil {
			return len(b), nil
		}
		return os.Stderr.Write(b)
	}))
	s.Quiet = !f.verbose
	var b *bench
	defer func() {
		r := recover()
		var fe *lab.FatalError
		switch {
		case r == nil:
		case ctx.Err() != nil:
			code = 130
		case errors.As(asError(r), &fe):
			fmt.Fprintf(os.Stderr, "\nbench failed: %s\n", fe.Msg)
			code = 1
		default:
			fmt.Fprintf(os.Stderr, "\nbench panicked: %v\n%s\n", r, debug.Stack())
			code = 2
		}
		if r != nil {
			s.Fail()
		}
		logf("tearing down the lab")
		s.Close()
		lab.RemoveBinaries()
		if b != nil && b.lab != nil {
			if left := lab.ListNamespaces(b.lab.Prefix()); len(left) > 0 {
				fmt.Fprintf(os.Stderr, "bench: namespaces left behind: %v (make clean-lab removes them)\n", left)
				code = max(code, 1)
			}
		}
	}()

	b = newBench(ctx, s, f)
	b.prepare()
	if f.hold != "" {
		b.hold(f.hold)
		return 0
	}
	b.runRounds()
	if f.goBench {
		// After the rounds: never while a contestant is being measured.
		b.runGoBench()
	}
	rep := b.report()
	fmt.Println()
	fmt.Print(rep.text())
	if f.out != "" {
		if err := rep.write(f.out); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		fmt.Printf("\nwrote %s and %s\n", f.out, svgPath(f.out))
	}
	return 0
}

// preflight explains what the bench needs before it touches anything.
func preflight() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (try: sudo go run ./bench)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	if len(missing) > 0 {
		return fmt.Errorf("needs %s", strings.Join(missing, ", "))
	}
	return nil
}

// logf prints a progress line with the time of day.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func asError(r any) error {
	if err, ok := r.(error); ok {
		return err
	}
	return fmt.Errorf("%v", r)
}
