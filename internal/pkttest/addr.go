package pkttest

import (
	"net"
	"net/netip"
)

// MACs of the unit tests' hosts.
var (
	DirMAC   = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01} // the director (lvsd's TAP)
	CliMAC   = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x0c} // the client or its router
	RSMAC    = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x21} // real servers
	OtherMAC = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x99} // another host on the bridge
	BcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// Addresses of the unit tests: documentation ranges only.
var (
	Cli4 = netip.MustParseAddr("192.0.2.10")
	VIP4 = netip.MustParseAddr("192.0.2.100")
	RIP4 = netip.MustParseAddr("192.0.2.21")
	DIP4 = netip.MustParseAddr("192.0.2.1")
	Cli6 = netip.MustParseAddr("2001:db8::10")
	VIP6 = netip.MustParseAddr("2001:db8::100")
	RIP6 = netip.MustParseAddr("2001:db8:1::21")
)

// HW returns m as a net.HardwareAddr (a new slice).
func HW(m [6]byte) net.HardwareAddr { return net.HardwareAddr(append([]byte(nil), m[:]...)) }

// AP is netip.AddrPortFrom.
func AP(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
