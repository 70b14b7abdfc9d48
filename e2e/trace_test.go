package e2e

import (
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
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
	t.Parallel()
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

// TestTracePacket runs `lvsd trace -packet` on an rr service over a NAT, a
// DR and a TUN real server and on a service whose real servers all have
// weight 0. Each described SYN, traced twice, names the service, the
// scheduler's inputs, the real server rr chooses next and the rewrite of
// its method (NAT: the destination becomes RIP:80; DR: only the MACs
// change; TUN: IPIP to the real server); the real connection made after
// it goes to that server: the traces did not move rr, and over three
// rounds the real connections go round the three servers in order. The
// SYN to the other service is a drop with reason no-dest. A description
// that does not parse names its word.
func TestTracePacket(t *testing.T) {
	lab.Skip(t)
	t.Parallel()
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	dt := l.DirectLab(lab.RealNAT, lab.RealDR, lab.RealTUNLvsd)
	dt.StartHTTP(bin, 80)
	dt.StartRealservers(bin)
	web := dt.Service(lab.Service{Protocol: "tcp", Port: 80, Scheduler: "rr"})
	none := dt.Service(lab.Service{Protocol: "tcp", Port: 81, Scheduler: "rr", Weights: []int{0, 0, 0}})
	dt.StartLvsd(bin, lab.LvsdOptions{}, web, none)

	trace := func(desc string) (string, error) {
		out, err := exec.Command(bin.Lvsd, "trace", "-control", dt.Control, "-packet", desc).CombinedOutput()
		return string(out), err
	}
	out, err := trace("tcp " + lab.ClientIP.String() + ":40000 to " + lab.VIP.String() + ":80")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(out, `"to" (word 3)`) {
		t.Errorf("bad description: %v\n%s\nwant exit status 2 and an error naming the word", err, out)
	}

	// One request to each server resolves their MACs (a dry run does not
	// wait for a neighbour) and brings rr back to its first server.
	if res := dt.Get(bin, "http://"+lab.VIP.String()+"/", 3); res.OK != 3 || len(res.Servers) != 3 {
		t.Fatalf("warm-up: %d ok of 3, servers %v: %v", res.OK, res.Servers, res.Errors)
	}
	byAddr := map[string]lab.Real{}
	for _, r := range dt.Reals {
		byAddr[r.Addr.String()] = r
	}
	vip := lab.VIP.String()
	decision := regexp.MustCompile(`decision:   ([0-9.]+):80 \((nat|dr|tun)\)`)
	var order []string
	blocks := map[string]string{}
	for round := range 3 {
		desc := fmt.Sprintf("tcp %s:%d > %s:80 flags S", lab.ClientIP, 41000+round, vip)
		var first string
		for i := range 2 {
			out, err := trace(desc)
			if err != nil {
				t.Fatalf("lvsd trace -packet %q: %v\n%s", desc, err, out)
			}
			m := decision.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("round %d: no decision in\n%s", round, out)
			}
			if i == 0 {
				first = m[1]
				blocks[m[2]] = out
			} else if m[1] != first {
				t.Fatalf("round %d: the second trace chose %s, the first %s: the first moved rr\n%s", round, m[1], first, out)
			}
		}
		r, ok := byAddr[first]
		if !ok {
			t.Fatalf("round %d: the trace chose %s, not a real server", round, first)
		}
		res := dt.Get(bin, "http://"+vip+"/", 1)
		if res.OK != 1 || res.Servers[r.Name] != 1 {
			t.Errorf("round %d: the traces said %s (%s); the real connection went to %v (%v)", round, first, r.Name, res.Servers, res.Errors)
		}
		order = append(order, r.Name)
	}
	// rr goes down the kernel's list, which a configuration adds in
	// reverse (rs3 rs2 rs1), from wherever the warm-up left it.
	if o := strings.Join(order, " "); !strings.Contains("rs3 rs2 rs1 rs3 rs2 rs1", o) {
		t.Errorf("rr order over the rounds %v: not each server in turn", order)
	}

	checks := map[string][]string{
		"nat": {"described packet on lvttap0:", "service:    TCP " + vip + ":80 scheduler rr", "connection: none", "scheduler inputs:",
			"weight 1 active ", "health unchecked", "new:        a connection would be created",
			"after  02:00:5e:10:00:01 > ", "> 198.18.2.11:80 [S]", "verdict:    transmit (dry run"},
		"dr":  {"service:    TCP " + vip + ":80 scheduler rr", "decision:   198.18.1.22:80 (dr)", "TCP " + lab.ClientIP.String() + ":4100", " > " + vip + ":80 [S]", "verdict:    transmit"},
		"tun": {"decision:   198.18.1.23:80 (tun)", "after  02:00:5e:10:00:01 > ", "IPIP 198.18.1.1 > 198.18.1.23: TCP ", "verdict:    transmit"},
	}
	for m, has := range checks {
		b := blocks[m]
		for _, h := range has {
			if !strings.Contains(b, h) {
				t.Errorf("%s explanation lacks %q:\n%s", m, h, b)
			}
		}
		t.Logf("%s:\n%s", m, b)
	}
	// DR keeps the VIP as the destination; NAT does not.
	if !strings.Contains(afterLine(blocks["dr"]), "> "+vip+":80 [S]") || strings.Contains(afterLine(blocks["nat"]), "> "+vip) {
		t.Errorf("rewrites: DR %q, NAT %q", afterLine(blocks["dr"]), afterLine(blocks["nat"]))
	}

	out, err = trace(fmt.Sprintf("tcp %s:42000 > %s:81", lab.ClientIP, vip))
	for _, h := range []string{"service:    TCP " + vip + ":81 scheduler rr", "weight 0", "decision:   none", "verdict:    drop, reason no-dest"} {
		if err != nil || !strings.Contains(out, h) {
			t.Errorf("drop explanation lacks %q (%v):\n%s", h, err, out)
		}
	}
	t.Logf("drop:\n%s", out)
}
