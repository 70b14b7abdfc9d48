package config

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// TestTunnelKeys reads tun_type, tun_port and tun_csum into Real.Tunnel,
// and Format writes them back.
func TestTunnelKeys(t *testing.T) {
	data := withIface(
		`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`, `method = "tun"`,
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`,
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.12"`, `  tun_type = "gue"`, `  tun_port = 6080`,
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.13"`, `  tun_type = "gue"`, `  tun_port = 5555`, `  tun_csum = "remcsum"`,
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.14"`, `  tun_type = "gre"`, `  tun_csum = "csum"`,
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.15"`, `  tun_type = "gre"`, `  tun_csum = "nocsum"`,
	)
	cfg, err := Parse("t.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	want := []lvs.Tunnel{
		{},
		{Type: lvs.TunGUE, Port: 6080},
		{Type: lvs.TunGUE, Port: 5555, Flags: lvs.TunRemCsum},
		{Type: lvs.TunGRE, Flags: lvs.TunCsum},
		{Type: lvs.TunGRE},
	}
	var got []lvs.Tunnel
	for _, r := range cfg.Services[0].Reals {
		got = append(got, r.Tunnel)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tunnels (-want +got):\n%s", diff)
	}
	again, err := Parse("t.toml", Format(cfg))
	if err != nil {
		t.Fatalf("Parse(Format): %v\n%s", err, Format(cfg))
	}
	got = got[:0]
	for _, r := range again.Services[0].Reals {
		got = append(got, r.Tunnel)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tunnels after Format and Parse (-want +got):\n%s", diff)
	}
}

func TestTunnelKeyErrors(t *testing.T) {
	data := withIface(
		`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`, `method = "tun"`, // 4..8
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`, `  tun_type = "gue"`, // 9..11
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.12"`, `  tun_type = "gre"`, `  tun_port = 6080`, // 12..15
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.13"`, `  tun_csum = "csum"`, // 16..18
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.14"`, `  tun_type = "gre"`, `  tun_csum = "remcsum"`, // 19..22
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.15"`, `  tun_type = "vxlan"`, // 23..25
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.16"`, `  tun_type = "gue"`, `  tun_port = 0`, // 26..29
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.17"`, `  method = "nat"`, `  tun_type = "gue"`, // 30..33
	)
	want := []string{
		`t.toml:11: virtual_server[0].real_server[0].tun_type: gue needs tun_port`,
		`t.toml:15: virtual_server[0].real_server[1].tun_port: tun_type gre takes no port; only gue does`,
		`t.toml:18: virtual_server[0].real_server[2].tun_csum: tun_type ipip takes no checksum option`,
		`t.toml:22: virtual_server[0].real_server[3].tun_csum: remcsum (remote checksum offload) is gue's`,
		`t.toml:25: virtual_server[0].real_server[4].tun_type: "vxlan" is not a tunnel type; valid: ipip, gue, gre`,
		`t.toml:29: virtual_server[0].real_server[5].tun_port: 0 is out of range 1..65535`,
		`t.toml:33: virtual_server[0].real_server[6].tun_type: only a tun real server takes a tunnel option, and method is nat`,
	}
	_, err := Parse("t.toml", data)
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse error is %T, want ErrorList: %v", err, err)
	}
	if diff := cmp.Diff(want, prefixes(list, want)); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s\nfull errors:\n%v", diff, err)
	}
}

// TestTunnelThroughVIP: a through_vip probe goes inside IPIP, so lvsd check
// refuses it for a gue or gre real server.
func TestTunnelThroughVIP(t *testing.T) {
	data := withIface(
		`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`, `method = "tun"`, // 4..8
		`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`, `  tun_type = "gre"`, // 9..11
		`  check = { type = "tcp", through_vip = true }`, // 12
	)
	_, err := Parse("t.toml", data)
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse error is %T, want ErrorList: %v", err, err)
	}
	want := []string{`t.toml:12: virtual_server[0].real_server[0].check.through_vip: sends its probe inside IPIP, and 198.18.2.11 is tun_type gre`}
	if diff := cmp.Diff(want, prefixes(list, want)); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s\nfull errors:\n%v", diff, err)
	}
}
