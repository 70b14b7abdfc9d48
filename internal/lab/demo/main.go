// Command demo shows lvsd balancing HTTP in NAT mode, in network namespaces
// it builds and removes itself. Run it as root from the repository root:
//
//	go run ./internal/lab/demo [-n 12] [-v]
//
// It builds lvsd and the lab server, builds the reference NAT lab (a client,
// a one-armed director with lvsd on a TAP, three real servers), runs lvsd
// with weighted round robin 3:2:1, sends the requests from the client, and
// prints who answered each and which client address that real server saw.
// Everything is torn down on every exit path: success, failure, Ctrl-C
// (SIGINT) or SIGTERM, and panic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

func main() {
	n := flag.Int("n", 12, "number of HTTP requests to send")
	verbose := flag.Bool("v", false, "print the lab's own log lines and lvsd's log at the end")
	flag.Parse()
	os.Exit(run(*n, *verbose))
}

// The reference service: VIP:80 over the real servers' :8080, wrr 3:2:1.
var service = lab.Service{Protocol: "tcp", Port: 80, RealPort: 8080, Scheduler: "wrr", Method: "nat", Weights: []int{3, 2, 1}}

// run returns the exit status: 0 success, 1 failure, 2 usage, 130
// interrupted. Its deferred teardown runs on every path, panics included.
func run(n int, verbose bool) (code int) {
	if n < 1 {
		fmt.Fprintln(os.Stderr, "demo: -n must be at least 1")
		return 2
	}
	if err := preflight(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	// First signal: cancel, which makes the step under way fail and the
	// teardown run. Later signals are absorbed until the teardown is done
	// (a half-done teardown is what would leave namespaces behind).
	ctx, stop := lab.SignalContext("  ")
	defer stop()

	// The lab's log lines (and, on failure, the logs of lvsd and the real
	// servers) go to stderr; without -v only once something failed.
	s := lab.NewSession(ctx, writerFunc(func(b []byte) (int, error) {
		if ctx.Err() != nil {
			return len(b), nil // interrupted: no failure report
		}
		return os.Stderr.Write(b)
	}))
	s.Quiet = !verbose
	var l *lab.Lab
	defer func() {
		r := recover()
		var fe *lab.FatalError
		switch {
		case r == nil:
		case ctx.Err() != nil:
			code = 130
		case errors.As(asError(r), &fe):
			code = 1
		default:
			code = 2
		}
		if r != nil {
			s.Fail()
		}
		if stepOpen {
			if code == 130 {
				done("interrupted")
			} else {
				done("failed")
			}
		}
		switch code {
		case 1:
			fmt.Fprintf(os.Stderr, "\ndemo failed: %s\n\n", fe.Msg)
		case 2:
			fmt.Fprintf(os.Stderr, "\ndemo panicked: %v\n%s\n", r, debug.Stack())
		}
		if l != nil && !s.Failed() {
			step("tearing down the lab")
		}
		s.Close() // the lab's teardown (and failure report): processes, namespaces, files
		lab.RemoveBinaries()
		if l != nil {
			if s.Failed() {
				fmt.Println()
				step("lab torn down")
			}
			if left := lab.ListNamespaces(l.Prefix()); len(left) > 0 {
				done(fmt.Sprintf("namespaces left behind: %v (make clean-lab removes them)", left))
				code = max(code, 1)
			} else {
				done("no namespace left")
			}
		}
		if code == 0 && s.Failed() {
			code = 1
		}
	}()

	fmt.Println()
	fmt.Println("  lvsd demo: a userspace Linux Virtual Server balancing HTTP in NAT mode")
	fmt.Println()

	step("building lvsd and labserver")
	t0 := time.Now()
	bin := lab.BuildBinaries(s)
	done(fmt.Sprintf("%.1fs", time.Since(t0).Seconds()))

	step("building the lab")
	l = lab.New(s)
	tp := l.NATLab(lab.Options{})
	done(fmt.Sprintf("namespaces %s{dir,cli,rs1,rs2,rs3}", l.Prefix()))
	printTopology(tp)

	step("starting the real servers")
	tp.StartHTTP(bin, 8080)
	done("rs1 rs2 rs3 listen on :8080")

	step("starting lvsd")
	t0 = time.Now()
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, service)
	done(fmt.Sprintf("pid %d; VIP %s:80 answered after %s", p.Pid(), lab.VIP, fmtDur(time.Since(t0))))

	fmt.Printf("\n  %d requests from the client (%s) to http://%s/, one connection each:\n\n", n, lab.ClientIP, lab.VIP)
	fmt.Printf("    %4s  %-22s  %-24s  %s\n", "#", "answered by", "client address it saw", "time")
	client := lab.HTTPClient(tp.Client, 5*time.Second)
	reals := map[string]string{}
	for _, r := range tp.Reals {
		reals[r.Name] = r.Addr.String()
	}
	counts := map[string]int{}
	failed := 0
	for i := 1; i <= n; i++ {
		if ctx.Err() != nil {
			s.Fatalf("interrupted")
		}
		t0 := time.Now()
		server, seen, err := get(ctx, client, "http://"+lab.VIP.String()+"/")
		d := time.Since(t0)
		if err != nil {
			if ctx.Err() != nil {
				s.Fatalf("interrupted")
			}
			failed++
			fmt.Printf("    %4d  FAILED: %v\n", i, err)
			continue
		}
		counts[server]++
		fmt.Printf("    %4d  %-22s  %-24s  %s\n", i, server+" ("+reals[server]+")", seen, fmtDur(d))
	}

	fmt.Printf("\n  per real server (weights 3:2:1):\n\n")
	names := make([]string, 0, len(tp.Reals))
	for _, r := range tp.Reals {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	for i, name := range names {
		c := counts[name]
		pct := 100 * float64(c) / float64(n)
		fmt.Printf("    %s  %-13s weight %d  %3d  %-*s %3.0f%%\n", name, reals[name], service.Weights[i], c, n, strings.Repeat("█", c), pct)
	}
	if failed > 0 {
		fmt.Printf("\n  %d of %d requests failed\n", failed, n)
		s.Fail()
	}
	if verbose {
		fmt.Printf("\n  lvsd's log:\n%s\n", indent(p.Output()))
	}
	fmt.Println()
	return 0
}

// preflight explains what the demo needs before it touches anything.
func preflight() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (try: sudo make demo)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	for _, tool := range []string{"ip", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, "the "+tool+" command")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("needs %s", strings.Join(missing, ", "))
	}
	return nil
}

