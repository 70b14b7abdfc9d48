package pkttest

import (
	"encoding/binary"
	"testing"
)

// IPOf returns the IP packet of a frame (after the Ethernet header unless
// l3), Ethernet padding excluded.
func IPOf(l3 bool, frame []byte) []byte {
	ip := frame
	if !l3 {
		ip = frame[14:]
	}
	if ip[0]>>4 == 4 {
		return ip[:binary.BigEndian.Uint16(ip[2:4])]
	}
	return ip[:40+int(binary.BigEndian.Uint16(ip[4:6]))]
}

// L4Of returns the transport segment of an IP packet without extension
// headers.
func L4Of(ip []byte) []byte {
	if ip[0]>>4 == 4 {
		return ip[int(ip[0]&0xf)*4:]
	}
	return ip[40:]
}

// L3Off is the offset of the IP header in a frame.
func L3Off(l3 bool) int {
	if l3 {
		return 0
	}
	return 14
}

// Plain reference checksums (RFC 1071), independent of gVisor's optimised
// code, so that a test checks lvsd's incremental updates against a sum
// computed another way.

// OnesSum adds b to the ones' complement sum s, 16 bits at a time.
func OnesSum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// Fold folds a 32-bit ones' complement sum into 16 bits.
func Fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// PseudoSum is the ones' complement sum of the L4 pseudo-header of ip.
func PseudoSum(ip []byte) uint32 {
	l4 := L4Of(ip)
	if ip[0]>>4 == 4 {
		return OnesSum(ip[12:20], uint32(ip[9])+uint32(len(l4)))
	}
	return OnesSum(ip[8:40], uint32(ip[6])+uint32(len(l4)))
}

// CheckSums verifies from scratch the IPv4 header checksum and the L4
// checksum of the IP packet ip: TCP, UDP and ICMPv6 over their
// pseudo-header, ICMPv4 over its message alone (RFC 792). A UDP checksum of
// 0 (none) is accepted over IPv4 only.
func CheckSums(tb testing.TB, ip []byte) {
	tb.Helper()
	if ip[0]>>4 == 4 {
		if got := Fold(OnesSum(ip[:int(ip[0]&0xf)*4], 0)); got != 0xffff {
			tb.Errorf("IPv4 header checksum invalid (sum %#04x)", got)
		}
	}
	l4 := L4Of(ip)
	proto := ip[9]
	if ip[0]>>4 == 6 {
		proto = ip[6]
	}
	if proto == UDP && l4[6] == 0 && l4[7] == 0 {
		if ip[0]>>4 == 6 {
			tb.Errorf("IPv6 UDP checksum 0")
		}
		return
	}
	pseudo := uint32(0)
	if proto != 1 || ip[0]>>4 != 4 { // ICMPv4 has no pseudo-header
		pseudo = PseudoSum(ip)
	}
	if got := Fold(OnesSum(l4, pseudo)); got != 0xffff {
		tb.Errorf("L4 (protocol %d) checksum invalid (sum %#04x)", proto, got)
	}
}

// CsumOffset is the offset of the checksum field in the L4 header of ip.
func CsumOffset(ip []byte) int {
	proto := ip[9]
	if ip[0]>>4 == 6 {
		proto = ip[6]
	}
	if proto == UDP {
		return 6
	}
	return 16
}
