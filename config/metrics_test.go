package config

import (
	"strings"
	"testing"
)

// TestMetricsKeys covers [metrics]: off by default, an address and port,
// and each bad value named by FILE:LINE: KEY.
func TestMetricsKeys(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		want    string
		wantErr string
	}{
		{name: "off by default", data: withIface(), want: ""},
		{name: "ipv4", data: withIface(`[metrics]`, `listen = "127.0.0.1:9812"`), want: "127.0.0.1:9812"},
		{name: "ipv6", data: withIface(`[metrics]`, `listen = "[::1]:9812"`), want: "[::1]:9812"},
		{name: "any", data: withIface(`[metrics]`, `listen = "0.0.0.0:9812"`), want: "0.0.0.0:9812"},
		{name: "host name", data: withIface(`[metrics]`, `listen = "localhost:9812"`), wantErr: `t.toml:5: metrics.listen: "localhost:9812" is not ADDR:PORT`},
		{name: "no port", data: withIface(`[metrics]`, `listen = "127.0.0.1"`), wantErr: `t.toml:5: metrics.listen: "127.0.0.1" is not ADDR:PORT`},
		{name: "port 0", data: withIface(`[metrics]`, `listen = "127.0.0.1:0"`), wantErr: `t.toml:5: metrics.listen: "127.0.0.1:0": port 0`},
		{name: "zone", data: withIface(`[metrics]`, `listen = "[fe80::1%eth0]:9812"`), wantErr: `t.toml:5: metrics.listen: "[fe80::1%eth0]:9812": an address with a zone`},
		{name: "not a string", data: withIface(`[metrics]`, `listen = 9812`), wantErr: `t.toml:5: metrics.listen: 9812 is an integer, want a string`},
		{name: "unknown key", data: withIface(`[metrics]`, `port = 9812`), wantErr: `t.toml:5: metrics.port: unknown key`},
		{name: "not a table", data: lines(append([]string{`metrics = "127.0.0.1:9812"`}, iface...)...), wantErr: `t.toml:1: metrics: must be a table`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Metrics.Listen != tt.want {
				t.Errorf("metrics.listen = %q, want %q", cfg.Metrics.Listen, tt.want)
			}
		})
	}
}
