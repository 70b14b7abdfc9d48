package e2e

import (
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestTrace runs `lvsd trace` on a service over a NAT, a DR and a TUN real
// server (wrr 3:2:1) and a service whose real servers all have weight 0,
// and checks the explanations: the connection attempt to the second is a
// drop with reason no-dest; a SYN to the first names the service, the
// scheduler's inputs, its decision and the rewrite of its method (NAT: the
// destination becomes RIP:port; DR: only the MAC changes; TUN: IPIP to
// the real server). A filter that does not parse names its word.
func TestTrace(t *testing.T) {
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	dt := l.DirectLab(lab.RealNAT, lab.RealDR, lab.RealTUNLvsd)
	dt.StartHTTP(bin, 80)
	dt.StartRealservers(bin)
	web := dt.Service(lab.Service{Protocol: "tcp", Port: 80, Scheduler: "wrr", Method: "dr", Weights: []int{3, 2, 1}})
	none := dt.Service(lab.Service{Protocol: "tcp", Port: 81, Scheduler: "wrr", Method: "dr", Weights: []int{0, 0, 0}})
	dt.StartLvsd(bin, lab.LvsdOptions{}, web, none)

	out, err := exec.Command(bin.Lvsd, "trace", "-control", dt.Control, "tcp", "prot", "80").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `"prot" (word 2)`) {
		t.Errorf("bad filter: %v\n%s\nwant an error naming the word", err, out)
	}

	cmd := exec.Command(bin.Lvsd, "trace", "-control", dt.Control, "-n", "150", "-timeout", "8s", "tcp", "and", "host", lab.ClientIP.String())
	// The command's output is written by exec's goroutine while the test
	// reads it: lockedBuffer serialises the two.
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The trace is armed once lvsd answered the request; wait for it by
	// probing a port nothing listens on until the trace shows its drop.
	deadline := 50
	for i := 0; i < deadline && !strings.Contains(stdout.String(), "reason no-dest"); i++ {
		lab.ProbeTCP(dt.Client, netip.AddrPortFrom(lab.VIP, 81))
	}
	res := dt.Get(bin, "http://"+lab.VIP.String()+"/", 6)
	if res.OK != 6 {
		t.Errorf("requests during the trace: %d ok of 6: %v", res.OK, res.Errors)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("lvsd trace: %v\n%s", err, stderr.String())
	}
	blocks := splitBlocks(stdout.String())
	find := func(has ...string) string {
	next:
		for _, b := range blocks {
			for _, h := range has {
				if !strings.Contains(b, h) {
					continue next
				}
			}
			return b
		}
		return ""
	}
	vip := lab.VIP.String()
	checks := []struct {
		name string
		has  []string
	}{
		{"drop", []string{vip + ":81 [S]", "service:    TCP " + vip + ":81 scheduler wrr", "verdict:    drop, reason no-dest", "weight 0"}},
		{"nat", []string{vip + ":80 [S]", "service:    TCP " + vip + ":80 scheduler wrr", "scheduler inputs", "weight 3", "(nat)\n", "after ", ":80 [S]", "verdict:    transmit"}},
		{"dr", []string{vip + ":80 [S]", "(dr)\n", "verdict:    transmit"}},
		{"tun", []string{vip + ":80 [S]", "(tun)\n", "after  ", "IPIP ", "verdict:    transmit"}},
	}
	for _, c := range checks {
		b := find(c.has...)
		if b == "" {
			t.Errorf("no %s explanation with %q in the trace:\n%s", c.name, c.has, stdout.String())
			continue
		}
		t.Logf("%s:\n%s", c.name, b)
	}
	// NAT rewrites the destination to a real server's address; DR keeps
	// the VIP.
	if b := find(vip+":80 [S]", "(nat)\n"); b != "" && strings.Contains(afterLine(b), "> "+vip) {
		t.Errorf("NAT rewrite kept the VIP:\n%s", b)
	}
	if b := find(vip+":80 [S]", "(dr)\n"); b != "" && !strings.Contains(afterLine(b), "> "+vip+":80") {
		t.Errorf("DR rewrite changed the destination address:\n%s", b)
	}
}

// lockedBuffer is a strings.Builder safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// splitBlocks splits a trace into one explanation per packet: a line that
// does not start with a space begins one.
func splitBlocks(s string) []string {
	var bs []string
	for _, line := range strings.SplitAfter(s, "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") || len(bs) == 0 {
			bs = append(bs, line)
			continue
		}
		bs[len(bs)-1] += line
	}
	return bs
}

func afterLine(b string) string {
	for _, l := range strings.Split(b, "\n") {
		if strings.Contains(l, "after  ") {
			return l
		}
	}
	return ""
}
