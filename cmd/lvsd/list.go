package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/lvsd/lvsd/control"
)

// runList is `lvsd list`: ipvsadm -Ln (with --stats or --rate), byte for
// byte, and a warning on stderr when the file is not what runs.
func runList(args []string) int {
	fs := flag.NewFlagSet("lvsd list", flag.ContinueOnError)
	ctl := fs.String("control", "", "control socket of the lvsd to ask")
	stats := fs.Bool("stats", false, "cumulative counters, as ipvsadm -Ln --stats")
	rates := fs.Bool("rate", false, "rate estimates, as ipvsadm -Ln --rate")
	exact := fs.Bool("exact", false, "numbers in full, as ipvsadm --exact")
	asJSON := fs.Bool("json", false, "print the raw status as JSON")
	health := fs.Bool("health", false, "each real server's health check (lvsd's own listing; ipvsadm has none)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *health && !*asJSON {
		st, err := getStatus(controlFlag(*ctl))
		if err != nil {
			fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
			return 1
		}
		warnStale(st)
		control.WriteHealth(os.Stdout, st, time.Now())
		return 0
	}
	if *stats && *rates {
		fmt.Fprintln(os.Stderr, "lvsd list: -stats and -rate are two listings; ask for one")
		return 2
	}
	path := controlFlag(*ctl)
	if *asJSON {
		st, err := getStatus(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
			return 1
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return 0
	}
	admArgs := []string{"-Ln"}
	if *stats {
		admArgs = append(admArgs, "--stats")
	}
	if *rates {
		admArgs = append(admArgs, "--rate")
	}
	if *exact {
		admArgs = append(admArgs, "--exact")
	}
	return admAt(path, admArgs, "lvsd list")
}

// runCounters is `lvsd counters`.
func runCounters(args []string) int {
	fs := flag.NewFlagSet("lvsd counters", flag.ContinueOnError)
	ctl := fs.String("control", "", "control socket of the lvsd to ask")
	asJSON := fs.Bool("json", false, "print the raw status as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	st, err := getStatus(controlFlag(*ctl))
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return 0
	}
	control.WriteCounters(os.Stdout, st)
	return 0
}

func controlFlag(v string) string {
	if v != "" {
		return v
	}
	return clientControl()
}

func getStatus(path string) (*control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return control.Get(ctx, path)
}

// warnStale tells, on stderr, that the file is not what runs.
func warnStale(st *control.Status) {
	switch {
	case st.ConfigStale:
		fmt.Fprintf(os.Stderr, "WARNING: the last reload of %s was refused; the previous configuration runs: %s\n", st.Config, st.LastReloadError)
	case st.RestartNeeded != "":
		fmt.Fprintf(os.Stderr, "NOTE: the last reload of %s applied the virtual servers; its interface changes need a restart (%s)\n", st.Config, st.RestartNeeded)
	}
}
