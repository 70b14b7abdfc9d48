package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestClientControl(t *testing.T) {
	if exists(systemControl) {
		t.Skip("an lvsd serves " + systemControl + " on this machine")
	}
	dir := t.TempDir()
	t.Setenv("LVSD_CONTROL", "")
	t.Setenv("XDG_RUNTIME_DIR", dir)
	if got := clientControl(); got != systemControl {
		t.Errorf("with no socket anywhere: %s, want %s", got, systemControl)
	}
	// An unprivileged lvsd's socket is found without flags.
	xdg := filepath.Join(dir, "lvsd.sock")
	if err := os.WriteFile(xdg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := clientControl(); got != xdg {
		t.Errorf("with %s: %s", xdg, got)
	}
	t.Setenv("LVSD_CONTROL", "/elsewhere.sock")
	if got := clientControl(); got != "/elsewhere.sock" {
		t.Errorf("$LVSD_CONTROL: %s", got)
	}
	if got := stateFor("/run/lvsd/lvsd.sock"); got != "/run/lvsd/lvsd.state" {
		t.Errorf("stateFor: %s", got)
	}
}
