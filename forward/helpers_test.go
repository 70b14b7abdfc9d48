package forward_test

import (
	"cmp"
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// Addresses: documentation ranges only (192.0.2.0/24, 2001:db8::/32).
var (
	dirMAC   = lvs.MAC{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01} // the director (lvsd's TAP)
	cliMAC   = lvs.MAC{0x02, 0x00, 0x5e, 0x00, 0x00, 0x0c} // the client or its router
	rsMAC    = lvs.MAC{0x02, 0x00, 0x5e, 0x00, 0x00, 0x21} // real servers
	otherMAC = lvs.MAC{0x02, 0x00, 0x5e, 0x00, 0x00, 0x99} // another host on the bridge
	bcastMAC = lvs.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	cli4 = netip.MustParseAddr("192.0.2.10")
	vip4 = netip.MustParseAddr("192.0.2.100")
	rip4 = netip.MustParseAddr("192.0.2.21")
	dip4 = netip.MustParseAddr("192.0.2.1")
	cli6 = netip.MustParseAddr("2001:db8::10")
	vip6 = netip.MustParseAddr("2001:db8::100")
	rip6 = netip.MustParseAddr("2001:db8:1::21")
)

// TCP flags.
const (
	fin = conntrack.FlagFIN
	syn = conntrack.FlagSYN
	rst = conntrack.FlagRST
	ack = conntrack.FlagACK
)

// fakeSched always picks one destination (nil: none usable).
type fakeSched struct{ d *lvs.Dest }

func (s fakeSched) Schedule(*lvs.Tuple) *lvs.Dest { return s.d }

// fakeClock is the connection table's clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// rs returns a real server whose MAC is known.
func rs(addr netip.Addr, port uint16, m lvs.Method) *lvs.Dest {
	d := lvs.NewDest(addr, port, m, 1)
	d.Neigh = new(lvs.Neighbor)
	d.Neigh.Store(rsMAC)
	return d
}

// svcSpec describes one virtual service with one destination.
type svcSpec struct {
	vip    netip.Addr
	port   uint16
	proto  lvs.Proto
	dest   *lvs.Dest // nil: the scheduler finds none
	tunSrc netip.Addr
}

type env struct {
	tb   testing.TB
	clk  *fakeClock
	tab  *conntrack.Table
	f    *forward.Forwarder
	w    *forward.Worker
	cfg  *forward.Config
	link forward.Framing
}

type envOpts struct {
	link forward.Framing
	max  int
	mtu  int
}

func newEnv(tb testing.TB, o envOpts, specs ...svcSpec) *env {
	tb.Helper()
	clk := &fakeClock{}
	clk.ns.Store(int64(time.Hour))
	tab := conntrack.New(conntrack.Options{Max: o.max, Clock: clk.now})
	f := forward.New(forward.Options{Link: o.link, MAC: dirMAC, Table: tab, MTU: o.mtu})
	cfg := &forward.Config{Services: map[lvs.ServiceKey]*forward.Service{}}
	for _, s := range specs {
		k := lvs.ServiceKey{Addr: lvs.AddrFromNetip(s.vip), Port: s.port, Proto: s.proto}
		svc := &forward.Service{Key: k, Sched: fakeSched{s.dest}}
		if s.dest != nil {
			svc.Dests = []*lvs.Dest{s.dest}
		}
		if src := s.tunSrc; src.IsValid() {
			cfg.Source = func(netip.Addr) netip.Addr { return src }
		}
		cfg.Services[k] = svc
	}
	f.SetConfig(cfg)
	return &env{tb: tb, clk: clk, tab: tab, f: f, w: f.NewWorker(), cfg: cfg, link: o.link}
}

func (e *env) svc(vip netip.Addr, port uint16, proto lvs.Proto) *forward.Service {
	return e.cfg.Services[lvs.ServiceKey{Addr: lvs.AddrFromNetip(vip), Port: port, Proto: proto}]
}

const headroom = 64

// process runs a copy of frame, with headroom in front, through the worker.
func (e *env) process(frame []byte, vnet forward.VNetHdr) (forward.Verdict, *forward.Packet) {
	buf := make([]byte, headroom+len(frame)+16)
	copy(buf[headroom:], frame)
	p := &forward.Packet{Buf: buf, Off: headroom, Len: len(frame), VNet: vnet}
	return e.w.Process(p), p
}

// dropReason returns the only drop counter that grew since before.
func (e *env) dropReason(before forward.Counters) forward.DropReason {
	after := e.f.Counters()
	r := forward.DropNone
	for i := range after.Drops {
		if after.Drops[i] != before.Drops[i] {
			if r != forward.DropNone {
				e.tb.Errorf("several drop counters changed: %v and %v", r, forward.DropReason(i))
			}
			r = forward.DropReason(i)
		}
	}
	return r
}

// pkt describes a frame to build.
type pkt struct {
	link           forward.Framing
	dstMAC, srcMAC lvs.MAC // default dirMAC, cliMAC
	src, dst       netip.AddrPort
	proto          lvs.Proto // default TCP
	flags          uint8     // TCP flags
	seq            uint32    // TCP sequence number; 0 means 1000
	ttl            uint8     // default 64
	tos            uint8
	df             bool
	fragOff        uint16 // IPv4 fragment offset, 8-byte units
	mf             bool
	ipOptions      bool // IPv4: a 4-byte router-alert option (IHL 6)
	payload        string
	zeroUDPCsum    bool
	pad            int // trailer bytes after the IP packet (beyond gopacket's padding)
}

func hw(m lvs.MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func (p pkt) build(tb testing.TB) []byte {
	tb.Helper()
	if p.dstMAC == (lvs.MAC{}) {
		p.dstMAC = dirMAC
	}
	if p.srcMAC == (lvs.MAC{}) {
		p.srcMAC = cliMAC
	}
	if p.proto == 0 {
		p.proto = lvs.TCP
	}
	if p.ttl == 0 {
		p.ttl = 64
	}
	v6 := p.dst.Addr().Is6()
	var ls []gopacket.SerializableLayer
	if p.link == forward.Ethernet {
		et := layers.EthernetTypeIPv4
		if v6 {
			et = layers.EthernetTypeIPv6
		}
		ls = append(ls, &layers.Ethernet{DstMAC: hw(p.dstMAC), SrcMAC: hw(p.srcMAC), EthernetType: et})
	}
	var nl gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: p.tos, HopLimit: p.ttl, NextHeader: layers.IPProtocol(p.proto),
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice()}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, TOS: p.tos, TTL: p.ttl, Id: 0x1234, Protocol: layers.IPProtocol(p.proto),
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice(), FragOffset: p.fragOff}
		if p.df {
			ip.Flags |= layers.IPv4DontFragment
		}
		if p.mf {
			ip.Flags |= layers.IPv4MoreFragments
		}
		if p.ipOptions {
			ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		}
		nl = ip
		ls = append(ls, ip)
	}
	switch p.proto {
	case lvs.TCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()),
			Seq: cmp.Or(p.seq, 1000), Window: 65535,
			FIN: p.flags&fin != 0, SYN: p.flags&syn != 0, RST: p.flags&rst != 0, ACK: p.flags&ack != 0}
		if tcp.ACK {
			tcp.Ack = 2000
		}
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	case lvs.UDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
		udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp)
	}
	ls = append(ls, gopacket.Payload(p.payload))
	b := serialize(tb, ls...)
	if p.zeroUDPCsum {
		ip := ipOf(p.link, b)
		l4 := l4Of(ip)
		l4[6], l4[7] = 0, 0
	}
	return append(b, make([]byte, p.pad)...)
}

