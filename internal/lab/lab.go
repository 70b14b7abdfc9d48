package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// T is the part of testing.TB a lab uses. *testing.T and *testing.B satisfy
// it; programs use a *Session.
type T interface {
	Helper()
	Cleanup(func())
	Context() context.Context
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
}

// NS is the name of a network namespace made by a lab.
type NS string

// Timeouts of the lab's own commands.
const (
	cmdTimeout  = 20 * time.Second // one ip, sysctl or similar command
	stopTimeout = 5 * time.Second  // SIGTERM to exit, then SIGKILL to exit
	linkTimeout = 10 * time.Second // a link to come up
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

var labSeq atomic.Int32

// Lab is a set of namespaces and processes with one teardown. Make one with
// New; its methods call T.Fatalf on failure, so a test reads top to bottom.
//
// A Lab is meant to be used from the goroutine that made it (the methods
// that call T.Fatalf must run there); its lists are guarded so that
// teardown is safe whatever runs.
type Lab struct {
	t      T
	prefix string // "lvt-<pid>-<n>-": every namespace of this lab
	dir    string // scratch directory (0755): configs, logs, device nodes

	mu       sync.Mutex
	closed   bool     // guarded by mu
	nss      []NS     // guarded by mu; in creation order
	procs    []*Proc  // guarded by mu; in start order
	files    []string // guarded by mu; written by WriteFile, in order
	tornDown chan struct{}
}

// New makes an empty lab whose teardown is registered with t.Cleanup. It
// first removes what dead lab processes left behind (see RemoveStale).
func New(t T) *Lab {
	t.Helper()
	RemoveStale(t.Logf)
	prefix := fmt.Sprintf("lvt-%d-%d-", os.Getpid(), labSeq.Add(1))
	dir, err := os.MkdirTemp("", prefix+"scratch-")
	if err != nil {
		t.Fatalf("lab: scratch directory: %v", err)
	}
	// Readable by an lvsd that runs as another user (configs, binaries).
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("lab: scratch directory: %v", err)
	}
	l := &Lab{t: t, prefix: prefix, dir: dir, tornDown: make(chan struct{})}
	t.Cleanup(l.Close)
	return l
}

// Prefix returns the prefix of every namespace name of this lab,
// "lvt-<pid>-<n>-".
func (l *Lab) Prefix() string { return l.prefix }

// Dir returns the lab's scratch directory (mode 0755), removed at teardown
// unless LVSD_LAB_KEEP=1.
func (l *Lab) Dir() string { return l.dir }

// WriteFile writes a file (mode 0644) into the scratch directory and returns
// its path.
func (l *Lab) WriteFile(name, content string) string {
	l.t.Helper()
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	l.mu.Lock()
	l.files = append(l.files, p)
	l.mu.Unlock()
	return p
}

// Namespace creates the namespace lvt-<pid>-<n>-<role> with its loopback up.
func (l *Lab) Namespace(role string) NS {
	l.t.Helper()
	ns := NS(l.prefix + role)
	l.mu.Lock()
	closed := l.closed
	if !closed {
		// Listed first: the teardown deletes it even if `ip netns add`
		// times out after making it.
		l.nss = append(l.nss, ns)
	}
	l.mu.Unlock()
	if closed {
		l.t.Fatalf("lab: namespace %s: lab already torn down", ns)
	}
	l.run("", "ip", "netns", "add", string(ns))
	l.IP(ns, "link", "set", "lo", "up")
	return ns
}

// Namespaces returns the namespaces of this lab, in creation order.
func (l *Lab) Namespaces() []NS {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]NS(nil), l.nss...)
}

// IP runs `ip -n NS args...` and returns its output.
func (l *Lab) IP(ns NS, args ...string) string {
	l.t.Helper()
	return l.run("", "ip", append([]string{"-n", string(ns)}, args...)...)
}

// Exec runs a command (args[0] is the program) inside ns (`ip netns exec NS
// args...`) to completion within 20 s, and returns its combined output;
// failure is fatal.
func (l *Lab) Exec(ns NS, args ...string) string {
	l.t.Helper()
	return l.run(ns, args[0], args[1:]...)
}

// TryExec runs a command inside ns to completion within timeout and returns
// its combined output and error; failure is not fatal.
func (l *Lab) TryExec(ns NS, timeout time.Duration, args ...string) (string, error) {
	return runCmd(l.t.Context(), timeout, ns, args[0], args[1:]...)
}

