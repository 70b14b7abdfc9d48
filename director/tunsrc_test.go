package director

import (
	"net/netip"
	"testing"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// TestTunnelSourceFor: the DIP on the real server's subnet, else the first
// of its family, else none.
func TestTunnelSourceFor(t *testing.T) {
	ic := config.Interface{Addresses: []netip.Prefix{
		netip.MustParsePrefix("192.0.2.1/24"),
		netip.MustParsePrefix("2001:db8::1/64"),
		netip.MustParsePrefix("198.51.100.1/24"),
		netip.MustParsePrefix("2001:db8:1::1/64"),
	}}
	for _, tc := range []struct{ rip, want string }{
		{"198.51.100.7", "198.51.100.1"},
		{"192.0.2.9", "192.0.2.1"},
		{"203.0.113.5", "192.0.2.1"},
		{"2001:db8:1::21", "2001:db8:1::1"},
		{"2001:db8::21", "2001:db8::1"},
		{"2001:db8:9::21", "2001:db8::1"},
	} {
		if got := tunnelSourceFor(ic, netip.MustParseAddr(tc.rip)); got != lvs.AddrFromNetip(netip.MustParseAddr(tc.want)) {
			t.Errorf("tunnelSourceFor(%s) = %v, want %s", tc.rip, got, tc.want)
		}
	}
	v4only := config.Interface{Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}}
	if got := tunnelSourceFor(v4only, netip.MustParseAddr("2001:db8::21")); got != (lvs.Addr{}) {
		t.Errorf("no IPv6 DIP: got %v", got)
	}
	sc := config.Service{Reals: []config.Real{
		{Addr: netip.MustParseAddr("2001:db8::5"), Method: lvs.DR},
		{Addr: netip.MustParseAddr("2001:db8:1::5"), Method: lvs.TUN},
	}}
	if got := tunnelSource6(ic, sc); got != lvs.AddrFromNetip(netip.MustParseAddr("2001:db8:1::1")) {
		t.Errorf("tunnelSource6 = %v, want the DIP on the first TUN real server's subnet", got)
	}
}
