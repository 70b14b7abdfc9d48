package main

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// systemControl is the control socket of a privileged lvsd.
const systemControl = "/run/lvsd/lvsd.sock"

// serverControl is where lvsd run serves its socket when -control is not
// given: /run/lvsd, or $XDG_RUNTIME_DIR when /run/lvsd cannot be made or
// written (an unprivileged lvsd).
func serverControl() string {
	dir := filepath.Dir(systemControl)
	if err := os.MkdirAll(dir, 0o755); err == nil && unix.Access(dir, unix.W_OK) == nil {
		return systemControl
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "lvsd.sock")
	}
	return systemControl
}

// clientControl is the socket a client uses when -control is not given:
// $LVSD_CONTROL, else the first of /run/lvsd/lvsd.sock and
// $XDG_RUNTIME_DIR/lvsd.sock that exists.
func clientControl() string {
	if p := os.Getenv("LVSD_CONTROL"); p != "" {
		return p
	}
	if _, err := os.Stat(systemControl); err == nil || !errors.Is(err, os.ErrNotExist) {
		return systemControl
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		if p := filepath.Join(x, "lvsd.sock"); exists(p) {
			return p
		}
	}
	return systemControl
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// stateFor is the default state file of runtime changes: beside the
// control socket (so on /run: kept across restarts, gone at reboot, as the
// kernel's IPVS table).
func stateFor(control string) string {
	if control == "" {
		return ""
	}
	return control[:len(control)-len(filepath.Ext(control))] + ".state"
}
