package device

import (
	"io/fs"
	"net"
	"strings"
	"testing"
)

// TestCheckPacketHost: the README's preconditions of a packet interface, an
// interface without addresses (an IPv6 link-local one aside) in a
// namespace that does not forward, are checked at start.
func TestCheckPacketHost(t *testing.T) {
	ipnet := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	sysctls := func(v4, v6 string) func(string) ([]byte, error) {
		return func(path string) ([]byte, error) {
			v := v4
			if strings.Contains(path, "/ipv6/") {
				v = v6
			}
			if v == "" {
				return nil, fs.ErrNotExist
			}
			return []byte(v + "\n"), nil
		}
	}
	tests := []struct {
		name  string
		addrs []net.Addr
		read  func(string) ([]byte, error)
		want  string // "" for no error
	}{
		{name: "clean", read: sysctls("0", "0")},
		{name: "ipv6 link-local only", addrs: []net.Addr{ipnet("fe80::1/64")}, read: sysctls("0", "0")},
		{name: "no ipv6 in the kernel", read: sysctls("0", "")},
		{name: "an ipv4 address", addrs: []net.Addr{ipnet("fe80::1/64"), ipnet("192.0.2.1/24")}, read: sysctls("0", "0"),
			want: `interface "lvt0" holds the address 192.0.2.1/24: the kernel would answer for it beside lvsd's netstack`},
		{name: "a global ipv6 address", addrs: []net.Addr{ipnet("2001:db8::1/64")}, read: sysctls("0", "0"),
			want: `interface "lvt0" holds the address 2001:db8::1/64`},
		{name: "ipv4 forwarding", read: sysctls("1", "0"),
			want: `interface "lvt0": net.ipv4.conf.lvt0.forwarding is 1: the kernel would route the clients' packets beside lvsd`},
		{name: "ipv6 forwarding", read: sysctls("0", "1"),
			want: `interface "lvt0": net.ipv6.conf.lvt0.forwarding is 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPacketHost("lvt0", tc.addrs, tc.read)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("error %v, want one starting %q", err, tc.want)
			}
		})
	}
}
