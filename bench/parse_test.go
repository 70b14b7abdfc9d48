//go:build linux

package main

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want wrkResult
	}{
		{
			name: "with errors",
			out: `Running 10s test @ http://198.18.1.100:80/index.html
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.12ms    1.00ms  20.00ms   80.00%
    Req/Sec     7.00k   500.00     8.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%    3.50ms
     90%    4.00ms
     99%    1.20s
  140000 requests in 10.00s, 30.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:  14000.50
Transfer/sec:      3.00MB
`,
			want: wrkResult{rps: 14000.5, p50: 0.85, p99: 1200, errors: 11,
				errText: "Socket errors: connect 1, read 2, write 0, timeout 3; Non-2xx or 3xx responses: 5"},
		},
		{
			name: "clean",
			out: `  Latency Distribution
     50%    1.21ms
     75%    2.00ms
     90%    3.00ms
     99%    5.75ms
Requests/sec:   9300.00
`,
			want: wrkResult{rps: 9300, p50: 1.21, p99: 5.75},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseWrk = %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := parseWrk("unable to connect to 198.18.1.100:80 Connection refused"); err == nil {
		t.Error("parseWrk of a failure: no error")
	}
}

func TestParseIperf2(t *testing.T) {
	out := `------------------------------------------------------------
Client connecting to 198.18.1.100, UDP port 9
------------------------------------------------------------
[  2] local 198.18.1.10 port 40000 connected with 198.18.1.100 port 9
[  1] local 198.18.1.10 port 40001 connected with 198.18.1.100 port 9
[ ID] Interval       Transfer     Bandwidth
[  2] 0.0000-3.0042 sec  38.3 MBytes   107 Mbits/sec
[  2] Sent 628091 datagrams
[  1] 0.0000-3.0000 sec  53.2 MBytes   149 Mbits/sec
[  1] Sent 871520 datagrams
[SUM] 0.0000-3.0042 sec  91.5 MBytes   256 Mbits/sec
[SUM-2] Sent 1499611 datagrams
`
	sent, secs, err := parseIperf2(out)
	if err != nil {
		t.Fatal(err)
	}
	if sent != 1499611 || secs != 3.0042 {
		t.Errorf("parseIperf2 = %v datagrams, %v s; want 1499611, 3.0042", sent, secs)
	}
	// One thread: no SUM line.
	sent, _, err = parseIperf2("[  1] 0.0000-1.0000 sec  58.5 MBytes   164 Mbits/sec\n[  1] Sent 958590 datagrams\n")
	if err != nil || sent != 958590 {
		t.Errorf("parseIperf2 (one thread) = %v, %v; want 958590", sent, err)
	}
	if _, _, err := parseIperf2("connect failed: Connection refused"); err == nil {
		t.Error("parseIperf2 of a failure: no error")
	}
}

func TestParseIperf3(t *testing.T) {
	gbps, retr, err := parseIperf3(`{"start":{},"end":{"sum_sent":{"bits_per_second":1.1e10,"retransmits":7},"sum_received":{"bits_per_second":1.07e10}}}`)
	if err != nil || math.Abs(gbps-10.7) > 1e-9 || retr != 7 {
		t.Errorf("parseIperf3 = %v, %v, %v; want 10.7, 7, nil", gbps, retr, err)
	}
	if _, _, err := parseIperf3(`{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`); err == nil ||
		!strings.Contains(err.Error(), "unable to connect") {
		t.Errorf("parseIperf3 of a failure: %v", err)
	}
}

func TestParseProcPidStat(t *testing.T) {
	// Field 2 may hold spaces and parentheses.
	s := "4242 (lvsd (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 7 0 100 0 0"
	got, err := parseProcPidStat(s)
	if err != nil || got != 325 {
		t.Errorf("parseProcPidStat = %v, %v; want 325", got, err)
	}
}

func TestStats(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if lo, hi := minMax([]float64{3, 1, 2}); lo != 1 || hi != 3 {
		t.Errorf("minMax = %v, %v", lo, hi)
	}
	if got := formatNum(14000.4, 0); got != "14,000" {
		t.Errorf("formatNum = %q", got)
	}
	if got := formatNum(1234567.891, 1); got != "1,234,567.9" {
		t.Errorf("formatNum = %q", got)
	}
}

func TestRotate(t *testing.T) {
	s := []string{"a", "b", "c"}
	for k, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(s, k); !reflect.DeepEqual(got, want) {
			t.Errorf("rotate(%d) = %v, want %v", k, got, want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	f, err := parseFlags([]string{"-quick", "-only", "nft, lvsd-nat", "-workloads", "udp,tcp1"})
	if err != nil {
		t.Fatal(err)
	}
	if f.rounds != 1 || f.duration != 3*time.Second {
		t.Errorf("-quick: rounds %d duration %v", f.rounds, f.duration)
	}
	// Returned in the canonical order, whatever the order given.
	if !reflect.DeepEqual(f.only, []string{"lvsd-nat", "nft"}) || !reflect.DeepEqual(f.workloads, []string{"tcp1", "udp"}) {
		t.Errorf("only %v workloads %v", f.only, f.workloads)
	}
	for _, bad := range [][]string{{"-only", "ipvs"}, {"-rounds", "0"}, {"-workloads", "tcp2"}, {"extra"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q): no error", bad)
		}
	}
}

// TestRelativePairs: the relative table compares lvsd with the other
// contestants of its own topology only, lvsd-nat-routed with nft-routed.
func TestRelativePairs(t *testing.T) {
	got := relativePairs([]string{"lvsd-nat", "lvsd-nat-routed", "nft", "nft-routed", "haproxy"})
	want := [][2]string{
		{"lvsd-nat", "nft"}, {"lvsd-nat", "haproxy"},
		{"lvsd-nat-routed", "nft-routed"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("relativePairs = %v, want %v", got, want)
	}
	if p := relativePairs([]string{"lvsd-nat-routed", "nft"}); len(p) != 0 {
		t.Fatalf("a routed lvsd paired with the one-armed nft: %v", p)
	}
}

// TestParseFlagsRouted: the routed contestants are known to -only and
// included by default.
func TestParseFlagsRouted(t *testing.T) {
	f, err := parseFlags([]string{"-only", "nft-routed,lvsd-nat-routed"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.only, []string{"lvsd-nat-routed", "nft-routed"}) {
		t.Fatalf("only = %v", f.only)
	}
	f, err = parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range f.only {
		if isRouted(c) {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("default contestants %v: want the three routed ones", f.only)
	}
}

// TestParseFlagsDefaults: a plain run has 5 rounds (medians of at least 5,
// issue 14), every contestant but the queue sweep's, the AF_PACKET routed
// one included.
func TestParseFlagsDefaults(t *testing.T) {
	f, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.rounds != 5 {
		t.Errorf("default rounds %d, want 5", f.rounds)
	}
	has := map[string]bool{}
	for _, c := range f.only {
		has[c] = true
	}
	if !has["lvsd-nat-pkt-routed"] || !has["lvsd-nat-routed"] || !has["nft-routed"] {
		t.Errorf("default contestants %v lack a routed one", f.only)
	}
	for _, c := range f.only {
		if strings.Contains(c, "-q") {
			t.Errorf("default contestants %v include the queue sweep's %s", f.only, c)
		}
	}
}

// TestParseFlagsQueueSweep: -queue-sweep adds lvsd-nat and lvsd-nat-pkt at
// 2 and 4 queues to the selection, in the canonical order; a sweep
// contestant can be named in -only; the sweep needs -queues 1.
func TestParseFlagsQueueSweep(t *testing.T) {
	f, err := parseFlags([]string{"-queue-sweep", "-only", "nft,lvsd-nat,lvsd-nat-pkt"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"lvsd-nat", "lvsd-nat-pkt", "nft", "lvsd-nat-q2", "lvsd-nat-q4", "lvsd-nat-pkt-q2", "lvsd-nat-pkt-q4"}
	if !reflect.DeepEqual(f.only, want) {
		t.Errorf("-queue-sweep: only = %v, want %v", f.only, want)
	}
	f, err = parseFlags([]string{"-queue-sweep"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.only); n != len(defaultContestants())+4 {
		t.Errorf("-queue-sweep alone: %d contestants %v, want the %d default ones and 4", n, f.only, len(defaultContestants()))
	}
	f, err = parseFlags([]string{"-only", "lvsd-nat-pkt-q4"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.only, []string{"lvsd-nat-pkt-q4"}) {
		t.Errorf("-only lvsd-nat-pkt-q4: %v", f.only)
	}
	for _, bad := range [][]string{{"-queue-sweep", "-queues", "2"}, {"-only", "lvsd-nat-q2", "-queues", "4"}, {"-only", "lvsd-nat-q3"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q): no error", bad)
		}
	}
	// -queues N without sweep contestants stays valid.
	if _, err := parseFlags([]string{"-queues", "2", "-only", "lvsd-nat"}); err != nil {
		t.Errorf("-queues 2: %v", err)
	}
}

// TestRelativePairsPacketRouted: lvsd-nat-pkt-routed is compared with
// nft-routed, not with the one-armed nft.
func TestRelativePairsPacketRouted(t *testing.T) {
	got := relativePairs([]string{"lvsd-nat-pkt", "lvsd-nat-routed", "lvsd-nat-pkt-routed", "nft", "nft-routed"})
	want := [][2]string{{"lvsd-nat-pkt", "nft"}, {"lvsd-nat-routed", "nft-routed"}, {"lvsd-nat-pkt-routed", "nft-routed"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("relativePairs = %v, want %v", got, want)
	}
}

// TestQueuesMarkdown: the queue table has a row per device and queue count
// that ran, the 1-queue rows from lvsd-nat and lvsd-nat-pkt, and the
// sentence on what the cores can and cannot show; without the sweep it
// says how to run it.
func TestQueuesMarkdown(t *testing.T) {
	val := map[string]float64{"lvsd-nat": 1000, "lvsd-nat-q2": 1200, "lvsd-nat-q4": 900, "lvsd-nat-pkt": 2000, "lvsd-nat-pkt-q2": 2100}
	get := func(key, c string) summary {
		v, ok := val[c]
		if !ok {
			return summary{}
		}
		if key != "http" {
			v /= 1000
		}
		return summary{n: 5, med: v, min: v - 1, max: v + 1, bal: 3.5, busy: 19}
	}
	active := []metric{metricDef("tcp1"), metricDef("http"), metricDef("udp-lossfree")}
	only := []string{"lvsd-nat", "lvsd-nat-pkt", "nft", "lvsd-nat-q2", "lvsd-nat-q4", "lvsd-nat-pkt-q2"}
	md := queuesMarkdown(only, 1, active, 2, get)
	for _, want := range []string{
		"| device | queues | TCP 1 stream (Gbit/s) | HTTP conn/s (conn/s) | lvsd CPU s per HTTP run |\n|---|---:|---:|---:|---:|\n",
		"| TAP | 1 | 1.0 (0.0–2.0) | 1,000 (999–1,001) | 3.50 |\n",
		"| TAP | 2 | 1.2 (0.2–2.2) | 1,200 (1,199–1,201) | 3.50 |\n",
		"| TAP | 4 | 0.9 (-0.1–1.9) | 900 (899–901) | 3.50 |\n",
		"| AF_PACKET | 1 | 2.0 (1.0–3.0) | 2,000 (1,999–2,001) | 3.50 |\n",
		"| AF_PACKET | 2 | 2.1 (1.1–3.1) | 2,100 (2,099–2,101) | 3.50 |\n",
		"What 2 vCPUs can and cannot show",
		"4 queues on 2",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("queue section lacks\n%s\nin\n%s", want, md)
		}
	}
	if strings.Contains(md, "AF_PACKET | 4") || strings.Contains(md, "UDP") {
		t.Errorf("a row or column that did not run:\n%s", md)
	}
	md = queuesMarkdown([]string{"lvsd-nat", "nft"}, 1, active, 2, get)
	if strings.Contains(md, "| device |") || !strings.Contains(md, "BENCHFLAGS=-queue-sweep") || !strings.Contains(md, "What 2 vCPUs") {
		t.Errorf("without the sweep:\n%s", md)
	}
}

// TestDefaultDuration: the default run is 5 rounds of 5 s (the run-time
// budget of docs/benchmarks.md), and the UDP search's steps are a quarter
// of a run, at least 1 s.
func TestDefaultDuration(t *testing.T) {
	f, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.duration != 5*time.Second {
		t.Errorf("default duration %v, want 5s", f.duration)
	}
	for d, want := range map[time.Duration]time.Duration{5 * time.Second: 1250 * time.Millisecond, 3 * time.Second: time.Second, 20 * time.Second: 5 * time.Second} {
		if got := udpStep(d); got != want {
			t.Errorf("udpStep(%v) = %v, want %v", d, got, want)
		}
	}
}
