package forward_test

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

var (
	router4 = netip.MustParseAddr("192.0.2.254")    // a router on the real servers' side
	router6 = netip.MustParseAddr("2001:db8:1::fe") // the same over IPv6
	crouter = netip.MustParseAddr("192.0.2.253")    // a router on the clients' side
)

// icmpMsg is an ICMP error to build: type, code, the 4 bytes after the
// checksum (the MTU of fragmentation-needed / packet-too-big) and the
// quoted packet.
type icmpMsg struct {
	link            forward.Framing
	dstMAC, srcMAC  lvs.MAC
	src, dst        netip.Addr
	ttl             uint8
	typ, code       uint8
	rest            uint32
	quote           []byte
	corruptChecksum bool
}

// build serialises the message, computing the ICMP checksum with the
// tests' plain reference sum (IPv6: with its pseudo-header).
func (m icmpMsg) build(tb testing.TB) []byte {
	tb.Helper()
	v6 := m.dst.Is6()
	icmp := make([]byte, 8+len(m.quote))
	icmp[0], icmp[1] = m.typ, m.code
	binary.BigEndian.PutUint32(icmp[4:], m.rest)
	copy(icmp[8:], m.quote)
	var sum uint32
	if v6 {
		src, dst := m.src.As16(), m.dst.As16()
		sum = onesSum(append(src[:], dst[:]...), 58+uint32(len(icmp)))
	}
	c := ^fold(onesSum(icmp, sum))
	if m.corruptChecksum {
		c ^= 0x5555
	}
	binary.BigEndian.PutUint16(icmp[2:], c)
	if m.ttl == 0 {
		m.ttl = 64
	}
	var ls []gopacket.SerializableLayer
	if m.link == forward.Ethernet {
		et := layers.EthernetTypeIPv4
		if v6 {
			et = layers.EthernetTypeIPv6
		}
		ls = append(ls, &layers.Ethernet{DstMAC: hw(m.dstMAC), SrcMAC: hw(m.srcMAC), EthernetType: et})
	}
	if v6 {
		ls = append(ls, &layers.IPv6{Version: 6, HopLimit: m.ttl, NextHeader: layers.IPProtocolICMPv6, SrcIP: m.src.AsSlice(), DstIP: m.dst.AsSlice()})
	} else {
		ls = append(ls, &layers.IPv4{Version: 4, TTL: m.ttl, Id: 0x4321, Protocol: layers.IPProtocolICMPv4, SrcIP: m.src.AsSlice(), DstIP: m.dst.AsSlice()})
	}
	return serialize(tb, append(ls, gopacket.Payload(icmp))...)
}

// quoteOf returns the first n bytes of the IP packet of p (built on an IP
// link), as an ICMP error quotes it.
func quoteOf(tb testing.TB, p pkt, n int) []byte {
	p.link = forward.IP
	b := p.build(tb)
	return b[:min(n, len(b))]
}

