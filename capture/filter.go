package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Filter selects frames. The zero Filter matches every frame.
type Filter struct {
	// Proto is the IP protocol to match (6 TCP, 17 UDP, 1 ICMP, 58
	// ICMPv6); 0 matches any.
	Proto uint8
	// Hosts must each be the source or destination address.
	Hosts []netip.Addr
	// Ports must each be the source or destination port (TCP or UDP).
	Ports []uint16
	// text is the filter as parsed, for the file's interface description.
	text string
}

// String returns the filter as it was written.
func (f *Filter) String() string { return f.text }

var protoWords = map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}

// FilterError is a filter that does not parse: it names the word at fault
// and its position (1 for the first word).
type FilterError struct {
	Token string
	Pos   int
	Msg   string
}

func (e *FilterError) Error() string {
	if e.Token == "" {
		return fmt.Sprintf("filter: word %d: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("filter: %q (word %d): %s", e.Token, e.Pos, e.Msg)
}

// ParseFilter reads a filter: words separated by spaces, every one of
// which must match (an optional "and" between them reads better):
//
//	tcp | udp | icmp | icmp6      the IP protocol
//	host ADDR                     source or destination address
//	port N                        source or destination port
//
// For example "tcp and host 198.18.1.10 and port 80". An empty filter
// matches everything.
func ParseFilter(s string) (Filter, error) {
	f := Filter{text: strings.Join(strings.Fields(s), " ")}
	words := strings.Fields(s)
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "and":
			if i == 0 || i == len(words)-1 || words[i-1] == "and" {
				return Filter{}, &FilterError{Token: w, Pos: i + 1, Msg: "\"and\" must stand between two terms"}
			}
		case protoWords[w] != 0:
			if f.Proto != 0 && f.Proto != protoWords[w] {
				return Filter{}, &FilterError{Token: w, Pos: i + 1, Msg: "a second protocol: a frame has only one"}
			}
			f.Proto = protoWords[w]
		case w == "host" || w == "port":
			if i+1 == len(words) {
				return Filter{}, &FilterError{Token: w, Pos: i + 1, Msg: "needs a value after it"}
			}
			i++
			v := words[i]
			if w == "host" {
				a, err := netip.ParseAddr(v)
				if err != nil || a.Zone() != "" {
					return Filter{}, &FilterError{Token: v, Pos: i + 1, Msg: "not an IP address"}
				}
				f.Hosts = append(f.Hosts, a.Unmap())
			} else {
				n, err := strconv.ParseUint(v, 10, 16)
				if err != nil {
					return Filter{}, &FilterError{Token: v, Pos: i + 1, Msg: "not a port (0..65535)"}
				}
				f.Ports = append(f.Ports, uint16(n))
			}
		default:
			return Filter{}, &FilterError{Token: w, Pos: i + 1, Msg: "unknown word; want tcp, udp, icmp, icmp6, host ADDR, port N or and"}
		}
	}
	if len(f.Ports) > 0 && f.Proto != 0 && f.Proto != 6 && f.Proto != 17 {
		return Filter{}, &FilterError{Pos: len(words), Msg: "port with a protocol that has no ports"}
	}
	return f, nil
}

// headers are the fields of one IP header that a filter reads.
type headers struct {
	proto    uint8
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	ports    bool
	inner    []byte // the IP packet inside IPIP (protocol 4 or 41), GRE or GUE, or nil
}

// parseIP reads the IP header at b (IPv4 or IPv6, no extension headers
// walked). It allocates nothing: netip.Addr values are plain values.
func parseIP(b []byte, h *headers) bool {
	if len(b) < 1 {
		return false
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return false
		}
		ihl := int(b[0]&0xf) * 4
		if ihl < 20 || len(b) < ihl {
			return false
		}
		h.proto = b[9]
		h.src = netip.AddrFrom4([4]byte(b[12:16]))
		h.dst = netip.AddrFrom4([4]byte(b[16:20]))
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return true // a later fragment: no L4 header
		}
		l4 = b[ihl:]
	case 6:
		if len(b) < 40 {
			return false
		}
		h.proto = b[6]
		h.src = netip.AddrFrom16([16]byte(b[8:24]))
		h.dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:]
	default:
		return false
	}
	switch h.proto {
	case 6, 17:
		if len(l4) >= 4 {
			h.sport = binary.BigEndian.Uint16(l4[0:2])
			h.dport = binary.BigEndian.Uint16(l4[2:4])
			h.ports = true
		}
		if h.proto == 17 {
			h.inner = gueInner(l4)
		}
	case 4, 41:
		h.inner = l4
	case 47:
		h.inner = greInner(l4)
	}
	return true
}

// greInner returns the IP packet inside the GRE packet b as IPVS's gre
// tunnels send it (version 0, no flag but the checksum's, protocol type
// IPv4 or IPv6), or nil.
func greInner(b []byte) []byte {
	if len(b) < 4 {
		return nil
	}
	hl := 4
	switch binary.BigEndian.Uint16(b[0:2]) {
	case 0:
	case 0x8000:
		hl = 8
	default:
		return nil
	}
	if t := binary.BigEndian.Uint16(b[2:4]); (t != 0x0800 && t != 0x86dd) || len(b) < hl {
		return nil
	}
	return b[hl:]
}

// gueInner returns the IP packet inside the UDP datagram b when its payload
// is a GUE data message of version 0 carrying IPv4 or IPv6 (proto/ctype 4
// or 41), as IPVS's gue tunnels send it, or nil. The GUE port is the real
// server's configuration, unknown here: a datagram that only looks like GUE
// also offers its "inner" packet to the filter, which then may match it.
func gueInner(b []byte) []byte {
	if len(b) < 8+4 {
		return nil
	}
	g := b[8:]
	hl := 4 + int(g[0]&0x1f)*4
	if g[0]>>5 != 0 || (g[1] != 4 && g[1] != 41) || len(g) < hl {
		return nil
	}
	return g[hl:]
}

// Match reports whether the frame matches: ethernet says whether it starts
// with an Ethernet header (else with an IP header). A frame that is not IP
// (ARP) matches only the empty filter. A frame in IPIP, GRE or GUE matches
// when its outer or its inner header does.
func (f *Filter) Match(frame []byte, ethernet bool) bool {
	if f.Proto == 0 && len(f.Hosts) == 0 && len(f.Ports) == 0 {
		return true
	}
	b := frame
	if ethernet {
		if len(b) < 14 {
			return false
		}
		switch binary.BigEndian.Uint16(b[12:14]) {
		case 0x0800, 0x86dd:
		default:
			return false
		}
		b = b[14:]
	}
	var h headers
	if !parseIP(b, &h) {
		return false
	}
	if f.matches(&h) {
		return true
	}
	if h.inner != nil {
		var in headers
		return parseIP(h.inner, &in) && f.matches(&in)
	}
	return false
}

func (f *Filter) matches(h *headers) bool {
	if f.Proto != 0 && h.proto != f.Proto {
		return false
	}
	for _, a := range f.Hosts {
		if h.src != a && h.dst != a {
			return false
		}
	}
	for _, p := range f.Ports {
		if !h.ports || (h.sport != p && h.dport != p) {
			return false
		}
	}
	return true
}