// ipOf returns the IP packet of a frame, Ethernet padding excluded.
func ipOf(link forward.Framing, frame []byte) []byte {
	ip := frame
	if link == forward.Ethernet {
		ip = frame[14:]
	}
	if ip[0]>>4 == 4 {
		return ip[:binary.BigEndian.Uint16(ip[2:4])]
	}
	return ip[:40+int(binary.BigEndian.Uint16(ip[4:6]))]
}

// l4Of returns the transport segment of an IP packet without extension
// headers.
func l4Of(ip []byte) []byte {
	if ip[0]>>4 == 4 {
		return ip[int(ip[0]&0xf)*4:]
	}
	return ip[40:]
}

// Plain reference checksums, independent of gVisor's optimised code.

func onesSum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// pseudoSum is the ones' complement sum of the L4 pseudo-header of ip.
func pseudoSum(ip []byte) uint32 {
	l4 := l4Of(ip)
	if ip[0]>>4 == 4 {
		return onesSum(ip[12:20], uint32(ip[9])+uint32(len(l4)))
	}
	return onesSum(ip[8:40], uint32(ip[6])+uint32(len(l4)))
}

// checkSums verifies from scratch the IPv4 header checksum and the TCP/UDP
// checksum of the IP packet ip. A UDP checksum of 0 (none) is accepted over
// IPv4 only.
func checkSums(tb testing.TB, ip []byte) {
	tb.Helper()
	if ip[0]>>4 == 4 {
		if got := fold(onesSum(ip[:int(ip[0]&0xf)*4], 0)); got != 0xffff {
			tb.Errorf("IPv4 header checksum invalid (sum %#04x)", got)
		}
	}
	l4 := l4Of(ip)
	proto := ip[9]
	if ip[0]>>4 == 6 {
		proto = ip[6]
	}
	if proto == 17 && l4[6] == 0 && l4[7] == 0 {
		if ip[0]>>4 == 6 {
			tb.Errorf("IPv6 UDP checksum 0")
		}
		return
	}
	if got := fold(onesSum(l4, pseudoSum(ip))); got != 0xffff {
		tb.Errorf("L4 (protocol %d) checksum invalid (sum %#04x)", proto, got)
	}
}

