package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConnectionKeys covers [connections] and the connection-table sysctls.
func TestConnectionKeys(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		want    Connections
		nodest  bool
		secure  bool
		sloppy  bool
		wantErr []string
	}{
		{
			name: "defaults", data: withIface(),
			want: Connections{Max: 1 << 22, ReserveEstablished: 10, SourcePrefixV4: 32, SourcePrefixV6: 64, CheckRST: true}, nodest: true,
		},
		{
			name: "set", data: withIface(`[connections]`, `max = 1000`, `[sysctl]`, `expire_nodest_conn = false`, `secure_tcp = true`, `sloppy_tcp = true`),
			want: Connections{Max: 1000, ReserveEstablished: 10, SourcePrefixV4: 32, SourcePrefixV6: 64, CheckRST: true}, nodest: false, secure: true, sloppy: true,
		},
		{
			name: "defence",
			data: withIface(`[connections]`, `reserve_established = 0`, `per_source = 100`, `per_source_rate = 20`,
				`source_prefix_v4 = 24`, `source_prefix_v6 = 48`, `check_rst = false`),
			want: Connections{Max: 1 << 22, PerSource: 100, PerSourceRate: 20, SourcePrefixV4: 24, SourcePrefixV6: 48}, nodest: true,
		},
		{
			name: "defence out of range",
			data: withIface(`[connections]`, `reserve_established = 91`, `per_source = -1`, `source_prefix_v4 = 33`,
				`source_prefix_v6 = 0`),
			wantErr: []string{"t.toml:5: connections.reserve_established: 91 is out of range",
				"t.toml:6: connections.per_source: -1 is out of range", "t.toml:7: connections.source_prefix_v4: 33 is out of range",
				"t.toml:8: connections.source_prefix_v6: 0 is out of range"},
		},
		{
			name:    "out of range",
			data:    withIface(`[connections]`, `max = 0`, `[sysctl]`, `expire_nodest_conn = 1`, `sloppy_tcp = "yes"`),
			wantErr: []string{"t.toml:5: connections.max: 0 is out of range", "t.toml:7: sysctl.expire_nodest_conn:", "t.toml:8: sysctl.sloppy_tcp:"},
		},
		{
			name:    "unknown key",
			data:    withIface(`[connections]`, `maximum = 10`),
			wantErr: []string{"t.toml:5: connections.maximum: unknown key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", tt.data)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				got := strings.Split(strings.TrimSpace(err.Error()), "\n")
				if len(got) != len(tt.wantErr) {
					t.Fatalf("errors:\n%s\nwant %d starting %q", err, len(tt.wantErr), tt.wantErr)
				}
				for i, w := range tt.wantErr {
					if !strings.HasPrefix(got[i], w) {
						t.Errorf("error %d = %q, want prefix %q", i, got[i], w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Connections); diff != "" {
				t.Errorf("connections (-want +got):\n%s", diff)
			}
			if cfg.Sysctl.ExpireNodestConn != tt.nodest || cfg.Sysctl.SecureTCP != tt.secure || cfg.Sysctl.SloppyTCP != tt.sloppy {
				t.Errorf("sysctl %+v", cfg.Sysctl)
			}
		})
	}
}
