package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lvsd/lvsd/control"
)

// LvsdOptions are the optional settings of Topology.StartLvsd.
type LvsdOptions struct {
	// UID, when not 0, runs lvsd as that uid and gid with no supplementary
	// groups and no capabilities (setpriv). The lab's device must belong to
	// it (Options.Owner). If /dev/net/tun is not read-write for others, the
	// process gets a node of its own (see the package comment).
	UID int
	// Args are added after `run -c FILE`, e.g. "-log-level", "debug".
	Args []string
	// Env is added to lvsd's environment.
	Env []string
	// DefaultControl runs lvsd without -control: it picks its socket
	// itself (/run/lvsd, or $XDG_RUNTIME_DIR when unprivileged), and
	// Topology.Control stays empty.
	DefaultControl bool
	// ReadyTimeout bounds the wait for the VIP to answer; 0 means 30 s.
	ReadyTimeout time.Duration
	// Ready, when set, is the readiness probe: one attempt, nil when lvsd
	// is ready. By default the client connects to the first TCP service's
	// VIP:port, else sends a datagram to the first UDP service's and waits
	// for any answer, else pings the VIP.
	Ready func() error
	// NoWait returns right after starting, without probing.
	NoWait bool
}

// StartLvsd writes the configuration of services (Config) into the lab's
// scratch directory, runs `lvsd run -c FILE` in the director namespace, and
// waits until the VIP answers from the client namespace. If lvsd exits or
// the probe keeps failing, the test fails (the teardown prints lvsd's log).
//
// The default probe goes through the fast path, so it makes the scheduler
// pick a real server: a scheduler's later picks start where the probe left
// them. Counts over a whole number of scheduler rounds (300 requests with
// weights 3:2:1) do not depend on that.
func (tp *Topology) StartLvsd(bin Binaries, o LvsdOptions, services ...Service) *Proc {
	l := tp.Lab
	l.t.Helper()
	if bin.Lvsd == "" {
		l.t.Fatalf("lab: StartLvsd: no lvsd binary (use BuildBinaries)")
	}
	l.mu.Lock()
	n := len(l.procs)
	l.mu.Unlock()
	cfg := l.WriteFile(fmt.Sprintf("lvsd-%02d.toml", n), tp.Config(services...))
	// Each lvsd gets a control socket of its own in the scratch directory,
	// for `lvsd list` and Topology.Status.
	ctl := filepath.Join(l.dir, fmt.Sprintf("lvsd-%02d.sock", n))
	argv := []string{bin.Lvsd, "run", "-c", cfg}
	if o.DefaultControl {
		tp.Control = ""
	} else {
		tp.Control = ctl
		argv = append(argv, "-control", ctl)
	}
	argv = append(argv, o.Args...)
	if o.UID != 0 {
		argv = tp.Lab.asUser(o.UID, argv)
	}
	p := l.StartWith(tp.Director, "lvsd", ProcOptions{Env: o.Env}, argv...)
	if o.NoWait {
		return p
	}
	probe := o.Ready
	if probe == nil {
		probe = tp.defaultProbe(services)
	}
	timeout := o.ReadyTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	start := time.Now()
	var err error
	attached := false
	for {
		if exited, werr := p.Exited(); exited {
			l.t.Fatalf("lab: lvsd exited during start (%v); its last output:\n%s\n(its config and whole log follow at teardown)", werr, tail(p.Output(), 2<<10))
		}
		// Probe only once lvsd holds the device (it has carrier then): a
		// probe sent earlier leaves the client waiting a second for its
		// next ARP retransmission.
		if !attached {
			attached = tp.Lab.hasCarrier(tp.Director, tp.Device)
			err = fmt.Errorf("%s has no carrier: lvsd has not attached to it", tp.Device)
		}
		if attached {
			err = probe()
		}
		// lvsd serves its control socket beside forwarding, not
		// before it: a test that asks the socket right after the probe
		// must find it there. (An lvsd run as another user cannot
		// make its socket in the lab's scratch directory, and runs
		// without one.)
		if err == nil && tp.Control != "" && o.UID == 0 && !control.Live(tp.Control) {
			err = fmt.Errorf("control socket %s not served yet", tp.Control)
		}
		if err == nil {
			l.t.Logf("lab: lvsd ready after %v", time.Since(start).Round(time.Millisecond))
			return p
		}
		if time.Since(start) > timeout {
			break
		}
		if !sleepCtx(l.t.Context(), 20*time.Millisecond) {
			err = l.t.Context().Err()
			break
		}
	}
	l.t.Fatalf("lab: lvsd not ready after %v: last probe: %v (its config and log follow at teardown)", time.Since(start).Round(time.Millisecond), err)
	return nil
}

