package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lvsd/lvsd/capture"
	"github.com/lvsd/lvsd/control"
)

const traceUsage = `usage: lvsd trace [-n N] [-timeout D] [-control SOCK] [FILTER]

Explains, through the control socket of a running lvsd, what it does with
the next N packets (default 1) that match FILTER as they arrive on any
interface: the virtual service matched, the connection entry (state, time
left), the persistence template, the scheduler's inputs (each real server's
weight, active and inactive connections, availability, overload) and its
decision, the headers before and after the rewrite, or the drop and its
reason. FILTER is capture's: tcp | udp | icmp | icmp6, host ADDR, port N,
ANDed. A trace costs the packet path one atomic load per packet while
nothing is armed; it ends after N packets, after -timeout, or on SIGINT.
`

// runTrace is `lvsd trace`.
func runTrace(args []string) int {
	fs := flag.NewFlagSet("lvsd trace", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), traceUsage); fs.PrintDefaults() }
	n := fs.Int("n", 1, "packets to explain (1..1000)")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	ctl := fs.String("control", "", "control socket of the lvsd to trace")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	filter := strings.Join(fs.Args(), " ")
	if _, err := capture.ParseFilter(filter); err != nil {
		fmt.Fprintf(os.Stderr, "lvsd trace: %v\n", err)
		return 2
	}
	if *n < 1 || *n > 1000 {
		fmt.Fprintf(os.Stderr, "lvsd trace: -n %d: not in 1..1000\n", *n)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := control.Trace(ctx, controlFlag(*ctl), filter, *n, *timeout, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "lvsd trace: %v\n", err)
		var bad *control.BadRequestError
		if errors.As(err, &bad) {
			return 2
		}
		return 1
	}
	return 0
}
