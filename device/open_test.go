package device

import (
	"strings"
	"testing"
)

// TestOpenPacketRefuses: Open never changes a packet interface, so one that
// cannot carry the link is refused with the reason: missing, or not
// Ethernet (lo has no hardware address). Neither needs privileges.
func TestOpenPacketRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, iface, want string
	}{
		{"missing", "lvtnosuch0", `interface "lvtnosuch0": `},
		{"not ethernet", "lo", `interface "lo" is not an Ethernet interface`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			devs, _, err := Open(Spec{Name: tc.iface, Kind: Packet, MTU: 1500})
			if err == nil {
				for _, d := range devs {
					d.Close()
				}
				t.Fatalf("Open(%q) succeeded", tc.iface)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open(%q): %v; want it to contain %q", tc.iface, err, tc.want)
			}
		})
	}
}
