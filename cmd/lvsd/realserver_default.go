//go:build !linux

package main

import (
	"fmt"
	"os"
)

// runRealserver needs Linux raw sockets and a TUN device.
func runRealserver(args []string) int {
	fmt.Fprintln(os.Stderr, "lvsd realserver: needs Linux")
	return 1
}
