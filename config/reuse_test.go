package config

import (
	"strings"
	"testing"
)

// reuse_connection is accepted on http and https checks, kept by Format,
// and refused with FILE:LINE: KEY on other types, with through_vip, and
// when it is not a boolean.
func TestCheckReuseConnection(t *testing.T) {
	for _, typ := range []string{"http", "https"} {
		t.Run(typ, func(t *testing.T) {
			cfg, err := Parse("t.toml", checkDoc(`[virtual_server.check]`, `type = "`+typ+`"`, `reuse_connection = true`,
				`[[virtual_server.real_server]]`, `address = "198.18.2.11"`,
				`[[virtual_server.real_server]]`, `address = "198.18.2.12"`, `check = { reuse_connection = false }`))
			if err != nil {
				t.Fatal(err)
			}
			if r := cfg.Services[0].Reals; !r[0].Check.ReuseConnection || r[1].Check.ReuseConnection {
				t.Fatalf("reuse_connection %v and %v, want true and false (overridden)", r[0].Check.ReuseConnection, r[1].Check.ReuseConnection)
			}
			back, err := Parse("t.toml", Format(cfg))
			if err != nil {
				t.Fatalf("Format's output does not parse: %v", err)
			}
			if r := back.Services[0].Reals; !r[0].Check.ReuseConnection || r[1].Check.ReuseConnection {
				t.Errorf("reuse_connection lost in Format's round trip:\n%s", Format(cfg))
			}
		})
	}
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{
			name: "tcp check",
			data: checkDoc(`[virtual_server.check]`, `type = "tcp"`, `reuse_connection = true`,
				`[[virtual_server.real_server]]`, `address = "198.18.2.11"`),
			want: `t.toml:11: virtual_server[0].check.reuse_connection: applies to check type http, https only, and this check is tcp`,
		},
		{
			name: "through_vip",
			data: checkDoc(`[virtual_server.check]`, `type = "http"`, `through_vip = true`, `reuse_connection = true`,
				`[[virtual_server.real_server]]`, `address = "198.18.1.11"`, `method = "dr"`),
			want: `t.toml:12: virtual_server[0].check.reuse_connection: not with through_vip`,
		},
		{
			name: "not a boolean",
			data: checkDoc(`[virtual_server.check]`, `type = "http"`, `reuse_connection = 1`,
				`[[virtual_server.real_server]]`, `address = "198.18.2.11"`),
			want: `t.toml:11: virtual_server[0].check.reuse_connection:`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// A real server's check that turns a boolean key of its service's check
// off keeps it off through Format (the state file), which writes each real
// server's check table whole: through_vip and reuse_connection are written
// false too.
func TestFormatKeepsBooleanOverrides(t *testing.T) {
	cfg, err := Parse("t.toml", checkDoc(`[virtual_server.check]`, `type = "http"`, `through_vip = true`,
		`[[virtual_server.real_server]]`, `address = "198.18.1.11"`, `method = "dr"`,
		`[[virtual_server.real_server]]`, `address = "198.18.1.12"`, `method = "dr"`, `check = { through_vip = false }`))
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("t.toml", Format(cfg))
	if err != nil {
		t.Fatalf("Format's output does not parse: %v", err)
	}
	if r := back.Services[0].Reals; !r[0].Check.ThroughVIP || r[1].Check.ThroughVIP {
		t.Errorf("through_vip %v and %v after Format, want true and false:\n%s", r[0].Check.ThroughVIP, r[1].Check.ThroughVIP, Format(cfg))
	}
}
