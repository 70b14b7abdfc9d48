package realserver

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
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
	BadChecksum                 // a GRE checksum that does not verify
	NumReasons
)

var reasonNames = [NumReasons]string{
	Injected:      "injected",
	Malformed:     "malformed",
	NotVIP:        "not-vip",
	NotDirector:   "not-director",
	WriteFailed:   "write-failed",
	RoutedIntoTUN: "routed-into-tun",
	BadChecksum:   "bad-checksum",
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
	protoGRE  = 47 // GRE (ipvsadm --tun-type gre)
)

// The GRE and GUE headers IPVS sends (ipvs_gre_encap, ipvs_gue_encap).
const (
	greFlagCsum     = 0x8000     // GRE: checksum present
	gueFlagPriv     = 0x0001     // GUE flags: private flags word present
	guePFlagRemCsum = 0x80000000 // GUE private flags: remote checksum offload
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
	src := netip.AddrFrom4([4]byte(b[12:16]))
	if b[9] == protoGRE {
		return f.decapGRE(b[ihl:tot], src)
	}
	return f.decapInner(b[ihl:tot], b[9], src)
}

// decapGRE validates the GRE packet b (from its GRE header to the end of the
// outer packet) from src, as IPVS's gre tunnel type sends it: version 0, no
// flag but the checksum's (then the checksum over the whole GRE packet must
// verify), protocol type IPv4 or IPv6; and returns the inner packet as
// decapInner does. It does not allocate.
func (f *filter) decapGRE(b []byte, src netip.Addr) ([]byte, Reason) {
	if len(b) < 4 {
		return nil, Malformed
	}
	flags := binary.BigEndian.Uint16(b[0:2])
	hl := 4
	switch flags {
	case 0:
	case greFlagCsum:
		hl = 8
		if len(b) < hl {
			return nil, Malformed
		}
		if checksum.Checksum(b, 0) != 0xffff {
			return nil, BadChecksum
		}
	default:
		return nil, Malformed // key, sequence, routing, another version: not IPVS's
	}
	var proto uint8
	switch binary.BigEndian.Uint16(b[2:4]) {
	case 0x0800:
		proto = protoIPIP
	case 0x86dd:
		proto = protoIPv6
	default:
		return nil, Malformed
	}
	return f.decapInner(b[hl:], proto, src)
}

// decapGUE validates the UDP payload b of a GUE packet from src, as IPVS's
// gue tunnel type sends it: version 0, a data message (control bit clear),
// proto/ctype IPv4 (4) or IPv6 (41), no flag but the private flags word,
// and in it no flag but remote checksum offload, the header length being
// exactly what these take. With remote checksum offload the inner packet's
// checksum, left partial by the sender, is completed where the option
// says, as the kernel's GUE receive path does once the UDP checksum has
// been verified (a UDP socket verifies it). It returns the inner packet as
// decapInner does, and does not allocate; it may write into b.
func (f *filter) decapGUE(b []byte, src netip.Addr) ([]byte, Reason) {
	if len(b) < 4 || b[0]>>5 != 0 {
		return nil, Malformed // another version, or a control message
	}
	hl := 4 + int(b[0]&0x1f)*4
	if len(b) < hl {
		return nil, Malformed
	}
	flags := binary.BigEndian.Uint16(b[2:4])
	want := 4
	var rem bool
	switch flags {
	case 0:
	case gueFlagPriv:
		want += 4
		if len(b) < 8 {
			return nil, Malformed
		}
		switch binary.BigEndian.Uint32(b[4:8]) {
		case 0:
		case guePFlagRemCsum:
			want += 4
			rem = true
		default:
			return nil, Malformed
		}
	default:
		return nil, Malformed
	}
	if hl != want {
		return nil, Malformed
	}
	inner := b[hl:]
	if rem {
		start, field := int(binary.BigEndian.Uint16(b[8:10])), int(binary.BigEndian.Uint16(b[10:12]))
		if field < start || field+2 > len(inner) {
			return nil, Malformed
		}
		c := ^checksum.Checksum(inner[start:], 0)
		if c == 0 && field-start == 6 {
			c = 0xffff // UDP sends a zero checksum as all ones
		}
		binary.BigEndian.PutUint16(inner[field:], c)
	}
	return f.decapInner(inner, b[1], src)
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