// Status queries the control socket of the lvsd started last.
func (tp *Topology) Status() *control.Status {
	tp.Lab.t.Helper()
	ctx, cancel := context.WithTimeout(tp.Lab.t.Context(), 5*time.Second)
	defer cancel()
	st, err := control.Get(ctx, tp.Control)
	if err != nil {
		tp.Lab.t.Fatalf("lab: %v", err)
	}
	return st
}

// asUser wraps argv to run as uid (and gid uid) without supplementary
// groups; setresuid from root to another uid clears every capability.
func (l *Lab) asUser(uid int, argv []string) []string {
	l.t.Helper()
	u := strconv.Itoa(uid)
	argv = append([]string{"setpriv", "--reuid", u, "--regid", u, "--clear-groups", "--inh-caps", "-all", "--"}, argv...)
	fi, err := os.Stat("/dev/net/tun")
	if err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	if fi.Mode().Perm()&0o006 == 0o006 {
		return argv
	}
	// The host's node is root-only: give this process a node of its own,
	// mounted over /dev/net/tun in the private mount namespace of its
	// `ip netns exec` (mounts there do not propagate back to the host).
	node := filepath.Join(l.dir, "dev-net-tun")
	if _, err := os.Stat(node); err != nil {
		if err := mknodTun(node); err != nil {
			l.t.Fatalf("lab: device node for an unprivileged lvsd: %v", err)
		}
	}
	return append([]string{"sh", "-c", `mount --bind "$0" /dev/net/tun && exec "$@"`, node}, argv...)
}

// defaultProbe returns the default readiness probe of StartLvsd.
func (tp *Topology) defaultProbe(services []Service) func() error {
	for _, s := range services {
		if s.protocol() == "tcp" {
			return func() error { return ProbeTCP(tp.Client, netip.AddrPortFrom(s.vip(), s.Port)) }
		}
	}
	for _, s := range services {
		if s.protocol() == "udp" {
			return func() error { return ProbeUDP(tp.Client, netip.AddrPortFrom(s.vip(), s.Port)) }
		}
	}
	return func() error {
		out, err := tp.Lab.TryExec(tp.Client, 5*time.Second, "ping", "-n", "-q", "-c", "1", "-W", "1", VIP.String())
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
}

// ProbeTCP connects from ns to ap (one attempt, 3 s) and closes at once.
//
// The attempt outlasts the client's first SYN retransmission (1 s): lvsd
// creates the connection on the first SYN and drops the SYN while the real
// server's MAC is still being resolved, so the retransmission completes
// that same connection. A shorter attempt would leave it behind half-open
// for the SYN_RECV timeout (60 s), holding a persistence template and a
// count of the real server's connections that tests then see.
func ProbeTCP(ns NS, ap netip.AddrPort) error {
	return Do(ns, func() error {
		c, err := net.DialTimeout("tcp", ap.String(), 3*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// ProbeUDP sends "probe" from ns to ap and waits 500 ms for any answer.
func ProbeUDP(ns NS, ap netip.AddrPort) error {
	var c *net.UDPConn
	err := Do(ns, func() error {
		var err error
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("probe")); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 1500)
	if _, err := c.Read(buf); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("udp %s: no answer within 500ms", ap)
		}
		return err
	}
	return nil
}

// DeviceOwner returns the uid owning a TAP/TUN in ns, from `ip -d link`.
func (l *Lab) DeviceOwner(ns NS, dev string) string {
	l.t.Helper()
	out := l.IP(ns, "-d", "-o", "link", "show", "dev", dev)
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "user" {
			return f[i+1]
		}
	}
	return ""
}

// hasCarrier reports whether dev in ns has carrier (LOWER_UP): for a TAP or
// TUN, whether a process has attached to it.
func (l *Lab) hasCarrier(ns NS, dev string) bool {
	out, err := runCmd(l.t.Context(), cmdTimeout, "", "ip", "-n", string(ns), "-o", "link", "show", "dev", dev)
	return err == nil && strings.Contains(out, "LOWER_UP")
}
