package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[[interface]]\nname = \"lvt0\"\naddresses = [\"198.18.1.1/24\"]\nmtu = 70000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "example is valid", args: []string{"check", "-c", "../../lvsd.toml.example"}, wantCode: 0},
		{name: "bad value names file line key", args: []string{"check", "-c", bad}, wantCode: 2, wantErr: bad + ":4: interface[0].mtu:"},
		{name: "missing file", args: []string{"check", "-c", filepath.Join(dir, "none.toml")}, wantCode: 2, wantErr: "none.toml"},
		{name: "run refuses a bad file", args: []string{"run", "-c", bad}, wantCode: 2, wantErr: ":4: interface[0].mtu:"},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantErr: "unknown command"},
		{name: "no command", args: nil, wantCode: 2, wantErr: "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stderr := captureStderr(t, func() {
				if got := run(tt.args); got != tt.wantCode {
					t.Errorf("exit code %d, want %d", got, tt.wantCode)
				}
			})
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantErr)
			}
		})
	}
}

func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	fn()
	os.Stderr = old
	w.Close()
	return <-done
}

func TestSharpEdges(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "check takes the file as an argument", args: []string{"check", "../../lvsd.toml.example"}, wantCode: 0},
		{name: "check of a missing positional file", args: []string{"check", filepath.Join(dir, "none.toml")}, wantCode: 2, wantErr: "none.toml"},
		{name: "check of two files", args: []string{"check", "-c", "a.toml", "b.toml"}, wantCode: 2, wantErr: "two files"},
		{name: "check has no -control", args: []string{"check", "-control", "x", "../../lvsd.toml.example"}, wantCode: 2, wantErr: "flag provided but not defined: -control"},
		{name: "list has no -c", args: []string{"list", "-c", "x"}, wantCode: 2, wantErr: "flag provided but not defined: -c"},
		{name: "list -stats -rate", args: []string{"list", "-stats", "-rate"}, wantCode: 2, wantErr: "-stats and -rate are two listings"},
		{name: "--version", args: []string{"--version"}, wantCode: 0},
		{name: "-v", args: []string{"-v"}, wantCode: 0},
		{name: "adm refuses a bad line without a daemon", args: []string{"adm", "-A", "-t", "192.0.2.1:80", "-w", "3"}, wantCode: 2,
			wantErr: "Illegal 'weight' option with the 'add-service' command"},
		{name: "adm try help", args: []string{"adm", "-n"}, wantCode: 255, wantErr: "Try `lvsd adm -h' or 'lvsd adm --help' for more information."},
		{name: "adm without a daemon", args: []string{"adm", "--control", filepath.Join(dir, "none.sock"), "-Ln"}, wantCode: 2, wantErr: "no lvsd answers"},
		{name: "run on the socket of a live lvsd", args: []string{"run", "-c", "../../lvsd.toml.example", "-control", liveSocket(t, dir)}, wantCode: 1,
			wantErr: "another lvsd is listening; stop it, or give this lvsd a socket of its own with -control PATH"},
		{name: "config needs a subcommand", args: []string{"config"}, wantCode: 2, wantErr: "usage: lvsd config dump|discard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stderr := captureStderr(t, func() {
				if got := run(tt.args); got != tt.wantCode {
					t.Errorf("exit code %d, want %d", got, tt.wantCode)
				}
			})
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantErr)
			}
		})
	}
}

// liveSocket listens on a Unix socket in dir, as a running lvsd would.
func liveSocket(t *testing.T, dir string) string {
	path := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return path
}
