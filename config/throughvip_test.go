package config

import (
	"strings"
	"testing"
)

// through_vip is accepted on tcp, http and https checks of dr and tun
// real servers, and refused with FILE:LINE: KEY anywhere else.
func TestCheckThroughVIP(t *testing.T) {
	for _, typ := range []string{"tcp", "http", "https"} {
		good := checkDoc(`[virtual_server.check]`, `type = "`+typ+`"`, `through_vip = true`,
			`[[virtual_server.real_server]]`, `address = "198.18.1.11"`, `method = "dr"`,
			`[[virtual_server.real_server]]`, `address = "198.18.2.12"`, `method = "tun"`)
		t.Run(typ, func(t *testing.T) { checkThroughVIPGood(t, good) })
	}

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{
			name: "nat real server",
			data: checkDoc(`[virtual_server.check]`, `type = "tcp"`, `through_vip = true`,
				`[[virtual_server.real_server]]`, `address = "198.18.2.11"`),
			want: `t.toml:11: virtual_server[0].check.through_vip: needs a real server forwarded by dr or tun: 198.18.2.11 is nat`,
		},
		{
			name: "udp check",
			data: checkDoc(`[virtual_server.check]`, `type = "udp"`, `through_vip = true`,
				`[[virtual_server.real_server]]`, `address = "198.18.1.11"`, `method = "dr"`),
			want: `t.toml:11: virtual_server[0].check.through_vip: applies to check type tcp, http, https only, and this check is udp`,
		},
		{
			name: "with address",
			data: checkDoc(`[[virtual_server.real_server]]`, `address = "198.18.1.11"`, `method = "dr"`,
				`[virtual_server.real_server.check]`, `type = "tcp"`, `address = "198.18.1.12"`, `through_vip = true`),
			want: `t.toml:15: virtual_server[0].real_server[0].check.through_vip: probes the virtual address: it excludes check.address`,
		},
		{
			name: "not a boolean",
			data: checkDoc(`[virtual_server.check]`, `type = "tcp"`, `through_vip = "yes"`,
				`[[virtual_server.real_server]]`, `address = "198.18.1.11"`, `method = "dr"`),
			want: `t.toml:11: virtual_server[0].check.through_vip:`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func checkThroughVIPGood(t *testing.T, good []byte) {
	cfg, err := Parse("t.toml", good)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range cfg.Services[0].Reals {
		if r.Check == nil || !r.Check.ThroughVIP {
			t.Errorf("real server %d: through_vip not set: %+v", i, r.Check)
		}
	}
	if f := Format(cfg); !strings.Contains(string(f), "through_vip = true") {
		t.Errorf("Format lost through_vip:\n%s", f)
	}
	if back, err := Parse("t.toml", Format(cfg)); err != nil {
		t.Errorf("Format's output does not parse: %v", err)
	} else if !back.Services[0].Reals[1].Check.ThroughVIP {
		t.Errorf("through_vip lost in Format's round trip")
	}
}
