//go:build linux

package main

import (
	"fmt"
	"strings"
)

// The device queues' part of the report's scaling section: lvsd-nat (TAP)
// and lvsd-nat-pkt (AF_PACKET) at 1 queue (-queues 1) and at each of
// sweepQueues (the -queue-sweep contestants), TCP throughput and HTTP
// connections per second, medians (min–max) over the rounds.

// queueMetrics are the metrics of the queue table.
var queueMetrics = []string{"tcp1", "tcp4", "http"}

// queueRow is one row of the queue table: a device at a queue count,
// measured by contestant.
type queueRow struct {
	device     string
	queues     int
	contestant string
}

// queueRows are the table's rows for a run whose lvsd contestants ran
// baseQueues queues: each sweep base at baseQueues, then at every sweep
// count, those of only (the selected contestants) only.
func queueRows(only []string, baseQueues int) []queueRow {
	sel := map[string]bool{}
	for _, c := range only {
		sel[c] = true
	}
	var rows []queueRow
	for _, base := range sweepBases {
		if sel[base.name] {
			rows = append(rows, queueRow{base.device, baseQueues, base.name})
		}
		for _, q := range sweepQueues {
			if n := sweepName(base.name, q); sel[n] {
				rows = append(rows, queueRow{base.device, q, n})
			}
		}
	}
	return rows
}

// queuesMarkdown is the "Device queues" part of the scaling section. get
// returns the summary of a metric for a contestant; active are the metrics
// of the run's workloads; cores is the machine's CPU count.
func queuesMarkdown(only []string, baseQueues int, active []metric, cores int, get func(key, contestant string) summary) string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	var ms []metric
	for _, m := range active {
		for _, k := range queueMetrics {
			if m.key == k {
				ms = append(ms, m)
			}
		}
	}
	rows := queueRows(only, baseQueues)
	swept := false
	for _, r := range rows {
		if r.queues != baseQueues {
			swept = true
		}
	}

	w("**Device queues** (`queues` = 1, %s: lvsd NAT's TCP throughput and new HTTP connections per second by the number\n", sweepQueuesText())
	w("of TAP queues or AF_PACKET sockets, one reader thread each; the lab's figures, median (min–max) over the rounds).\n")
	if !swept || len(ms) == 0 {
		w("Not measured in this run: `make bench BENCHFLAGS=-queue-sweep` adds the contestants\n%s (with `-queues 1`).\n\n",
			strings.Join(sweepNames(), ", "))
	} else {
		w("The 1-queue rows are lvsd-nat and lvsd-nat-pkt themselves; the others are the `-queue-sweep` contestants.\n\n")
		w("| device | queues |")
		for _, m := range ms {
			w(" %s (%s) |", m.column, m.unit)
		}
		w(" lvsd CPU s per HTTP run |\n|---|---:|%s---:|\n", strings.Repeat("---:|", len(ms)))
		for _, r := range rows {
			w("| %s | %d |", r.device, r.queues)
			cpu := "–"
			for _, m := range ms {
				s := get(m.key, r.contestant)
				w(" %s |", s.cell(m))
				if m.key == "http" && s.n > 0 && s.bal >= 0 {
					cpu = fmt.Sprintf("%.2f", s.bal)
				}
			}
			w(" %s |\n", cpu)
		}
		w("\n")
	}
	w("What %d vCPUs can and cannot show: the load generator (iperf3, wrk), the real servers' nginx and lvsd share them,\n", cores)
	w("so a second queue helps only where one lvsd thread leaves a CPU idle (the second reader works while the first is\n")
	w("inside a system call doing the receivers' work), and the figures show what the queues cost (the hand-off between\n")
	w("threads, more threads to schedule) as much as what they gain. They cannot show scaling with cores: with more\n")
	w("queues than CPUs (4 queues on %d) the readers cannot run in parallel at all, and even 2 queues compete with the\n", cores)
	w("generator and the servers. One TCP stream cannot gain from any queue count: a flow's frames all reach one queue\n")
	w("(the TAP steers both directions of a flow to the queue lvsd writes it on; the fanout group hashes a flow to one\n")
	w("socket). Scaling needs a machine with more cores than queues, the generator on other cores or another host.\n\n")
	return sb.String()
}

// sweepNames are the queue sweep's contestants, in allContestants' order.
func sweepNames() []string {
	var n []string
	for _, c := range allContestants {
		if c.sweep > 0 {
			n = append(n, c.name)
		}
	}
	return n
}
