package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// svcLines is a NAT service with two real servers, for check tests; the
// check tables go where the test puts them.
func checkDoc(ls ...string) []byte {
	head := []string{
		`[[interface]]`, `name = "lvttap0"`, `addresses = ["198.18.1.1/24", "198.18.2.1/24"]`,
		`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`, `method = "nat"`,
	}
	return lines(append(head, ls...)...)
}

func TestParseChecks(t *testing.T) {
	data := checkDoc(
		`sorry_server = "198.18.2.99"`, // line 9
		`quorum = 3`,
		`hysteresis = 1`,
		`quorum_down = "logger down"`,
		`[virtual_server.check]`,
		`type = "http"`,
		`interval = "500ms"`,
		`path = "/health"`,
		`status = [200, "300-302"]`,
		`digest = "9B3A0C85A887A256D6939DA88AABD8CD"`,
		`[[virtual_server.real_server]]`,
		`address = "198.18.2.11"`,
		`port = 8080`,
		`[[virtual_server.real_server]]`,
		`address = "198.18.2.12"`,
		`port = 8080`,
		`[virtual_server.real_server.check]`,
		`port = 9000`,
		`fall = 5`,
		`inhibit_on_failure = true`,
		`[[virtual_server.real_server]]`,
		`address = "198.18.2.13"`,
		`port = 8080`,
		`check = { type = "none" }`,
	)
	cfg, err := Parse("t.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	svc := cfg.Services[0]
	base := Check{
		Type: "http", Interval: 500 * time.Millisecond, Timeout: DefaultCheckTimeout, Rise: 1, Fall: 2,
		DelayBeforeRetry: DefaultRetryDelay, Warmup: 500 * time.Millisecond, Path: "/health",
		Status: []StatusRange{{Lo: 200, Hi: 200}, {Lo: 300, Hi: 302}}, Digest: "9b3a0c85a887a256d6939da88aabd8cd",
	}
	// The service's own check is kept, as the check of real servers added
	// later: the one its real servers without a table of their own get.
	svcCheck := base
	wantH := Health{SorryServer: netip.MustParseAddrPort("198.18.2.99:80"), Quorum: 3, Hysteresis: 1, QuorumDown: "logger down",
		Check: &svcCheck}
	if diff := cmp.Diff(wantH, svc.Health, cmpOpts...); diff != "" {
		t.Errorf("health (-want +got):\n%s", diff)
	}
	over := base
	over.Port, over.Fall, over.InhibitOnFailure = 9000, 5, true
	want := []*Check{&base, &over, nil}
	for i, r := range svc.Reals {
		if diff := cmp.Diff(want[i], r.Check, cmpOpts...); diff != "" {
			t.Errorf("real server %d check (-want +got):\n%s", i, diff)
		}
	}
}

func TestParseCheckErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	tests := []struct {
		name string
		data []byte
		want []string
	}{
		{
			name: "unknown type",
			data: checkDoc(`[virtual_server.check]`, `type = "smtp"`),
			want: []string{`t.toml:10: virtual_server[0].check.type: "smtp" is not a check type; valid: tcp (TCP_CHECK)`},
		},
		{
			name: "missing type",
			data: checkDoc(`[virtual_server.check]`, `interval = 2`, `[[virtual_server.real_server]]`, `address = "198.18.2.11"`),
			want: []string{`t.toml:9: virtual_server[0].check.type: required key is missing`},
		},
		{
			name: "key of another type",
			data: checkDoc(`[virtual_server.check]`, `type = "tcp"`, `path = "/"`, `[[virtual_server.real_server]]`, `address = "198.18.2.11"`),
			want: []string{`t.toml:11: virtual_server[0].check.path: applies to check type http, https only, and this check is tcp`},
		},
		{
			name: "bad values",
			data: checkDoc(`[virtual_server.check]`, `type = "http"`, `interval = "5ms"`, `rise = 0`,
				`status = ["2xx"]`, `digest = "abc"`, `regexp = "("`, `[[virtual_server.real_server]]`, `address = "198.18.2.11"`),
			want: []string{
				`t.toml:11: virtual_server[0].check.interval: "5ms" is out of range 10ms..1h0m0s`,
				`t.toml:12: virtual_server[0].check.rise: 0 is out of range 1..100`,
				`t.toml:13: virtual_server[0].check.status[0]: "2xx" is not a status code`,
				`t.toml:14: virtual_server[0].check.digest: "abc" is not an MD5 digest`,
				`t.toml:15: virtual_server[0].check.regexp: "(" is not a regular expression`,
			},
		},
		{
			name: "real server override is blamed on its own line",
			data: checkDoc(`[virtual_server.check]`, `type = "udp"`, `[[virtual_server.real_server]]`, `address = "198.18.2.11"`,
				`[virtual_server.real_server.check]`, `port = 0`, `payload = "a"`, `payload_hex = "zz"`),
			want: []string{
				`t.toml:14: virtual_server[0].real_server[0].check.port: 0 is out of range 1..65535`,
				`t.toml:16: virtual_server[0].real_server[0].check.payload_hex: give either payload or payload_hex, not both`,
			},
		},
		{
			name: "exec path that does not exist, and one not executable",
			data: checkDoc(`[virtual_server.check]`, `type = "exec"`, `command = "/nonexistent/check --x"`,
				`[[virtual_server.real_server]]`, `address = "198.18.2.11"`,
				`[virtual_server.real_server.check]`, `command = "`+notExec+`"`),
			want: []string{
				`t.toml:11: virtual_server[0].check.command: "/nonexistent/check" cannot be run`,
				`t.toml:15: virtual_server[0].real_server[0].check.command: "` + notExec + `" is not an executable file`,
			},
		},
		{
			name: "port 0 target in a service over several ports",
			data: lines(`[[interface]]`, `name = "lvttap0"`, `addresses = ["198.18.1.1/24"]`,
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `ports = [80, 443]`,
				`[virtual_server.check]`, `type = "tcp"`, `[[virtual_server.real_server]]`, `address = "198.18.1.11"`),
			want: []string{`t.toml:9: virtual_server[0].check.type: a tcp check of 198.18.1.11 needs a port`},
		},
		{
			name: "sorry server and quorum",
			data: checkDoc(`sorry_server = "2001:2::9"`, `quorum = 2`, `hysteresis = 2`),
			want: []string{
				`t.toml:9: virtual_server[0].sorry_server: 2001:2::9 is IPv6 but the VIP 198.18.1.100 is IPv4`,
				`t.toml:11: virtual_server[0].hysteresis: 2 must be below quorum 2`,
			},
		},
		{
			name: "unknown check key",
			data: checkDoc(`[virtual_server.check]`, `type = "tcp"`, `intervall = 2`),
			want: []string{`t.toml:11: virtual_server[0].check.intervall: unknown key; did you mean interval?`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", tt.data)
			if err == nil {
				t.Fatalf("Parse succeeded, want errors; got %+v", cfg)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse error is %T, want ErrorList: %v", err, err)
			}
			if diff := cmp.Diff(tt.want, prefixes(list, tt.want)); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s\nfull errors:\n%v", diff, err)
			}
		})
	}
}
