// Command lvsd is a userspace Linux Virtual Server.
//
//	lvsd run   -c lvsd.toml   attach to the configured devices and balance
//	lvsd check -c lvsd.toml   validate a configuration and exit
//	lvsd list                 show virtual services as ipvsadm -Ln does
//	lvsd realserver -tun T -vip V   on a TUN-mode real server without ipip:
//	                          decapsulate IPIP into a local TUN device
//
// Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/director"
)

const usage = `usage: lvsd <command> [flags]

commands:
  run      -c FILE   run the director (SIGHUP reloads FILE, SIGINT/SIGTERM stop)
  check    -c FILE   validate FILE and exit
  list     [-stats|-rate] [-json]   show the virtual services of a running lvsd (ipvsadm -Ln [--stats|--rate])
  counters           show a running lvsd's fast-path counters, drops by reason
  realserver -tun NAME -vip ADDR[,...] [-director ADDR[,...]]
                     on a TUN-mode real server whose kernel has no ipip module:
                     decapsulate the director's IPIP into a local TUN device
  trace    [-n N] [FILTER]   explain what lvsd does with the next N packets matching FILTER
  capture  -w FILE [FILTER]   capture the frames lvsd reads and writes (pcapng), through the control socket
  version            print the version

run, list and counters take -control PATH, the control socket (default ` + defaultControl + `).
`

// defaultControl is where lvsd run serves its control socket.
const defaultControl = "/run/lvsd/lvsd.sock"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	if cmd == "realserver" {
		return runRealserver(args)
	}
	if cmd == "capture" {
		return runCapture(args)
	}
	if cmd == "trace" {
		return runTrace(args)
	}
	fs := flag.NewFlagSet("lvsd "+cmd, flag.ContinueOnError)
	path := fs.String("c", "/etc/lvsd/lvsd.toml", "configuration file")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	ctl := fs.String("control", defaultControl, "control socket (run: \"\" for none)")
	switch cmd {
	case "list", "counters":
		showStats := fs.Bool("stats", false, "list: cumulative counters, as ipvsadm --stats")
		showRates := fs.Bool("rate", false, "list: rate estimates, as ipvsadm --rate")
		asJSON := fs.Bool("json", false, "print the raw status as JSON")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		return show(cmd, *ctl, *showStats, *showRates, *asJSON)
	case "run", "check":
	case "version", "-v", "--version":
		fmt.Println("lvsd", buildVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "lvsd: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(os.Stderr, *logFormat, *level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 2
	}

	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 2
	}
	if cmd == "check" {
		fmt.Printf("%s: ok (%d interfaces, %d virtual servers)\n", *path, len(cfg.Interfaces), len(cfg.Services))
		return 0
	}

	// Signals first: a SIGHUP or SIGTERM while the devices open must not
	// kill lvsd with the default action.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d, err := director.New(cfg, director.Options{Logger: log, Version: buildVersion()})
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	// The reload loop and the control socket stop with ctx; lvsd exits only
	// after both have (the control socket file is removed then).
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			notifyReloading()
			d.ReloadFile(*path) // logs and records its outcome itself
			notifyReloaded()
		}
	})
	if *ctl != "" {
		wg.Go(func() { serveControl(ctx, *ctl, d, log) })
	}
	if err := startService(ctx, &wg, cfg, d, buildVersion(), log); err != nil {
		log.Error("start failed", "err", err)
		stop()
		d.Close()
		return 1
	}
	log.Info("lvsd running", "version", buildVersion(), "config", *path)
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	log.Info("lvsd stopped")
	return 0
}

// serveControl serves the control socket; without one lvsd still runs.
func serveControl(ctx context.Context, path string, d *director.Director, log *slog.Logger) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Warn("no control socket", "err", err)
		return
	}
	if err := control.Serve(ctx, path, d); err != nil {
		log.Warn("no control socket", "err", err)
	}
}

// show prints what a running lvsd reports.
func show(cmd, path string, stats, rates, asJSON bool) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := control.Get(ctx, path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 1
	}
	switch {
	case asJSON:
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	case cmd == "counters":
		control.WriteCounters(os.Stdout, st)
	case rates:
		control.WriteRates(os.Stdout, st)
	default:
		control.WriteList(os.Stdout, st, stats)
	}
	return 0
}
