package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/lvsd/lvsd/director"
	"github.com/lvsd/lvsd/takeover"
)

// A graceful restart (docs/cli.md, "Graceful restart"): the new lvsd
// (`lvsd run -takeover`, a taker) connects to the running one's handoff
// socket (a giver, serveHandoff), receives its devices, builds its
// director on them, receives the state and starts reading; the giver then
// exits 0. Any failure before that leaves the giver serving.

// giverExitWait bounds how long a taker waits for the giver to exit before
// it takes the control socket's path (the giver removes the socket file on
// its way out).
const giverExitWait = 30 * time.Second

// taker is the new process's side of a handoff in progress.
type taker struct {
	c    *net.UnixConn
	recv *takeover.Received
	log  *slog.Logger
}

// startTakeover connects to the giver whose control socket is control and
// receives its devices. The giver goes on forwarding.
func startTakeover(control string, log *slog.Logger) (*taker, error) {
	c, err := takeover.Dial(takeover.Path(control))
	if err != nil {
		return nil, err
	}
	r, err := takeover.Take(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	n := 0
	for _, dv := range r.Devices {
		n += len(dv.Files)
	}
	log.Info("takeover: devices received", "devices", len(r.Devices), "descriptors", n)
	return &taker{c: c, recv: r, log: log}, nil
}

// devices returns the devices received, for director.Options.Takeover.
func (t *taker) devices() []takeover.Device { return t.recv.Devices }

// closeFiles closes the descriptors received: the director adopted
// duplicates of those it uses.
func (t *taker) closeFiles() {
	for _, dv := range t.recv.Devices {
		for _, f := range dv.Files {
			f.Close()
		}
	}
	t.recv.Devices = nil
}

// close ends the handoff; before finish returned, the giver resumes.
func (t *taker) close() {
	t.closeFiles()
	t.c.Close()
}

// finish has the giver stop, restores its state into d, starts reading
// the devices and tells the giver to exit; then it waits (bounded) until
// the giver has. From the giver's stop to the readers' start, frames wait
// in the devices' queues: that is the gap of the restart.
func (t *taker) finish(d *director.Director) error {
	t0 := time.Now()
	state, err := t.recv.Table()
	if err != nil {
		return err
	}
	received := time.Since(t0) // the giver's stop and snapshot, and the transfer
	got, err := d.RestoreHandoff(state)
	if err != nil {
		return err
	}
	d.Release()
	gap := time.Since(t0)
	// Under systemd (NotifyAccess=all) this process becomes the service's
	// main process before the old one exits, or systemd would take the old
	// one's exit for the service's end.
	daemon.SdNotify(false, fmt.Sprintf("MAINPID=%d", os.Getpid()))
	if err := t.recv.Running(); err != nil {
		// The devices are read here now; a giver that cannot be told
		// resumes once its wait runs out.
		t.log.Warn("takeover: giver not told to exit", "err", err)
	}
	t.log.Info("takeover: running", "connections", got.Conns, "neighbors", got.Neighbors,
		"templates", got.Templates, "state_bytes", len(state), "gap", gap.String(), "state_received_after", received.String())
	// The giver closes the connection by exiting.
	t.c.SetReadDeadline(time.Now().Add(giverExitWait))
	var b [1]byte
	_, err = t.c.Read(b[:])
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.log.Warn("takeover: the old lvsd has not exited; the control socket may be unavailable", "waited", giverExitWait.String())
	default:
		t.log.Info("takeover: the old lvsd exited")
	}
	t.c.Close()
	return nil
}

// serveHandoff is the giver's side: it serves the handoff socket beside
// the control socket until ctx ends or a taker took over, in which case
// it calls handedOver (which must end ctx: lvsd exits 0). One handoff at
// a time; a failed one leaves the director forwarding as before.
func serveHandoff(ctx context.Context, control string, d *director.Director, log *slog.Logger, handedOver func()) {
	path := takeover.Path(control)
	ln, err := takeover.Listen(path)
	if err != nil {
		log.Warn("no handoff socket; a graceful restart is not possible", "err", err)
		return
	}
	// Removed with the listener; by then a taker that succeeded waits
	// for this process to exit before making its own.
	defer ln.Close()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := takeover.Accept(ln)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("handoff socket failed", "err", err)
			}
			return
		}
		if give(c, d, log) {
			handedOver()
			// The connection stays open until the process exits: its
			// closing tells the taker that this lvsd is gone.
			return
		}
		c.Close()
	}
}

// give hands the devices and the state to the taker on c; it returns
// whether the taker runs. On failure the director keeps (or takes back)
// its devices.
func give(c *net.UnixConn, d *director.Director, log *slog.Logger) bool {
	log.Info("takeover: a new lvsd is taking over")
	devs, err := d.HandoffDevices()
	if err != nil {
		log.Error("takeover refused; still running", "err", err)
		return false
	}
	defer func() {
		for _, dv := range devs {
			for _, f := range dv.Files {
				f.Close()
			}
		}
	}()
	stopped := false
	t0 := time.Now()
	var stopTook time.Duration
	err = takeover.Give(c, devs, func() ([]byte, error) {
		stopped = true
		t1 := time.Now()
		defer func() { stopTook = time.Since(t1) }()
		return d.StopForHandoff()
	})
	if err == nil {
		log.Info("takeover: handed over; exiting", "took", time.Since(t0).String(), "stop_and_snapshot", stopTook.String())
		return true
	}
	if stopped {
		if rerr := d.ResumeAfterHandoff(devs); rerr != nil {
			log.Error("takeover failed and the devices could not be taken back", "err", err, "resume_err", rerr)
			return false
		}
	}
	log.Error("takeover failed; still running", "err", err)
	return false
}

// notifyUSR2 catches SIGUSR2 from lvsd's start on, so that one sent while
// the devices open does not kill it (the default action); reexecOnSignal
// serves the channel.
func notifyUSR2() chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR2)
	return c
}

// reexecOnSignal starts `lvsd run ... -takeover` (this binary's path as
// it was at start, so that a new binary installed there runs, with the
// same arguments) at each signal on usr2, one at a time, until ctx ends.
// The new process takes over through the handoff socket; if it fails, this
// one goes on (and logs its exit status).
func reexecOnSignal(ctx context.Context, usr2 chan os.Signal, log *slog.Logger) {
	defer signal.Stop(usr2)
	exe, err := os.Executable()
	if err != nil {
		log.Warn("SIGUSR2 cannot restart lvsd", "err", err)
		return
	}
	var running atomic.Bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-usr2:
		}
		if running.Load() {
			log.Warn("SIGUSR2 ignored: a new lvsd is taking over already")
			continue
		}
		args := os.Args[1:]
		if !slices.Contains(args, "-takeover") && !slices.Contains(args, "--takeover") {
			args = append(slices.Clone(args), "-takeover")
		}
		cmd := exec.Command(exe, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			log.Error("SIGUSR2: cannot start a new lvsd", "exe", exe, "err", err)
			continue
		}
		log.Info("SIGUSR2: new lvsd started", "pid", cmd.Process.Pid, "exe", exe)
		running.Store(true)
		// Not waited for by lvsd's exit: when the handoff succeeds, the
		// new process outlives this one.
		go func() {
			err := cmd.Wait()
			running.Store(false)
			log.Warn("new lvsd exited; still running", "pid", cmd.Process.Pid, "err", err)
		}()
	}
}