// Sysctl sets a sysctl inside ns: `sysctl -q -w key=value`.
func (l *Lab) Sysctl(ns NS, key, value string) {
	l.t.Helper()
	l.run(ns, "sysctl", "-q", "-w", key+"="+value)
}

// Bridge creates a bridge in ns and sets it up. It has no STP and no
// forwarding delay, so ports forward at once, and no multicast snooping, so
// multicast (IPv6 neighbour discovery) always reaches every port, lvsd's
// TAP included, whether or not lvsd's netstack sends MLD reports.
func (l *Lab) Bridge(ns NS, name string) {
	l.t.Helper()
	l.checkLinkName(name)
	l.IP(ns, "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
	l.IP(ns, "link", "set", name, "up")
}

// Veth creates a veth pair with one end, name1, in ns1 and the other, name2,
// in ns2 (created there directly: nothing passes through the root
// namespace), and sets both up.
func (l *Lab) Veth(ns1 NS, name1 string, ns2 NS, name2 string) {
	l.t.Helper()
	l.checkLinkName(name1)
	l.checkLinkName(name2)
	l.run("", "ip", "link", "add", name1, "netns", string(ns1), "type", "veth", "peer", "name", name2, "netns", string(ns2))
	l.IP(ns1, "link", "set", name1, "up")
	l.IP(ns2, "link", "set", name2, "up")
}

// Enslave makes dev a port of bridge br in ns.
func (l *Lab) Enslave(ns NS, dev, br string) {
	l.t.Helper()
	l.IP(ns, "link", "set", dev, "master", br)
}

// TunTap creates a persistent TAP (mode "tap") or TUN (mode "tun") device in
// ns owned by uid, multi-queue when multiQueue, and sets it up. The device
// has no carrier until a process attaches to it.
func (l *Lab) TunTap(ns NS, name, mode string, uid int, multiQueue bool) {
	l.t.Helper()
	l.checkLinkName(name)
	args := []string{"tuntap", "add", name, "mode", mode, "user", fmt.Sprint(uid)}
	if multiQueue {
		args = append(args, "multi_queue")
	}
	l.IP(ns, args...)
	l.IP(ns, "link", "set", name, "up")
}

// Addr adds an address with its prefix length (198.18.1.10/24) to dev in ns.
// IPv6 addresses skip duplicate address detection.
func (l *Lab) Addr(ns NS, dev, prefix string) {
	l.t.Helper()
	args := []string{"addr", "add", prefix, "dev", dev}
	if strings.Contains(prefix, ":") {
		args = append(args, "nodad")
	}
	l.IP(ns, args...)
}

// Route adds a route in ns: `ip route add args...` (`ip -6 route` when the
// first argument is an IPv6 prefix or address).
func (l *Lab) Route(ns NS, args ...string) {
	l.t.Helper()
	if len(args) > 0 && strings.Contains(args[0], ":") {
		l.IP(ns, append([]string{"-6", "route", "add"}, args...)...)
		return
	}
	l.IP(ns, append([]string{"route", "add"}, args...)...)
}

// WaitLinkUp waits until dev in ns has carrier and is operationally up (or
// unknown, as loopback-like devices report), for at most 10 s.
func (l *Lab) WaitLinkUp(ns NS, dev string) {
	l.t.Helper()
	deadline := time.Now().Add(linkTimeout)
	var last string
	for {
		out, err := runCmd(l.t.Context(), cmdTimeout, "", "ip", "-n", string(ns), "-o", "link", "show", "dev", dev)
		last = strings.TrimSpace(out)
		if err == nil && strings.Contains(out, "LOWER_UP") &&
			(strings.Contains(out, "state UP") || strings.Contains(out, "state UNKNOWN")) {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("lab: link %s in %s not up after %v: %s", dev, ns, linkTimeout, last)
		}
		if !sleepCtx(l.t.Context(), 20*time.Millisecond) {
			l.t.Fatalf("lab: waiting for link %s in %s: %v", dev, ns, l.t.Context().Err())
		}
	}
}

// Close tears the lab down now: if the test has failed it prints the files
// written with WriteFile (lvsd's configs) and every process's log; then it
// stops the processes (last started first), deletes the namespaces, checks
// that none is left, and removes the scratch directory.
// It is registered with T.Cleanup by New and may be called earlier; later
// calls do nothing.
func (l *Lab) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.tornDown
		return
	}
	l.closed = true
	procs := append([]*Proc(nil), l.procs...)
	nss := append([]NS(nil), l.nss...)
	files := append([]string(nil), l.files...)
	l.mu.Unlock()
	defer close(l.tornDown)

	if l.t.Failed() {
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			l.t.Logf("----- file %s -----\n%s----- end of %s -----", f, b, filepath.Base(f))
		}
		for _, p := range procs {
			l.t.Logf("%s", p.dump())
		}
	}
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(); err != nil {
			l.t.Errorf("lab teardown: %v", err)
		}
	}
	// Nothing has a context here: the test's context is already cancelled
	// when cleanups run, and teardown must happen regardless.
	ctx := context.Background()
	for i := len(nss) - 1; i >= 0; i-- {
		if err := deleteNamespace(ctx, nss[i]); err != nil {
			l.t.Errorf("lab teardown: %v", err)
		}
	}
	if left := ListNamespaces(l.prefix); len(left) > 0 {
		l.t.Errorf("lab teardown: namespaces left behind: %v", left)
	}
	if os.Getenv("LVSD_LAB_KEEP") == "1" {
		l.t.Logf("lab: LVSD_LAB_KEEP=1: scratch directory kept: %s", l.dir)
		return
	}
	if err := os.RemoveAll(l.dir); err != nil {
		l.t.Errorf("lab teardown: %v", err)
	}
}

