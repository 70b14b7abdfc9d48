package config

import (
	"strings"
	"testing"
)

// TestParseCannotForward: configurations that pass every check of their
// own and can never forward are refused: a network or broadcast address as
// a director address, VIP or real server; a DR real server off the link;
// a real server without a route.
func TestParseCannotForward(t *testing.T) {
	ifc := func(addrs string, extra ...string) []string {
		return append([]string{`[[interface]]`, `name = "lvttap0"`, `addresses = [` + addrs + `]`}, extra...)
	}
	svc := func(vip, method string, reals ...string) []string {
		ls := []string{``, `[[virtual_server]]`, `protocol = "tcp"`, `address = "` + vip + `"`, `port = 80`, `method = "` + method + `"`}
		for _, r := range reals {
			ls = append(ls, `[[virtual_server.real_server]]`, `address = "`+r+`"`)
		}
		return ls
	}
	doc := func(parts ...[]string) []byte {
		var ls []string
		for _, p := range parts {
			ls = append(ls, p...)
		}
		return lines(ls...)
	}
	tests := []struct {
		name string
		data []byte
		want []string // prefixes of the error lines; nil: valid
	}{
		{
			name: "network address as DIP",
			data: doc(ifc(`"198.18.1.0/24"`)),
			want: []string{`t.toml:3: interface[0].addresses[0]: "198.18.1.0/24" is the network address of 198.18.1.0/24, not a host address`},
		},
		{
			name: "broadcast address as DIP",
			data: doc(ifc(`"198.18.1.1/24", "198.18.3.255/23"`)),
			want: []string{`t.toml:3: interface[0].addresses[1]: "198.18.3.255/23" is the broadcast address of 198.18.2.0/23, not a host address`},
		},
		{
			name: "a /31 has no network or broadcast address",
			data: doc(ifc(`"198.18.1.0/31"`), svc("198.18.1.1", "nat", "198.18.1.1")),
			want: []string{`t.toml:11: virtual_server[0].real_server[0].address: 198.18.1.1 is the VIP of this service`},
		},
		{
			name: "broadcast address as VIP",
			data: doc(ifc(`"198.18.1.1/24"`), svc("198.18.1.255", "nat", "198.18.1.20")),
			want: []string{`t.toml:7: virtual_server[0].address: 198.18.1.255 is the broadcast address of 198.18.1.0/24, not a host address`},
		},
		{
			name: "network address as real server",
			data: doc(ifc(`"198.18.1.1/24", "198.18.2.1/24"`), svc("198.18.1.100", "nat", "198.18.2.0")),
			want: []string{`t.toml:11: virtual_server[0].real_server[0].address: 198.18.2.0 is the network address of 198.18.2.0/24, not a host address`},
		},
		{
			name: "dr real server off the link",
			data: doc(ifc(`"198.18.1.1/24"`, `[[interface.route]]`, `destination = "198.19.0.0/16"`, `gateway = "198.18.1.254"`),
				svc("198.18.1.100", "dr", "198.19.2.11")),
			want: []string{`t.toml:14: virtual_server[0].real_server[0].address: 198.19.2.11 is on no subnet of interface lvttap0 (198.18.1.1/24) and no on-link route: dr changes only the destination MAC`},
		},
		{
			name: "dr real server through an on-link route",
			data: doc(ifc(`"198.18.1.1/24"`, `[[interface.route]]`, `destination = "198.19.2.0/24"`), svc("198.18.1.100", "dr", "198.19.2.11")),
		},
		{
			name: "nat real server without a route",
			data: doc(ifc(`"198.18.1.1/24"`), svc("198.18.1.100", "nat", "198.18.1.20", "198.19.2.11")),
			want: []string{`t.toml:13: virtual_server[0].real_server[1].address: 198.19.2.11 has no route through interface lvttap0 (198.18.1.1/24): add its subnet to addresses, or an [[interface.route]] that holds it`},
		},
		{
			name: "tun real server without a route",
			data: doc(ifc(`"198.18.1.1/24", "2001:2::1/64"`), svc("2001:2::100", "tun", "2001:2:1::11")),
			want: []string{`t.toml:11: virtual_server[0].real_server[0].address: 2001:2:1::11 has no route through interface lvttap0`},
		},
		{
			name: "ipv6 tun real server, no ipv6 address",
			data: doc(ifc(`"198.18.1.1/24"`), svc("2001:2::100", "tun", "2001:2::11")),
			want: []string{`t.toml:11: virtual_server[0].real_server[0].address: 2001:2::11 is IPv6 but interface lvttap0 has no IPv6 address (198.18.1.1/24) to send to it from`},
		},
		{
			name: "ipv6 tun real server, no ipv6 address on a tun interface",
			data: doc(ifc(`"198.18.1.1/24"`, `type = "tun"`), svc("2001:2::100", "tun", "2001:2::11")),
			want: []string{`t.toml:12: virtual_server[0].real_server[0].address: 2001:2::11 is IPv6 but interface lvttap0 has no IPv6 address`},
		},
		{
			name: "tun across families",
			data: doc(ifc(`"198.18.1.1/24", "2001:2::1/64"`), svc("2001:2::100", "tun", "198.18.1.11"), svc("198.18.1.100", "tun", "2001:2::11")),
		},
		{
			name: "tun across families needs an address of the real server's family",
			data: doc(ifc(`"2001:2::1/64"`), svc("2001:2::100", "tun", "198.18.1.11")),
			want: []string{`t.toml:11: virtual_server[0].real_server[0].address: 198.18.1.11 is IPv4 but interface lvttap0 has no IPv4 address (2001:2::1/64) to send to it from`},
		},
		{
			name: "tun across families, off every route",
			data: doc(ifc(`"198.18.1.1/24", "2001:2::1/64"`), svc("198.18.1.100", "tun", "2001:2:1::11")),
			want: []string{`t.toml:11: virtual_server[0].real_server[0].address: 2001:2:1::11 has no route through interface lvttap0`},
		},
		{
			name: "nat across families stays refused",
			data: doc(ifc(`"198.18.1.1/24", "2001:2::1/64"`), svc("198.18.1.100", "nat", "2001:2::11")),
			want: []string{`t.toml:11: virtual_server[0].real_server[0].address: 2001:2::11 is IPv6 but the VIP 198.18.1.100 is IPv4; method nat needs one family`},
		},
		{
			name: "nat real server through a gateway",
			data: doc(ifc(`"198.18.1.1/24"`, `[[interface.route]]`, `destination = "0.0.0.0/0"`, `gateway = "198.18.1.254"`),
				svc("198.18.1.100", "nat", "198.19.2.11")),
		},
		{
			name: "a tun interface without routes routes everything",
			data: doc(ifc(`"198.18.3.1/24"`, `type = "tun"`), svc("198.18.1.100", "nat", "198.19.2.11")),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", tc.data)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tc.want) {
				t.Fatalf("errors:\n%s\nwant %d starting:\n%s", strings.Join(got, "\n"), len(tc.want), strings.Join(tc.want, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("error %d:\n%s\nwant it to start:\n%s", i, got[i], tc.want[i])
				}
			}
		})
	}
}