// get makes one request and returns the answering server's name and the
// client address it saw (its answer is "<name> <client-ip:port>").
func get(ctx context.Context, c *http.Client, url string) (server, seen string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s", resp.Status)
	}
	f := strings.Fields(string(body))
	if len(f) < 2 {
		return "", "", fmt.Errorf("unexpected answer %q", body)
	}
	return f[0], f[1], nil
}

func printTopology(tp *lab.Topology) {
	w := service.Weights
	fmt.Printf(`
      client %-12s ──┐
                            │   bridge %s in namespace %s
                            ├── %s ── lvsd (gVisor netstack, MAC %s)
                            │            DIPs %s, %s
                            │            VIP %s:80, wrr, NAT to :8080
      rs1 %-15s ──┤   weight %d
      rs2 %-15s ──┤   weight %d
      rs3 %-15s ──┘   weight %d

`, lab.ClientIP, lab.BridgeName, tp.Director, tp.Device, tp.MAC, tp.Addresses[0], tp.Addresses[1], lab.VIP,
		tp.Reals[0].Addr, w[0], tp.Reals[1].Addr, w[1], tp.Reals[2].Addr, w[2])
}

// stepOpen is true while a step's line waits for its result.
var stepOpen bool

func step(s string) {
	fmt.Printf("  %-34s ", s+" ...")
	stepOpen = true
}

func done(s string) {
	fmt.Printf("%s\n", s)
	stepOpen = false
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return d.Round(10 * time.Millisecond).String()
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

func asError(r any) error {
	if err, ok := r.(error); ok {
		return err
	}
	return fmt.Errorf("%v", r)
}
