package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/lvsd/lvsd/config"
)

// execChecker is MISC_CHECK: a command run on the host by /bin/sh -c.
// Exit 0 passes, 1 fails; with dynamic (misc_dynamic) exit 2..255 passes
// and sets the weight to the code minus 2, as keepalived. Without dynamic
// any non-zero exit fails. Its output goes to /dev/null: a command that
// prints megabytes costs lvsd nothing. At the timeout its whole process
// group is killed.
type execChecker struct {
	command string
	env     []string
	timeout time.Duration
	dynamic bool
}

func newExecChecker(c *config.Check, t Target) (*execChecker, error) {
	if c.Command == "" {
		return nil, fmt.Errorf("%w: exec check without a command", ErrConfig)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = config.DefaultCheckTimeout
	}
	return &execChecker{
		command: c.Command,
		timeout: timeout,
		dynamic: c.Dynamic,
		env: []string{
			"LVSD_RS_ADDR=" + t.Real.Addr().String(),
			"LVSD_RS_PORT=" + strconv.Itoa(int(t.Real.Port())),
			"LVSD_VS_ADDR=" + t.Virtual.Addr().String(),
			"LVSD_VS_PORT=" + strconv.Itoa(int(t.Virtual.Port())),
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		},
	}, nil
}

func (c *execChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c.command)
	cmd.Env = c.env
	// Stdin, Stdout and Stderr stay nil: /dev/null.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a shell's children must not outlive the check.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return fail("exec: timed out after %s", c.timeout)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return pass
	case errors.As(err, &ee):
		code := ee.ExitCode()
		if c.dynamic && code >= 2 {
			return Result{Weight: int32(code - 2)}
		}
		return fail("exec: exit status %d", code)
	}
	return fail("exec: %w", err)
}
