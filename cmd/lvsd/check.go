package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lvsd/lvsd/config"
)

// defaultConfig is the configuration file when none is given.
const defaultConfig = "/etc/lvsd/lvsd.toml"

// runCheck is `lvsd check [FILE]` (or -c FILE).
func runCheck(args []string) int {
	fs := flag.NewFlagSet("lvsd check", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lvsd check [FILE]   (default %s; -c FILE also works)\n", defaultConfig)
	}
	path := fs.String("c", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	file, err := configPath(fs, *path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd check: %v\n", err)
		return 2
	}
	cfg, err := config.Load(file)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 2
	}
	fmt.Printf("%s: ok (%d interfaces, %d virtual servers)\n", file, len(cfg.Interfaces), len(cfg.Services))
	return 0
}

// configPath is the file of -c or of the one positional argument.
func configPath(fs *flag.FlagSet, c string) (string, error) {
	switch {
	case fs.NArg() > 1:
		return "", fmt.Errorf("one file at a time; got %q", fs.Args())
	case fs.NArg() == 1 && c != "" && c != fs.Arg(0):
		return "", fmt.Errorf("two files: -c %s and %s", c, fs.Arg(0))
	case fs.NArg() == 1:
		return fs.Arg(0), nil
	case c != "":
		return c, nil
	}
	return defaultConfig, nil
}
