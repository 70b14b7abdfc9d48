package main

import (
	"fmt"
	"os"
)

// runImport is `lvsd import keepalived FILE`.
func runImport(args []string) int {
	if len(args) != 2 || args[0] != "keepalived" {
		fmt.Fprintln(os.Stderr, "usage: lvsd import keepalived FILE")
		return 2
	}
	fmt.Fprintln(os.Stderr, "lvsd import keepalived: not built yet")
	return 1
}
