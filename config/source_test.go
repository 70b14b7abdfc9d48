package config

import (
	"net/netip"
	"testing"
)

func TestInterfaceSource(t *testing.T) {
	ic := Interface{
		Addresses: []netip.Prefix{
			pfx("192.0.2.1/26"), pfx("192.0.2.65/26"), pfx("192.0.2.66/26"), pfx("192.0.2.129/25"),
			pfx("2001:db8:1::1/64"), pfx("2001:db8:2::1/64"),
		},
		Routes: []Route{
			{Destination: pfx("198.51.100.0/24"), Gateway: addr("192.0.2.70")},
			{Destination: pfx("198.51.100.128/25"), Gateway: addr("192.0.2.130")},
			{Destination: pfx("203.0.113.0/24")},
			{Destination: pfx("2001:db8:9::/48"), Gateway: addr("2001:db8:2::fe")},
		},
	}
	tests := []struct {
		name   string
		dst    string
		want   string
		routed bool
	}{
		{name: "on-link, first subnet", dst: "192.0.2.10", want: "192.0.2.1", routed: true},
		{name: "on-link, not the first address", dst: "192.0.2.100", want: "192.0.2.65", routed: true},
		{name: "on-link, the longest prefix", dst: "192.0.2.130", want: "192.0.2.129", routed: true},
		{name: "ipv4-mapped", dst: "::ffff:192.0.2.100", want: "192.0.2.65", routed: true},
		{name: "via a gateway", dst: "198.51.100.7", want: "192.0.2.65", routed: true},
		{name: "via the longest route", dst: "198.51.100.200", want: "192.0.2.129", routed: true},
		{name: "on-link route", dst: "203.0.113.9", want: "192.0.2.1", routed: true},
		{name: "unroutable", dst: "198.18.0.1", want: "192.0.2.1", routed: false},
		{name: "ipv6 on-link", dst: "2001:db8:2::9", want: "2001:db8:2::1", routed: true},
		{name: "ipv6 via a gateway", dst: "2001:db8:9::9", want: "2001:db8:2::1", routed: true},
		{name: "ipv6 unroutable", dst: "2001:db8:7::9", want: "2001:db8:1::1", routed: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, routed := ic.Source(addr(tc.dst))
			if src != addr(tc.want) || routed != tc.routed {
				t.Errorf("Source(%s) = %v, %v; want %s, %v", tc.dst, src, routed, tc.want, tc.routed)
			}
		})
	}
	v4only := Interface{Addresses: []netip.Prefix{pfx("192.0.2.1/24")}}
	if src, routed := v4only.Source(addr("2001:db8::1")); src.IsValid() || routed {
		t.Errorf("Source of an IPv6 address without an IPv6 DIP = %v, %v", src, routed)
	}
}
