package config

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// svcLines is a TCP service on 198.18.1.100 (line 4 of withIface) with the
// given keys, and one real server after them.
func svcLines(keys ...string) []string {
	ls := []string{`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `method = "nat"`}
	ls = append(ls, keys...)
	return append(ls, `  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`)
}

func TestPersistenceKeys(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want func(s Service) any // what to compare
		val  any
	}{
		{
			name: "not persistent by default",
			data: withIface(svcLines(`port = 80`)...),
			want: func(s Service) any { return s.Persistence },
			val:  Persistence{},
		},
		{
			name: "true is ipvsadm's -p default with a /32",
			data: withIface(svcLines(`port = 80`, `persistence_timeout = true`)...),
			want: func(s Service) any { return s.Persistence },
			val:  Persistence{Timeout: 300 * time.Second, Netmask: 32},
		},
		{
			name: "integer seconds and a dotted netmask",
			data: withIface(svcLines(`port = 80`, `persistence_timeout = 60`, `persistence_netmask = "255.255.255.0"`)...),
			want: func(s Service) any { return s.Persistence },
			val:  Persistence{Timeout: time.Minute, Netmask: 24},
		},
		{
			name: "prefix length as a string",
			data: withIface(svcLines(`port = 80`, `persistence_timeout = "30m"`, `persistence_netmask = "/20"`)...),
			want: func(s Service) any { return s.Persistence },
			val:  Persistence{Timeout: 30 * time.Minute, Netmask: 20},
		},
		{
			name: "zero is off",
			data: withIface(svcLines(`port = 80`, `persistence_timeout = "0s"`)...),
			want: func(s Service) any { return s.Persistence },
			val:  Persistence{},
		},
		{
			name: "ipv6 defaults to /128",
			data: lines(`[[interface]]`, `name = "lvttap0"`, `addresses = ["2001:2::1/64"]`,
				`[[virtual_server]]`, `protocol = "tcp"`, `address = "2001:2::100"`, `port = 80`, `persistence_timeout = 10`,
				`persistence_netmask = 64`),
			want: func(s Service) any { return s.Persistence },
			val:  Persistence{Timeout: 10 * time.Second, Netmask: 64},
		},
		{
			name: "ports list: first port is the key, real servers have port 0",
			data: withIface(svcLines(`ports = [443, 80]`, `persistence_timeout = 10`)...),
			want: func(s Service) any { return []any{s.Port, s.Ports, s.Reals[0].Port} },
			val:  []any{uint16(443), []uint16{443, 80}, uint16(0)},
		},
		{
			name: "port zero with persistence",
			data: withIface(svcLines(`port = 0`, `persistence_timeout = 10`)...),
			want: func(s Service) any { return []any{s.Port, s.Ports == nil, s.Reals[0].Port} },
			val:  []any{uint16(0), true, uint16(0)},
		},
		{
			name: "one packet for udp",
			data: withIface(`[[virtual_server]]`, `protocol = "udp"`, `address = "198.18.1.100"`, `port = 53`, `one_packet = true`, `method = "dr"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`),
			want: func(s Service) any { return s.OnePacket },
			val:  true,
		},
		{
			name: "slow start inherited and overridden",
			data: withIface(`[[virtual_server]]`, `protocol = "tcp"`, `address = "198.18.1.100"`, `port = 80`, `slow_start = "30s"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.12"`, `  slow_start = 0`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.13"`, `  slow_start = 90`),
			want: func(s Service) any {
				return []time.Duration{s.SlowStart, s.Reals[0].SlowStart, s.Reals[1].SlowStart, s.Reals[2].SlowStart}
			},
			val: []time.Duration{30 * time.Second, 30 * time.Second, 0, 90 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.val, tt.want(cfg.Services[0])); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestSysctl(t *testing.T) {
	cfg, err := Parse("t.toml", withIface(`[sysctl]`, `expire_quiescent_template = true`))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Sysctl.ExpireQuiescentTemplate {
		t.Errorf("expire_quiescent_template = true not read")
	}
	cfg, err = Parse("t.toml", withIface())
	if err != nil || cfg.Sysctl.ExpireQuiescentTemplate {
		t.Errorf("expire_quiescent_template is on by default (IPVS: off): %v", err)
	}
}

func TestPersistenceErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want []string
	}{
		{
			name: "port zero needs persistence",
			data: withIface(svcLines(`port = 0`)...),
			want: []string{"t.toml:8: virtual_server[0].port: 0 (all ports) needs persistence_timeout"},
		},
		{
			name: "port zero with persistence off",
			data: withIface(svcLines(`port = 0`, `persistence_timeout = false`)...),
			want: []string{"t.toml:9: virtual_server[0].persistence_timeout: is off, but a service over all ports"},
		},
		{
			name: "port and ports",
			data: withIface(svcLines(`port = 80`, `ports = [80, 443]`)...),
			want: []string{"t.toml:9: virtual_server[0].ports: give either port or ports, not both"},
		},
		{
			name: "bad ports",
			data: withIface(svcLines(`ports = [80, 0, "x", 80]`)...),
			want: []string{
				"t.toml:8: virtual_server[0].ports[1]: 0 is out of range 1..65535",
				`t.toml:8: virtual_server[0].ports[2]: "x" is a string, want an integer`,
				"t.toml:8: virtual_server[0].ports[3]: 80 is given twice",
			},
		},
		{
			name: "empty ports",
			data: withIface(svcLines(`ports = []`)...),
			want: []string{"t.toml:8: virtual_server[0].ports: is empty"},
		},
		{
			name: "a real server port in a service over several ports",
			data: withIface(append(svcLines(`ports = [80, 443]`), `  port = 8080`)...),
			want: []string{"t.toml:11: virtual_server[0].real_server[0].port: a service over several ports forwards each connection to the port the client addressed; remove port"},
		},
		{
			name: "a port of a list taken by another service",
			data: withIface(append(svcLines(`port = 443`), svcLines(`ports = [80, 443]`)...)...),
			want: []string{"t.toml:15: virtual_server[1].ports[1]: tcp 198.18.1.100:443 is already defined by virtual_server[0]"},
		},
		{
			name: "netmask without persistence",
			data: withIface(svcLines(`port = 80`, `persistence_netmask = 24`)...),
			want: []string{"t.toml:9: virtual_server[0].persistence_netmask: has no effect without persistence_timeout"},
		},
		{
			name: "bad netmasks",
			data: withIface(append(append(
				svcLines(`port = 80`, `persistence_timeout = 1`, `persistence_netmask = 33`),
				svcLines(`port = 81`, `persistence_timeout = 1`, `persistence_netmask = "255.255.0.255"`)...),
				svcLines(`port = 82`, `persistence_timeout = 1`, `persistence_netmask = "wide"`)...)...),
			want: []string{
				"t.toml:10: virtual_server[0].persistence_netmask: prefix length 33 is out of range 0..32 for an IPv4 VIP",
				`t.toml:19: virtual_server[1].persistence_netmask: "255.255.0.255" is not a contiguous netmask`,
				`t.toml:28: virtual_server[2].persistence_netmask: "wide" is not a netmask`,
			},
		},
		{
			name: "bad persistence timeouts",
			data: withIface(append(svcLines(`port = 80`, `persistence_timeout = "1.5s"`),
				svcLines(`port = 81`, `persistence_timeout = [1]`)...)...),
			want: []string{
				`t.toml:9: virtual_server[0].persistence_timeout: "1.5s" is not a whole number of seconds`,
				`t.toml:17: virtual_server[1].persistence_timeout: is an array, want a duration`,
			},
		},
		{
			name: "one packet for tcp",
			data: withIface(svcLines(`port = 80`, `one_packet = true`)...),
			want: []string{"t.toml:9: virtual_server[0].one_packet: applies to udp services only (ipvsadm -o)"},
		},
		{
			name: "one packet with nat",
			data: withIface(`[[virtual_server]]`, `protocol = "udp"`, `address = "198.18.1.100"`, `port = 53`, `one_packet = true`, `method = "nat"`,
				`  [[virtual_server.real_server]]`, `  address = "198.18.2.11"`),
			want: []string{"t.toml:8: virtual_server[0].one_packet: needs dr or tun real servers"},
		},
		{
			name: "negative slow start",
			data: withIface(svcLines(`port = 80`, `slow_start = -5`)...),
			want: []string{"t.toml:9: virtual_server[0].slow_start: -5 is negative; 0 switches it off"},
		},
		{
			name: "sysctl type",
			data: withIface(`[sysctl]`, `expire_quiescent_template = 1`),
			want: []string{"t.toml:5: sysctl.expire_quiescent_template: 1 is an integer, want true or false"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", tt.data)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse error %v, want an ErrorList", err)
			}
			if diff := cmp.Diff(tt.want, prefixes(list, tt.want)); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s\nfull errors:\n%v", diff, err)
			}
		})
	}
}
