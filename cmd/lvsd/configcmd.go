package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/lvsd/lvsd/control"
)

// runConfig is `lvsd config dump|discard`.
func runConfig(args []string) int {
	if len(args) == 0 || (args[0] != "dump" && args[0] != "discard") {
		fmt.Fprintln(os.Stderr, "usage: lvsd config dump|discard [-control PATH]")
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("lvsd config "+sub, flag.ContinueOnError)
	ctl := fs.String("control", "", "control socket of the lvsd to ask")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := controlFlag(*ctl)
	if sub == "discard" {
		if err := control.Discard(ctx, path); err != nil {
			fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
			return 1
		}
		return 0
	}
	data, err := control.GetConfig(ctx, path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 1
	}
	fmt.Printf("# The running table of the lvsd at %s (lvsd config dump).\n", path)
	os.Stdout.Write(data)
	return 0
}