// csumOffset is the offset of the checksum field in the L4 header.
func csumOffset(ip []byte) int {
	proto := ip[9]
	if ip[0]>>4 == 6 {
		proto = ip[6]
	}
	if proto == 17 {
		return 6
	}
	return 16
}

// l3Off is the offset of the IP header in a frame.
func l3Off(link forward.Framing) int {
	if link == forward.Ethernet {
		return 14
	}
	return 0
}

// makePartial turns the L4 checksum of frame into the partial checksum a
// kernel hands over with VIRTIO_NET_HDR_F_NEEDS_CSUM (the pseudo-header sum,
// not complemented) and returns the matching virtio header.
func makePartial(link forward.Framing, frame []byte) forward.VNetHdr {
	ip := ipOf(link, frame)
	l4 := l4Of(ip)
	binary.BigEndian.PutUint16(l4[csumOffset(ip):], fold(pseudoSum(ip)))
	return forward.VNetHdr{
		Flags:      forward.VirtioNetHdrFNeedsCsum,
		CsumStart:  uint16(l3Off(link) + len(ip) - len(l4)),
		CsumOffset: uint16(csumOffset(ip)),
	}
}

// completePartial does what the kernel does with a CHECKSUM_PARTIAL frame
// (skb_checksum_help): sum from CsumStart to the end of the IP packet and
// store the complement at CsumStart+CsumOffset (0 becomes 0xffff for UDP).
func completePartial(link forward.Framing, frame []byte, h forward.VNetHdr) {
	ip := ipOf(link, frame)
	seg := frame[h.CsumStart : l3Off(link)+len(ip)]
	c := ^fold(onesSum(seg, 0))
	if c == 0 && csumOffset(ip) == 6 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[h.CsumStart+h.CsumOffset:], c)
}

// summary is what the tests compare of a forwarded TCP/UDP frame.
type summary struct {
	DstMAC, SrcMAC string // empty on IP links
	Src, Dst       string // address:port
	Proto          lvs.Proto
	TTL            uint8
	TOS            uint8
	Flags          string // TCP flags
	Payload        string
}

func summarize(tb testing.TB, link forward.Framing, frame []byte) summary {
	tb.Helper()
	first := layers.LayerTypeEthernet
	if link == forward.IP {
		first = layers.LayerTypeIPv4
		if frame[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
	}
	pk := gopacket.NewPacket(frame, first, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil && pk.TransportLayer() == nil {
		// (Errors past the transport layer, such as a payload to port 53
		// that is no DNS message, do not matter here.)
		tb.Fatalf("decode: %v", el.Error())
	}
	var s summary
	if eth, ok := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); ok {
		s.DstMAC, s.SrcMAC = eth.DstMAC.String(), eth.SrcMAC.String()
	}
	var src, dst netip.Addr
	switch ip := pk.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		s.TTL, s.TOS = ip.TTL, ip.TOS
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		s.TTL, s.TOS = ip.HopLimit, ip.TrafficClass
	default:
		tb.Fatalf("no IP layer in %v", pk)
	}
	switch l4 := pk.TransportLayer().(type) {
	case *layers.TCP:
		s.Proto = lvs.TCP
		s.Src = netip.AddrPortFrom(src, uint16(l4.SrcPort)).String()
		s.Dst = netip.AddrPortFrom(dst, uint16(l4.DstPort)).String()
		for _, f := range []struct {
			on   bool
			name string
		}{{l4.SYN, "S"}, {l4.ACK, "A"}, {l4.FIN, "F"}, {l4.RST, "R"}} {
			if f.on {
				s.Flags += f.name
			}
		}
		s.Payload = string(l4.Payload)
	case *layers.UDP:
		s.Proto = lvs.UDP
		s.Src = netip.AddrPortFrom(src, uint16(l4.SrcPort)).String()
		s.Dst = netip.AddrPortFrom(dst, uint16(l4.DstPort)).String()
		s.Payload = string(l4.Payload)
	default:
		tb.Fatalf("no transport layer in %v", pk)
	}
	return s
}

func macStr(m lvs.MAC) string { return net.HardwareAddr(m[:]).String() }

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// ttlDecremented returns a copy of frame (of a link of framing link) with
// its TTL or hop limit one lower and, for IPv4, the header checksum
// computed from scratch: the plain reference of the fast path's
// incremental update.
func ttlDecremented(tb testing.TB, link forward.Framing, frame []byte) []byte {
	tb.Helper()
	out := append([]byte(nil), frame...)
	ip := ipOf(link, out)
	if ip[0]>>4 == 6 {
		ip[7]--
		return out
	}
	ip[8]--
	ip[10], ip[11] = 0, 0
	hl := int(ip[0]&0xf) * 4
	binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip[:hl], 0))
	return out
}
