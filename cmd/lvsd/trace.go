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
       lvsd trace -packet 'tcp|udp SRC:PORT > DST:PORT [flags FLAGS] [iface NAME]' [-control SOCK]

Explains, through the control socket of a running lvsd, what it does with
the next N packets (default 1) that match FILTER as they arrive on any
interface: the virtual service matched, the connection entry (state, time
left), the persistence template, the scheduler's inputs (each real server's
weight, active and inactive connections, availability, overload) and its
decision, the headers before and after the rewrite, or the drop and its
reason. FILTER is capture's: tcp | udp | icmp | icmp6, host ADDR, port N,
ANDed. A trace costs the packet path one atomic load per packet while
nothing is armed; it ends after N packets, after -timeout, or on SIGINT.

With -packet, lvsd explains instead a packet described on the command
line, which it builds as the interface would carry it (TTL 64, no
payload) and runs through the fast path's decisions in a dry run: the
same code as for a real packet, with nothing committed and nothing sent.
No connection or persistence template is created, no timer restarted,
and the scheduler does not move on (rr and wrr keep their position, lblc
and lblcr their tables, twos its draws): the next real connection goes
where it would have gone without the trace. An IPv6 address is written
in brackets ([2001:2::10]:40000). FLAGS are TCP flag letters as tcpdump
prints them: S (SYN), F (FIN), R (RST), P (PSH), . or A (ACK), U (URG),
or none; a TCP packet without flags is a SYN. The interface is the one
of the service the packet is addressed to, else the first.

  lvsd trace -packet 'tcp 198.18.1.10:40000 > 198.18.1.100:80'
  lvsd trace -packet 'tcp 198.18.2.11:80 > 198.18.1.10:40000 flags S.'
  lvsd trace -packet 'udp [2001:2::10]:5353 > [2001:2::100]:53 iface lvt0'
`

// tracePacket is `lvsd trace -packet DESC`.
func tracePacket(ctl, desc string, rest []string) int {
	if len(rest) > 0 {
		fmt.Fprintf(os.Stderr, "lvsd trace: -packet takes no filter (%q)\n", strings.Join(rest, " "))
		return 2
	}
	if _, err := control.ParsePacket(desc); err != nil {
		fmt.Fprintf(os.Stderr, "lvsd trace: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return traceExit(control.TracePacket(ctx, ctl, desc, os.Stdout))
}

// runTrace is `lvsd trace`.
func runTrace(args []string) int {
	fs := flag.NewFlagSet("lvsd trace", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), traceUsage); fs.PrintDefaults() }
	n := fs.Int("n", 1, "packets to explain (1..1000)")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	ctl := fs.String("control", "", "control socket of the lvsd to trace")
	packet := fs.String("packet", "", "explain this described packet in a dry run instead of live packets")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *packet != "" {
		return tracePacket(controlFlag(*ctl), *packet, fs.Args())
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
	return traceExit(control.Trace(ctx, controlFlag(*ctl), filter, *n, *timeout, os.Stdout))
}

// traceExit reports err of a trace and returns the exit status: 2 for a
// request lvsd refused (a bad filter or packet), 1 for any other failure.
func traceExit(err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "lvsd trace: %v\n", err)
	var bad *control.BadRequestError
	if errors.As(err, &bad) {
		return 2
	}
	return 1
}