// TestICMPErrors sends ICMP errors about connections through Process and
// compares the frames written, byte for byte, with frames built from
// scratch: the rewritten quote is the quote of the packet as the other side
// knows it (with its transport checksum computed over the whole original
// packet), and every checksum is the reference's.
func TestICMPErrors(t *testing.T) {
	payload := strings.Repeat("x", 1400)
	d4 := rs(rip4, 8080, lvs.NAT)
	d6 := rs(rip6, 8443, lvs.NAT)
	u4 := rs(rip4, 5353, lvs.NAT)
	dr := rs(rip4, 81, lvs.DR)
	newE := func(t *testing.T, link forward.Framing) *env {
		return newEnv(t, envOpts{link: link},
			svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d4},
			svcSpec{vip: vip6, port: 443, proto: lvs.TCP, dest: d6},
			svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: u4},
			svcSpec{vip: vip4, port: 81, proto: lvs.TCP, dest: dr},
		)
	}
	// The connections' first packets, from the client.
	tcp4 := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}
	tcp6 := pkt{src: ap(cli6, 40000), dst: ap(vip6, 443), flags: syn}
	udp4 := pkt{src: ap(cli4, 40001), dst: ap(vip4, 53), proto: lvs.UDP, payload: "query"}
	dr4 := pkt{src: ap(cli4, 40002), dst: ap(vip4, 81), flags: syn}

	tests := []struct {
		name  string
		link  forward.Framing
		first pkt // opens the connection
		in    icmpMsg
		want  icmpMsg // zero: want the verdict only
		v     forward.Verdict
	}{
		{
			name:  "v4 fragmentation needed from the real servers' side reaches the client",
			first: tcp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router4, dst: cli4, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(rip4, 8080), flags: ack, df: true, payload: payload}, 548)},
			want: icmpMsg{dstMAC: cliMAC, srcMAC: dirMAC, src: vip4, dst: cli4, ttl: 63, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, df: true, payload: payload}, 548)},
			v: forward.Transmit,
		},
		{
			name: "v4 fragmentation needed on an IP link", link: forward.IP,
			first: tcp4,
			in: icmpMsg{link: forward.IP, src: router4, dst: cli4, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(rip4, 8080), flags: ack, df: true, payload: payload}, 548)},
			want: icmpMsg{link: forward.IP, src: vip4, dst: cli4, ttl: 63, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, df: true, payload: payload}, 548)},
			v: forward.Transmit,
		},
		{
			name:  "v4 quote of 8 transport bytes (no checksum quoted)",
			first: tcp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router4, dst: cli4, typ: 11, code: 0,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(rip4, 8080), flags: ack, ttl: 1, payload: payload}, 28)},
			want: icmpMsg{dstMAC: cliMAC, srcMAC: dirMAC, src: vip4, dst: cli4, ttl: 63, typ: 11, code: 0,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, ttl: 1, payload: payload}, 28)},
			v: forward.Transmit,
		},
		{
			name:  "v6 packet too big from the real servers' side reaches the client",
			first: tcp6,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router6, dst: cli6, typ: 2, rest: 1280,
				quote: quoteOf(t, pkt{src: ap(cli6, 40000), dst: ap(rip6, 8443), flags: ack, payload: payload}, 1232)},
			want: icmpMsg{dstMAC: cliMAC, srcMAC: dirMAC, src: vip6, dst: cli6, ttl: 63, typ: 2, rest: 1280,
				quote: quoteOf(t, pkt{src: ap(cli6, 40000), dst: ap(vip6, 443), flags: ack, payload: payload}, 1232)},
			v: forward.Transmit,
		},
		{
			name:  "v4 port unreachable from the client about a NAT reply reaches the real server",
			first: udp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: cliMAC, src: cli4, dst: vip4, typ: 3, code: 3,
				quote: quoteOf(t, pkt{src: ap(vip4, 53), dst: ap(cli4, 40001), proto: lvs.UDP, ttl: 63, payload: "answer"}, 100)},
			want: icmpMsg{dstMAC: rsMAC, srcMAC: dirMAC, src: cli4, dst: rip4, ttl: 63, typ: 3, code: 3,
				quote: quoteOf(t, pkt{src: ap(rip4, 5353), dst: ap(cli4, 40001), proto: lvs.UDP, ttl: 63, payload: "answer"}, 100)},
			v: forward.Transmit,
		},
		{
			name:  "v4 UDP quote without checksum keeps it 0",
			first: udp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: cliMAC, src: crouter, dst: vip4, typ: 11,
				quote: quoteOf(t, pkt{src: ap(vip4, 53), dst: ap(cli4, 40001), proto: lvs.UDP, zeroUDPCsum: true, payload: "answer"}, 100)},
			want: icmpMsg{dstMAC: rsMAC, srcMAC: dirMAC, src: crouter, dst: rip4, ttl: 63, typ: 11,
				quote: quoteOf(t, pkt{src: ap(rip4, 5353), dst: ap(cli4, 40001), proto: lvs.UDP, zeroUDPCsum: true, payload: "answer"}, 100)},
			v: forward.Transmit,
		},
		{
			name:  "DR: fragmentation needed about a real server's reply goes to it unchanged but for its TTL",
			first: dr4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: cliMAC, src: crouter, dst: vip4, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(vip4, 81), dst: ap(cli4, 40002), flags: ack, df: true, payload: payload}, 548)},
			want: icmpMsg{dstMAC: rsMAC, srcMAC: dirMAC, src: crouter, dst: vip4, ttl: 63, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(vip4, 81), dst: ap(cli4, 40002), flags: ack, df: true, payload: payload}, 548)},
			v: forward.Transmit,
		},
		{
			name:  "no connection: to the netstack",
			first: tcp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router4, dst: cli4, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(cli4, 40009), dst: ap(rip4, 8080), flags: ack, payload: payload}, 548)},
			v: forward.ToStack,
		},
		{
			name:  "redirect: not forwarded",
			first: tcp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router4, dst: cli4, typ: 5,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(rip4, 8080), flags: ack, payload: payload}, 548)},
			v: forward.ToStack,
		},
		{
			name:  "bad ICMP checksum: dropped",
			first: tcp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router4, dst: cli4, typ: 3, code: 4, rest: 1400, corruptChecksum: true,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(rip4, 8080), flags: ack, payload: payload}, 548)},
			v: forward.Drop,
		},
		{
			name:  "TTL 1 toward the client: dropped",
			first: tcp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router4, dst: cli4, ttl: 1, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(rip4, 8080), flags: ack, payload: payload}, 548)},
			v: forward.Drop,
		},
		{
			name:  "quote too short for the ports: to the netstack",
			first: tcp4,
			in: icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router4, dst: cli4, typ: 3, code: 4, rest: 1400,
				quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(rip4, 8080), flags: ack, payload: payload}, 24)},
			v: forward.ToStack,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newE(t, tt.link)
			first := tt.first
			first.link = tt.link
			if v, _ := e.process(first.build(t), forward.VNetHdr{}); v != forward.Transmit {
				t.Fatalf("first packet: %v", v)
			}
			in := tt.in.build(t)
			before := e.f.Counters()
			v, p := e.process(in, forward.VNetHdr{})
			if v != tt.v {
				t.Fatalf("verdict %v (drop %v), want %v", v, e.dropReason(before), tt.v)
			}
			switch v {
			case forward.Transmit:
				if diff := cmp.Diff(tt.want.build(t), p.Frame()); diff != "" {
					t.Errorf("frame (-want +got):\n%s", diff)
				}
				if p.VNet != (forward.VNetHdr{}) {
					t.Errorf("virtio header %+v, want none", p.VNet)
				}
			case forward.ToStack:
				if diff := cmp.Diff(in, p.Frame()); diff != "" {
					t.Errorf("a frame for the netstack was changed (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestICMPErrorTunnel checks that an error about a TUN real server's reply
// reaches it encapsulated like the connection's packets.
func TestICMPErrorTunnel(t *testing.T) {
	d := rs(rip4, 80, lvs.TUN)
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d, tunSrc: dip4})
	if v, _ := e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{}); v != forward.Transmit {
		t.Fatalf("SYN: %v", v)
	}
	in := icmpMsg{dstMAC: dirMAC, srcMAC: cliMAC, src: crouter, dst: vip4, typ: 3, code: 4, rest: 1400,
		quote: quoteOf(t, pkt{src: ap(vip4, 80), dst: ap(cli4, 40000), flags: ack, df: true, payload: strings.Repeat("y", 1400)}, 548)}.build(t)
	v, p := e.process(in, forward.VNetHdr{})
	if v != forward.Transmit {
		t.Fatalf("verdict %v", v)
	}
	out := p.Frame()
	// Ethernet to the real server, an outer IPv4 header of protocol 4 from
	// the DIP, then the ICMP packet as it came but for its TTL, decremented
	// as every packet toward a real server.
	if got := lvs.MAC(out[0:6]); got != rsMAC {
		t.Errorf("destination MAC %v, want %v", got, rsMAC)
	}
	outer := out[14:34]
	if outer[9] != 4 || netip.AddrFrom4([4]byte(outer[12:16])) != dip4 || netip.AddrFrom4([4]byte(outer[16:20])) != rip4 {
		t.Errorf("outer header % x", outer)
	}
	if diff := cmp.Diff(ttlDecremented(t, forward.Ethernet, in)[14:], out[34:]); diff != "" {
		t.Errorf("inner packet (-want +got):\n%s", diff)
	}
}

func TestICMPErrorAllocs(t *testing.T) {
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 8080, lvs.NAT)})
	e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{})
	in := icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: router4, dst: cli4, typ: 3, code: 4, rest: 1400,
		quote: quoteOf(t, pkt{src: ap(cli4, 40000), dst: ap(rip4, 8080), flags: ack, payload: strings.Repeat("x", 1400)}, 548)}.build(t)
	run := runner(t, e.w, in, forward.VNetHdr{}, forward.Transmit, nil)
	if n := testing.AllocsPerRun(1000, run); n > 0 {
		t.Errorf("%v allocations per ICMP error, want 0", n)
	}
}
