package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/lvsd/lvsd/adm"
	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/director"
	"github.com/lvsd/lvsd/runstate"
)

// runDaemon is `lvsd run`.
func runDaemon(args []string) int {
	fs := flag.NewFlagSet("lvsd run", flag.ContinueOnError)
	path := fs.String("c", defaultConfig, "configuration file")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	ctl := fs.String("control", "", "control socket (default "+systemControl+", or $XDG_RUNTIME_DIR/lvsd.sock when /run/lvsd is not writable); \"none\" for none")
	group := fs.String("control-group", "", "group owning the control socket: its members may read (lvsd list, lvsd adm -L); default lvsd's own group")
	state := fs.String("state", "", "file keeping runtime changes across restarts (default: beside the control socket; \"none\" to keep them in memory only)")
	takeOver := fs.Bool("takeover", false, "take over from the lvsd running on the same control socket: its devices, connections and control socket, without losing a flow (it exits once this one runs)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "lvsd run: unexpected argument %q (the file goes with -c)\n", fs.Arg(0))
		return 2
	}
	log, err := newLogger(os.Stderr, *logFormat, *level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 2
	}

	file, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 2
	}
	control := *ctl
	switch control {
	case "":
		control = serverControl()
	case "none":
		control = ""
	}
	// A second lvsd on the socket of a running one would run unmanaged;
	// with -takeover it replaces that one.
	var tk *taker
	if *takeOver {
		if control == "" {
			fmt.Fprintln(os.Stderr, "lvsd: -takeover needs the control socket (the handoff socket is beside it)")
			return 2
		}
		if tk, err = startTakeover(control, log); err != nil {
			fmt.Fprintf(os.Stderr, "lvsd: takeover: %v\n", err)
			return 1
		}
		// Until finish, closing the connection leaves the old lvsd serving.
		defer tk.close()
	} else if control != "" && controlLive(control) {
		fmt.Fprintf(os.Stderr, "lvsd: control socket %s: another lvsd is listening; stop it, or give this lvsd a socket of its own with -control PATH\n", control)
		return 1
	}
	statePath := *state
	switch statePath {
	case "":
		statePath = stateFor(control)
	case "none":
		statePath = ""
	}
	var store *runstate.Store
	if statePath != "" {
		store = &runstate.Store{Path: statePath}
	}

	// Signals first: a SIGHUP or SIGTERM while the devices open must not
	// kill lvsd with the default action.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := notifyUSR2() // a graceful restart (reexecOnSignal)

	start := runstate.Start(file, store, log)
	opts := director.Options{Logger: log, Version: buildVersion()}
	if tk != nil {
		opts.Takeover = tk.devices()
	}
	d, err := director.New(start, opts)
	if tk != nil {
		tk.closeFiles() // the director holds duplicates of those it adopted
	}
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	runstate.RestartNeeded = director.ErrRestartNeeded
	rt := runstate.New(d, file, runstate.Options{Store: store, Logger: log, Version: buildVersion(), Names: systemNames()})
	rt.Persist()

	// The reload loop and the control socket stop with ctx; lvsd exits only
	// after both have (the control socket file is removed then).
	var wg sync.WaitGroup
	defer wg.Wait()
	if tk != nil {
		// The old lvsd stops, this one reads the devices, the old one
		// exits (and removes its control socket).
		if err := tk.finish(d); err != nil {
			log.Error("takeover failed; the old lvsd goes on", "err", err)
			d.Close()
			return 1
		}
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			notifyReloading()
			rt.ReloadFile(*path) // logs and records its outcome
			notifyReloaded()
		}
	})
	if control != "" {
		admin := &admin{rt: rt, discard: func() error {
			cfg, err := config.Load(*path)
			if err != nil {
				return err
			}
			err = rt.Discard(cfg)
			d.NoteReload(err)
			if errors.Is(err, director.ErrRestartNeeded) {
				return nil
			}
			return err
		}}
		wg.Go(func() { serveControl(ctx, control, *group, d, admin, log) })
		// A graceful restart: a new lvsd takes over through the handoff
		// socket, started by hand (-takeover) or by SIGUSR2.
		wg.Go(func() { serveHandoff(ctx, control, d, log, stop) })
		wg.Go(func() { reexecOnSignal(ctx, usr2, log) })
	}
	if err := startService(ctx, &wg, file, d, buildVersion(), log); err != nil {
		log.Error("start failed", "err", err)
		stop()
		d.Close()
		return 1
	}
	log.Info("lvsd running", "version", buildVersion(), "config", *path, "control", control, "state", statePath)
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		stop() // ends the reload loop and the control socket, which wg waits for
		return 1
	}
	log.Info("lvsd stopped")
	return 0
}

func controlLive(path string) bool { return control.Live(path) }

// serveControl serves the control socket; without one lvsd still runs.
func serveControl(ctx context.Context, path, group string, d *director.Director, a control.Admin, log *slog.Logger) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Warn("no control socket", "err", err)
		return
	}
	err := control.ServeOptions(ctx, control.Options{Path: path, Source: d, Admin: a, Group: group, Logger: log})
	if err != nil {
		log.Warn("no control socket", "err", err)
	}
}

// admin is the control socket's Admin: the runtime, and a discard that
// reloads the file.
type admin struct {
	rt      *runstate.Runtime
	discard func() error
}

func (a *admin) Adm(program string, args, stdin []string, who string) adm.Result {
	return a.rt.Adm(program, args, stdin, who)
}
func (a *admin) Dump() []byte   { return a.rt.Dump() }
func (a *admin) Discard() error { return a.discard() }
