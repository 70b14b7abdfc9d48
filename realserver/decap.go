package realserver

import (
	"encoding/binary"
	"net/netip"
)

// Reason says what happened to a received packet. Every packet is counted
// by reason.
type Reason uint8

const (
	Injected      Reason = iota // written to the TUN device
	Malformed                   // outer or inner header invalid or truncated
	NotVIP                      // inner destination is not a configured VIP
	NotDirector                 // outer source is not a configured director
	WriteFailed                 // the TUN device refused the write
	RoutedIntoTUN               // a packet the kernel sent into the TUN (discarded)
	NumReasons
)

var reasonNames = [NumReasons]string{
	Injected:      "injected",
	Malformed:     "malformed",
	NotVIP:        "not-vip",
	NotDirector:   "not-director",
	WriteFailed:   "write-failed",
	RoutedIntoTUN: "routed-into-tun",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// IP protocol numbers of the outer header.
const (
	protoIPIP = 4  // IPv4 in IPv4
	protoIPv6 = 41 // IPv6 in IPv4
)

// filter says which packets Decap accepts.
type filter struct {
	vips      []netip.Addr // unmapped
	directors []netip.Addr // unmapped; empty: any source
}

func (f *filter) isVIP(a netip.Addr) bool {
	for _, v := range f.vips {
		if v == a {
			return true
		}
	}
	return false
}

func (f *filter) fromDirector(a netip.Addr) bool {
	if len(f.directors) == 0 {
		return true
	}
	for _, d := range f.directors {
		if d == a {
			return true
		}
	}
	return false
}

// decap validates an outer IPv4 packet carrying IPv4 (protocol 4) or IPv6
// (protocol 41), as a raw IPv4 socket returns it (whole, reassembled, IP
// header first), and returns the inner packet (without trailing bytes
// beyond its own length) to write into the TUN, or the reason to drop it. It
// does not allocate.
func (f *filter) decap(b []byte) ([]byte, Reason) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return nil, Malformed
	}
	ihl := int(b[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || tot < ihl || tot > len(b) {
		return nil, Malformed
	}
	if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
		return nil, Malformed // a fragment: the kernel reassembles before raw delivery
	}
	return f.decapInner(b[ihl:tot], b[9], netip.AddrFrom4([4]byte(b[12:16])))
}

// decapInner validates the inner packet b of an outer packet of protocol
// proto (4: IPv4 inside, 41: IPv6 inside) from src, the payload of an outer
// IPv4 packet (decap) or what a raw IPv6 socket returns (the payload after
// the outer IPv6 header and its extension headers, reassembled; the source
// comes with it), and returns it (without trailing bytes beyond its own
// length) or the reason to drop it. It does not allocate.
func (f *filter) decapInner(inner []byte, proto uint8, src netip.Addr) ([]byte, Reason) {
	if !f.fromDirector(src.Unmap()) {
		return nil, NotDirector
	}
	var dst netip.Addr
	switch proto {
	case protoIPIP:
		if len(inner) < 20 || inner[0]>>4 != 4 {
			return nil, Malformed
		}
		ihl, tot := int(inner[0]&0xf)*4, int(binary.BigEndian.Uint16(inner[2:4]))
		if ihl < 20 || tot < ihl || tot > len(inner) {
			return nil, Malformed
		}
		inner = inner[:tot]
		dst = netip.AddrFrom4([4]byte(inner[16:20]))
	case protoIPv6:
		if len(inner) < 40 || inner[0]>>4 != 6 {
			return nil, Malformed
		}
		n := 40 + int(binary.BigEndian.Uint16(inner[4:6]))
		if n > len(inner) {
			return nil, Malformed
		}
		inner = inner[:n]
		dst = netip.AddrFrom16([16]byte(inner[24:40]))
	default:
		return nil, Malformed
	}
	if !f.isVIP(dst) {
		return nil, NotVIP
	}
	return inner, Injected
}
