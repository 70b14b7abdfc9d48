package main

import (
	"io"
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
