package pkttest

import (
	"net/netip"
	"testing"
)

// A Checker asserts one property of a decoded frame; Check runs several,
// in the spirit of gVisor's checker package: a test lists what matters and
// each failure names the field.
type Checker func(tb testing.TB, s Summary, ip []byte)

// Check decodes frame (an IP packet when l3) and runs the checkers on it.
func Check(tb testing.TB, l3 bool, frame []byte, cs ...Checker) {
	tb.Helper()
	s := Summarize(tb, l3, frame)
	ip := IPOf(l3, frame)
	for _, c := range cs {
		c(tb, s, ip)
	}
}

func field(tb testing.TB, name, got, want string) {
	tb.Helper()
	if got != want {
		tb.Errorf("%s: got %s, want %s", name, got, want)
	}
}

// SrcMAC checks the Ethernet source.
func SrcMAC(m [6]byte) Checker {
	return func(tb testing.TB, s Summary, _ []byte) {
		tb.Helper()
		field(tb, "source MAC", s.SrcMAC, HW(m).String())
	}
}

// DstMAC checks the Ethernet destination.
func DstMAC(m [6]byte) Checker {
	return func(tb testing.TB, s Summary, _ []byte) {
		tb.Helper()
		field(tb, "destination MAC", s.DstMAC, HW(m).String())
	}
}

// Src checks the source address and port.
func Src(a netip.AddrPort) Checker {
	return func(tb testing.TB, s Summary, _ []byte) { tb.Helper(); field(tb, "source", s.Src, a.String()) }
}

// Dst checks the destination address and port.
func Dst(a netip.AddrPort) Checker {
	return func(tb testing.TB, s Summary, _ []byte) { tb.Helper(); field(tb, "destination", s.Dst, a.String()) }
}

// TTL checks the IPv4 TTL or IPv6 hop limit.
func TTL(n uint8) Checker {
	return func(tb testing.TB, s Summary, _ []byte) {
		tb.Helper()
		if s.TTL != n {
			tb.Errorf("TTL: got %d, want %d", s.TTL, n)
		}
	}
}

// ValidChecksums verifies the IP and L4 checksums with CheckSums.
func ValidChecksums() Checker {
	return func(tb testing.TB, _ Summary, ip []byte) { tb.Helper(); CheckSums(tb, ip) }
}
