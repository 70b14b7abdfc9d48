package main

import (
	"strings"
	"testing"
)

func TestRealserverUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no vip", args: []string{"-tun", "lvttunrs"}, wantErr: "-vip: name the virtual addresses"},
		{name: "bad vip", args: []string{"-tun", "lvttunrs", "-vip", "198.18.1.100,nope"}, wantErr: `-vip: ParseAddr("nope")`},
		{name: "no tun", args: []string{"-vip", "198.18.1.100"}, wantErr: "-tun: name the TUN device"},
		{name: "bad mtu", args: []string{"-tun", "lvttunrs", "-vip", "198.18.1.100", "-mtu", "40"}, wantErr: "-mtu: 40 is out of range"},
		{name: "bad director", args: []string{"-tun", "lvttunrs", "-vip", "198.18.1.100", "-director", "x"}, wantErr: "-director:"},
		{name: "stray argument", args: []string{"-tun", "lvttunrs", "-vip", "198.18.1.100", "extra"}, wantErr: `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stderr := captureStderr(t, func() {
				if got := run(append([]string{"realserver"}, tt.args...)); got != 2 {
					t.Errorf("exit code %d, want 2", got)
				}
			})
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantErr)
			}
		})
	}
}
