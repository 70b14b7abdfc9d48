package main

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
)

// TestSYNFrame: every flood frame is a well-formed IPv4 TCP SYN to the VIP,
// both checksums right, from a source within the lab's range and outside
// its own subnets.
func TestSYNFrame(t *testing.T) {
	var f [58]byte
	src := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	dst := net.HardwareAddr{2, 0, 0x5e, 0x10, 0, 1}
	vip := netip.MustParseAddr("198.18.1.100")
	synFrame(f[:], src, dst, vip.As4(), 80)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		s := floodFirst + rng.Uint32N(floodLast-floodFirst+1)
		setSource(f[:], s, uint16(1024+rng.IntN(64512)), rng.Uint32())
		ip, tcp := f[14:34], f[34:58]
		if fold(sum(ip, 0)) != 0xffff {
			t.Fatalf("IPv4 header checksum wrong: % x", ip)
		}
		if fold(sum(tcp, sum(ip[12:20], 6+uint32(len(tcp))))) != 0xffff {
			t.Fatalf("TCP checksum wrong: % x", tcp)
		}
		a := netip.AddrFrom4([4]byte(ip[12:16]))
		if !floodSources.Contains(a) || netip.MustParsePrefix("198.18.0.0/22").Contains(a) {
			t.Fatalf("source %v outside 198.18.4.0-198.19.255.255", a)
		}
		if netip.AddrFrom4([4]byte(ip[16:20])) != vip || binary.BigEndian.Uint16(tcp[2:]) != 80 || tcp[13] != 0x02 {
			t.Fatalf("not a SYN to %v:80: % x", vip, f)
		}
	}
}
