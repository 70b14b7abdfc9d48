package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/keepalived"
)

// runImport is `lvsd import keepalived [-interface NAME -addresses CIDR,...] FILE`:
// the TOML on stdout, the report of what has no equivalent on stderr.
func runImport(args []string) int {
	if len(args) == 0 || args[0] != "keepalived" {
		fmt.Fprintln(os.Stderr, "usage: lvsd import keepalived [-interface NAME -addresses CIDR,...] FILE")
		return 2
	}
	fs := flag.NewFlagSet("lvsd import keepalived", flag.ContinueOnError)
	ifName := fs.String("interface", "", "the interface lvsd attaches to (keepalived.conf does not say)")
	addrs := fs.String("addresses", "", "the director's own addresses on it, CIDR, comma-separated")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: lvsd import keepalived [-interface NAME -addresses CIDR,...] FILE")
		return 2
	}
	file := fs.Arg(0)
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 1
	}
	o := keepalived.Options{Interface: *ifName}
	if *addrs != "" {
		o.Addresses = strings.Split(*addrs, ",")
	}
	out, notes, err := keepalived.Convert(file, data, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd: %v\n", err)
		return 2
	}
	os.Stdout.Write(out)
	for _, n := range notes {
		fmt.Fprintf(os.Stderr, "%s:%s\n", file, n)
	}
	// With an interface the output is a whole configuration: check it.
	if o.Interface != "" && len(o.Addresses) > 0 {
		if _, err := config.Parse("imported.toml", out); err != nil {
			fmt.Fprintf(os.Stderr, "lvsd: the imported configuration does not pass lvsd check:\n%v\n", err)
			return 1
		}
	}
	return 0
}
