package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// PacketDesc is a packet described on the command line of `lvsd trace
// -packet`, for a trace that builds it and explains it without forwarding
// it (PacketTracer).
type PacketDesc struct {
	// Proto is "tcp" or "udp".
	Proto string
	// Src and Dst are the addresses and ports, of one family.
	Src, Dst netip.AddrPort
	// Flags are the TCP flags, as the TCP header's bits (FIN 0x01, SYN
	// 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20); 0 for UDP.
	Flags uint8
	// Iface is the interface the packet arrives on; "" lets lvsd choose
	// (the interface of the service it is addressed to, else the first).
	Iface string
}

// PacketError is a packet description that does not parse: it names the
// word at fault and its position (1 for the first word).
type PacketError struct {
	Token string
	Pos   int
	Msg   string
}

func (e *PacketError) Error() string {
	switch {
	case e.Pos == 0 && e.Token == "":
		return "packet: " + e.Msg
	case e.Pos == 0:
		return fmt.Sprintf("packet: %q: %s", e.Token, e.Msg)
	}
	if e.Token == "" {
		return fmt.Sprintf("packet: word %d: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("packet: %q (word %d): %s", e.Token, e.Pos, e.Msg)
}

// tcpFlagLetters are the letters of ParsePacket's flags, tcpdump's: "."
// and "A" are both ACK.
var tcpFlagLetters = map[rune]uint8{
	'F': 0x01, 'S': 0x02, 'R': 0x04, 'P': 0x08, '.': 0x10, 'A': 0x10, 'U': 0x20,
}

// ParsePacket reads a packet description: words separated by spaces,
//
//	tcp|udp SRC:PORT > DST:PORT [flags FLAGS] [iface NAME]
//
// where an IPv6 address is written in brackets ([2001:2::10]:40000), and
// FLAGS are TCP flag letters as tcpdump prints them: S (SYN), F (FIN), R
// (RST), P (PSH), . or A (ACK), U (URG), optionally in brackets ("[S.]"),
// or "none". A TCP packet without flags is a SYN (a new connection); UDP
// takes no flags.
func ParsePacket(s string) (PacketDesc, error) {
	words := strings.Fields(s)
	var p PacketDesc
	bad := func(i int, msg string) (PacketDesc, error) {
		tok := ""
		if i < len(words) {
			tok = words[i]
		}
		return PacketDesc{}, &PacketError{Token: tok, Pos: i + 1, Msg: msg}
	}
	if len(words) < 4 {
		return bad(len(words), "want: tcp|udp SRC:PORT > DST:PORT [flags FLAGS] [iface NAME]")
	}
	switch words[0] {
	case "tcp", "udp":
		p.Proto = words[0]
	default:
		return bad(0, "the protocol must be tcp or udp")
	}
	for i, dst := range []*netip.AddrPort{&p.Src, &p.Dst} {
		w := 1 + 2*i
		a, err := netip.ParseAddrPort(words[w])
		if err != nil || a.Addr().Zone() != "" {
			return bad(w, "not ADDR:PORT (an IPv6 address in brackets: [2001:2::10]:80)")
		}
		*dst = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	if words[2] != ">" {
		return bad(2, `want ">" between the source and the destination`)
	}
	if p.Src.Addr().Is4() != p.Dst.Addr().Is4() {
		return bad(3, "the source and the destination must be of one address family")
	}
	flagsSet := false
	for i := 4; i < len(words); i++ {
		w := words[i]
		if i+1 == len(words) {
			return bad(i, "needs a value after it")
		}
		i++
		v := words[i]
		switch w {
		case "flags":
			if flagsSet {
				return bad(i-1, "given twice")
			}
			if p.Proto != "tcp" {
				return bad(i-1, "only TCP has flags")
			}
			f, ok := parseTCPFlags(v)
			if !ok {
				return bad(i, "not TCP flags: letters of S F R P . A U, or none")
			}
			p.Flags, flagsSet = f, true
		case "iface":
			if p.Iface != "" {
				return bad(i-1, "given twice")
			}
			p.Iface = v
		default:
			return bad(i-1, "not flags or iface")
		}
	}
	if p.Proto == "tcp" && !flagsSet {
		p.Flags = 0x02
	}
	return p, nil
}

func parseTCPFlags(v string) (uint8, bool) {
	if v == "none" {
		return 0, true
	}
	v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	if v == "" {
		return 0, false
	}
	var f uint8
	for _, c := range v {
		b, ok := tcpFlagLetters[c]
		if !ok {
			return 0, false
		}
		f |= b
	}
	return f, true
}

// FlagString writes TCP flags as tcpdump does (S, F, R, P, then . for
// ACK, U), "none" for none.
func FlagString(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint8
		c   byte
	}{{0x02, 'S'}, {0x01, 'F'}, {0x04, 'R'}, {0x08, 'P'}, {0x10, '.'}, {0x20, 'U'}} {
		if f&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// String writes p in ParsePacket's syntax.
func (p PacketDesc) String() string {
	s := fmt.Sprintf("%s %v > %v", p.Proto, p.Src, p.Dst)
	if p.Proto == "tcp" {
		s += " flags " + FlagString(p.Flags)
	}
	if p.Iface != "" {
		s += " iface " + p.Iface
	}
	return s
}

// tracePacket serves a trace of a described packet.
func tracePacket(w http.ResponseWriter, src Source, desc string) {
	pt, ok := src.(PacketTracer)
	if !ok {
		http.Error(w, "this lvsd cannot trace a described packet", http.StatusNotImplemented)
		return
	}
	p, err := ParsePacket(desc)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := pt.TracePacket(p)
	if err != nil {
		code := http.StatusInternalServerError
		var pe *PacketError
		if errors.As(err, &pe) {
			code = http.StatusBadRequest
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, out)
}

// TracePacket asks the lvsd at path to explain the packet desc
// (ParsePacket's syntax) and copies the explanation to out.
func TracePacket(ctx context.Context, path, desc string, out io.Writer) error {
	q := url.Values{}
	q.Set("packet", desc)
	return postTrace(ctx, path, q, out)
}
