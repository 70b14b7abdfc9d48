package forward

import "encoding/binary"

// IPv6 next-header values the fast path walks over or stops at.
const (
	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6AH       = 51
	ip6NoNext   = 59
	ip6DestOpts = 60
)

// ipv6Headers is what walkIPv6 learns about an IPv6 packet's header chain.
// Offsets are from the start of the IPv6 header.
type ipv6Headers struct {
	proto uint8 // the first header that is not an extension header
	l4    int   // its offset
	// fh is the offset of the fragment header of a fragment (a fragment
	// header with an offset or the M flag set), 0 when the packet is not
	// a fragment; nh is then the offset of the next-header byte that names
	// the fragment header (6, in the fixed header, or in the extension
	// header before it).
	fh, nh int
}

// walkIPv6 walks the extension headers of the IPv6 packet pkt (its fixed
// header first, pkt ending where its payload ends) as the kernel's
// ipv6_find_hdr does for IPVS (ip_vs_fill_iph_skb_off, which passes no
// flags): hop-by-hop options, routing, destination options and
// authentication (AH) headers are skipped wherever they appear; an atomic
// fragment header (offset 0, M clear: RFC 6946) is skipped too; the walk
// stops at the first other header (TCP, UDP, ICMPv6, ESP, no next header,
// ...), whose value and offset it returns. A fragment header with an
// offset or the M flag set stops the walk: the packet is a fragment (h.fh
// set), reassembled before anything looks further, as nf_defrag_ipv6 does
// before IPVS. It reports false when a header runs past the packet. It
// does not allocate; each header is at least 8 bytes long, so the walk ends.
func walkIPv6(pkt []byte, h *ipv6Headers) bool {
	next := pkt[6]
	off, nh := 40, 6
	for {
		var n int
		switch next {
		case ip6HopByHop, ip6Routing, ip6DestOpts:
			if off+2 > len(pkt) {
				return false
			}
			n = (int(pkt[off+1]) + 1) * 8
		case ip6AH:
			if off+2 > len(pkt) {
				return false
			}
			n = (int(pkt[off+1]) + 2) * 4
		case ip6Fragment:
			if off+8 > len(pkt) {
				return false
			}
			if binary.BigEndian.Uint16(pkt[off+2:off+4])&0xfff9 != 0 {
				// An offset or M: a fragment (the two reserved bits
				// are ignored, as the kernel ignores them).
				*h = ipv6Headers{proto: pkt[off], l4: off + 8, fh: off, nh: nh}
				return true
			}
			n = 8
		default:
			*h = ipv6Headers{proto: next, l4: off}
			return true
		}
		if off+n > len(pkt) {
			return false
		}
		next, nh = pkt[off], off
		off += n
	}
}
