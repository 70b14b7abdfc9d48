package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Proc is a background process of a lab, running inside a namespace in its
// own process group. Its stdout and stderr go straight to a log file (no
// copying goroutine); one goroutine waits for it to exit and ends then.
type Proc struct {
	// Name labels the process in logs and file names ("lvsd", "rs1").
	Name string
	// NS is the namespace it runs in.
	NS NS
	// Log is the path of the file holding its stdout and stderr.
	Log string
	// Args is the command line, without the `ip netns exec NS` in front.
	Args []string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

// ProcOptions are the optional settings of Lab.StartWith.
type ProcOptions struct {
	// Env is added to the environment the process inherits.
	Env []string
}

// Start runs args inside ns (`ip netns exec NS args...`) in the background
// and returns at once. The lab stops it at teardown.
func (l *Lab) Start(ns NS, name string, args ...string) *Proc {
	l.t.Helper()
	return l.StartWith(ns, name, ProcOptions{}, args...)
}

// StartWith is Start with options.
func (l *Lab) StartWith(ns NS, name string, o ProcOptions, args ...string) *Proc {
	l.t.Helper()
	l.mu.Lock()
	closed := l.closed
	n := len(l.procs)
	l.mu.Unlock()
	if closed {
		l.t.Fatalf("lab: start %s: lab already torn down", name)
	}
	logPath := filepath.Join(l.dir, fmt.Sprintf("%02d-%s.log", n, name))
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatalf("lab: start %s: %v", name, err)
	}
	defer f.Close()
	argv := append([]string{"ip", "netns", "exec", string(ns)}, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.SysProcAttr = backgroundAttr()
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("lab: start %s: %v", name, err)
	}
	p := &Proc{Name: name, NS: ns, Log: logPath, Args: args, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// Pid returns the process id (also its process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output returns everything the process has written so far.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return string(b)
}

// Exited reports whether the process has exited, and its Wait error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// WaitOutput waits until the process's output contains substr. It fails if
// the process exits first or timeout passes; the error holds the output.
func (p *Proc) WaitOutput(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out := p.Output()
		if strings.Contains(out, substr) {
			return nil
		}
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("%s exited (%v) before printing %q; output:\n%s", p.Name, err, substr, tail(p.Output(), 8<<10))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not print %q within %v; output:\n%s", p.Name, substr, timeout, tail(out, 8<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the process and its group: SIGTERM, then SIGKILL after 5 s. It
// returns an error only if the process cannot be made to exit; how it
// exited is not an error here.
func (p *Proc) Stop() error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	pg := -p.cmd.Process.Pid
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := syscall.Kill(pg, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop %s (pid %d): %w", p.Name, -pg, err)
		}
		tm := time.NewTimer(stopTimeout)
		select {
		case <-p.done:
			tm.Stop()
			return nil
		case <-tm.C:
		}
	}
	return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", p.Name, -pg)
}

// dump formats the process's log for a failure report.
func (p *Proc) dump() string {
	state := "running"
	if exited, err := p.Exited(); exited {
		state = fmt.Sprintf("exited: %v", err)
		if err == nil {
			state = "exited: status 0"
		}
	}
	out := tail(p.Output(), 32<<10)
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return fmt.Sprintf("----- %s in %s (%s) [%s]: %s -----\n%s----- end of %s -----",
		p.Name, p.NS, strings.Join(p.Args, " "), state, p.Log, out, p.Name)
}

// tail returns the last n bytes of s, from a line start, marked when cut.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[... earlier output cut ...]\n" + s
}