// deleteNamespace kills what still runs inside ns (a process the lab did not
// start, such as one started by hand with `ip netns exec`) and deletes it.
func deleteNamespace(ctx context.Context, ns NS) error {
	if _, err := os.Stat(filepath.Join(netnsDir, string(ns))); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	killNamespacePids(ctx, ns)
	if out, err := runCmd(ctx, cmdTimeout, "", "ip", "netns", "del", string(ns)); err != nil {
		return fmt.Errorf("delete namespace %s: %w: %s", ns, err, strings.TrimSpace(out))
	}
	return nil
}

// killNamespacePids SIGKILLs each process inside ns, by pid.
func killNamespacePids(ctx context.Context, ns NS) {
	out, err := runCmd(ctx, cmdTimeout, "", "ip", "netns", "pids", string(ns))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// ListNamespaces returns the named namespaces whose name starts with prefix.
func ListNamespaces(prefix string) []string {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// RemoveStale deletes the namespaces and scratch directories named
// lvt-<pid>-* whose pid is not a live process: what a lab left behind when
// its process was killed before its teardown ran (go test's timeout,
// SIGKILL). A live process's lab is never touched. It logs what it removed
// through logf, which may be nil.
func RemoveStale(logf func(format string, args ...any)) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ctx := context.Background()
	for _, name := range ListNamespaces("lvt-") {
		pid, ok := stalePid(name)
		if !ok {
			continue
		}
		if err := deleteNamespace(ctx, NS(name)); err != nil {
			logf("lab: stale namespace of dead pid %d: %v", pid, err)
			continue
		}
		logf("lab: removed namespace %s left by dead pid %d", name, pid)
	}
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		if _, ok := stalePid(e.Name()); ok && e.IsDir() {
			if err := os.RemoveAll(filepath.Join(os.TempDir(), e.Name())); err == nil {
				logf("lab: removed stale directory %s", filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
}

// stalePid parses lvt-<pid>-... and reports the pid if no such process is
// alive.
func stalePid(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "lvt-")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok || digits == "" || len(digits) > 9 {
		return 0, false
	}
	pid := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		pid = pid*10 + int(c-'0')
	}
	if pid <= 1 || pid == os.Getpid() {
		return 0, false
	}
	// ESRCH: no such process. EPERM means it exists.
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return pid, true
	}
	return 0, false
}

// checkLinkName enforces the lab's naming rule for links.
func (l *Lab) checkLinkName(name string) {
	l.t.Helper()
	if !strings.HasPrefix(name, "lvt") || len(name) > 15 {
		l.t.Fatalf("lab: link name %q must start with lvt and have at most 15 bytes", name)
	}
}

// run runs a command to completion (inside ns unless ns is empty) and
// returns its combined output; failure is fatal.
func (l *Lab) run(ns NS, name string, args ...string) string {
	l.t.Helper()
	out, err := runCmd(l.t.Context(), cmdTimeout, ns, name, args...)
	if err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	return out
}

// runCmd runs name args... (inside ns unless ns is empty) in its own process
// group, killed with its group at timeout or when ctx is done, and returns
// its combined output. The error names the command and holds its output.
func runCmd(ctx context.Context, timeout time.Duration, ns NS, name string, args ...string) (string, error) {
	argv := append([]string{name}, args...)
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", string(ns)}, argv...)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Own process group: a Ctrl-C at the terminal reaches the program, which
	// tears down in order, and not its helpers in the middle of a command.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
