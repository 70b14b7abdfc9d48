package health

import (
	"context"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// notify runs a notify command without waiting for it: /bin/sh -c with
// the server and its state in the environment, output to /dev/null,
// killed with its process group after the notify timeout.
func (m *Manager[K]) notify(command string, mon *monitor[K], state string) {
	if command == "" {
		return
	}
	t := mon.spec.Target
	m.Command(command, map[string]string{
		"LVSD_RS_ADDR": t.Real.Addr().String(),
		"LVSD_RS_PORT": strconv.Itoa(int(t.Real.Port())),
		"LVSD_VS_ADDR": t.Virtual.Addr().String(),
		"LVSD_VS_PORT": strconv.Itoa(int(t.Virtual.Port())),
		"LVSD_STATE":   state,
	})
}

// Command runs command by /bin/sh -c in a goroutine of the Manager, with
// env added to a minimal environment; it never blocks its caller. Run
// waits for it (it is killed when Run's context ends).
func (m *Manager[K]) Command(command string, env map[string]string) {
	m.mu.Lock()
	ctx := m.ctx
	m.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	m.wg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, m.opts.NotifyTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			m.log.Warn("notify command failed", "command", command, "err", err)
		}
	})
}
