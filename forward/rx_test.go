package forward_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// stdEnv has one service per situation the table tests need.
func stdEnv(t testing.TB, o envOpts) *env {
	noNeigh := lvs.NewDest(rip4, 8080, lvs.NAT, 1) // MAC not resolved yet
	return newEnv(t, o,
		svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 8080, lvs.NAT)},
		svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: rs(rip4, 5353, lvs.NAT)},
		svcSpec{vip: vip6, port: 443, proto: lvs.TCP, dest: rs(rip6, 8443, lvs.NAT)},
		svcSpec{vip: vip4, port: 90, proto: lvs.TCP},                              // no usable destination
		svcSpec{vip: vip4, port: 91, proto: lvs.TCP, dest: noNeigh},               // neighbour unknown
		svcSpec{vip: vip4, port: 92, proto: lvs.TCP, dest: rs(rip6, 80, lvs.NAT)}, // NAT across families
	)
}

// edit returns a copy of b changed by fn.
func edit(b []byte, fn func(b []byte)) []byte {
	b = append([]byte(nil), b...)
	fn(b)
	return b
}

// fixIPv4 recomputes the IPv4 header checksum of the header at b.
func fixIPv4(b []byte) {
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], ^fold(onesSum(b[:int(b[0]&0xf)*4], 0)))
}

func TestVerdicts(t *testing.T) {
	tcp4 := func(f uint8) pkt { return pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: f} }
	synFrame := func(t testing.TB) []byte { return tcp4(syn).build(t) }
	const (
		l3 = 14
		l4 = 14 + 20
	)
	tests := []struct {
		name   string
		link   forward.Framing
		max    int
		setup  func(t testing.TB, e *env) // packets sent first
		frame  func(t testing.TB) []byte
		vnet   func(frame []byte) forward.VNetHdr
		want   forward.Verdict
		reason forward.DropReason
	}{
		// To the netstack.
		{name: "arp broadcast", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return serialize(t, &layers.Ethernet{DstMAC: hw(bcastMAC), SrcMAC: hw(cliMAC), EthernetType: layers.EthernetTypeARP},
				&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
					Operation: layers.ARPRequest, SourceHwAddress: hw(cliMAC), SourceProtAddress: cli4.AsSlice(),
					DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: vip4.AsSlice()})
		}},
		{name: "vlan tagged", want: forward.ToStack, frame: func(t testing.TB) []byte {
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cli4.AsSlice(), DstIP: vip4.AsSlice()}
			tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true}
			tcp.SetNetworkLayerForChecksum(ip)
			return serialize(t, &layers.Ethernet{DstMAC: hw(dirMAC), SrcMAC: hw(cliMAC), EthernetType: layers.EthernetTypeDot1Q},
				&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv4}, ip, tcp)
		}},
		{name: "icmp echo to vip", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return serialize(t, &layers.Ethernet{DstMAC: hw(dirMAC), SrcMAC: hw(cliMAC), EthernetType: layers.EthernetTypeIPv4},
				&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: cli4.AsSlice(), DstIP: vip4.AsSlice()},
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)}, gopacket.Payload("ping"))
		}},
		{name: "ipv6 multicast neighbour solicitation", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return serialize(t, &layers.Ethernet{DstMAC: net.HardwareAddr{0x33, 0x33, 0xff, 0, 1, 0}, SrcMAC: hw(cliMAC), EthernetType: layers.EthernetTypeIPv6},
				&layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: cli6.AsSlice(), DstIP: net.ParseIP("ff02::1:ff00:100")},
				gopacket.Payload(make([]byte, 24)))
		}},
		{name: "ipv6 hop-by-hop header, then a bad tcp header", reason: forward.DropBadL4Header, frame: func(t testing.TB) []byte {
			return serialize(t, &layers.Ethernet{DstMAC: hw(dirMAC), SrcMAC: hw(cliMAC), EthernetType: layers.EthernetTypeIPv6},
				&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6HopByHop, SrcIP: cli6.AsSlice(), DstIP: vip6.AsSlice()},
				gopacket.Payload(append([]byte{6, 0, 1, 4, 0, 0, 0, 0}, make([]byte, 20)...)))
		}},
		{name: "tcp to the director", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli4, 40000), dst: ap(dip4, 80), flags: syn}.build(t)
		}},
		{name: "tcp to a vip port without service", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli4, 40000), dst: ap(vip4, 8080), flags: syn}.build(t)
		}},
		{name: "udp to a tcp service port", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), proto: lvs.UDP}.build(t)
		}},
		{name: "later fragment to another host", want: forward.Held, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli4, 40000), dst: ap(dip4, 53), proto: lvs.UDP, fragOff: 100}.build(t)
		}},
		{name: "broadcast frame to a vip", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return pkt{dstMAC: bcastMAC, src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t)
		}},
		{name: "multicast frame to a vip", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return pkt{dstMAC: lvs.MAC{0x01, 0x00, 0x5e, 0, 0, 1}, src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP}.build(t)
		}},
		{name: "broadcast ip to no service", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return pkt{dstMAC: bcastMAC, src: ap(cli4, 68), dst: ap(dip4, 67), proto: lvs.UDP}.build(t)
		}},

		// Without a connection, a TCP segment other than a SYN is the
		// netstack's, which answers RST (IPVS's tcp_conn_schedule).
		{name: "ack without connection", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return tcp4(ack).build(t)
		}},
		{name: "fin without connection", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return tcp4(fin | ack).build(t)
		}},
		{name: "rst without connection", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return tcp4(rst).build(t)
		}},
		{name: "syn-rst without connection", want: forward.ToStack, frame: func(t testing.TB) []byte {
			return tcp4(syn | rst).build(t)
		}},

		// Forwarded.
		{name: "syn-ack opens a connection (as ipvs)", want: forward.Transmit, frame: func(t testing.TB) []byte {
			return tcp4(syn | ack).build(t)
		}},
		{name: "first fragment", want: forward.Held, frame: func(t testing.TB) []byte {
			return edit(pkt{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP, mf: true, payload: "12345678"}.build(t),
				func(b []byte) { binary.BigEndian.PutUint16(b[l4+4:], 3000) }) // UDP length of the whole datagram
		}},

		// Dropped.
		{name: "unicast to another host", reason: forward.DropOtherHost, frame: func(t testing.TB) []byte {
			return pkt{dstMAC: otherMAC, src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t)
		}},
		{name: "later fragment to a vip", want: forward.Held, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP, fragOff: 100}.build(t)
		}},
		{name: "no destination", reason: forward.DropNoDest, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli4, 40000), dst: ap(vip4, 90), flags: syn}.build(t)
		}},
		{name: "no neighbour", reason: forward.DropNoNeighbor, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli4, 40000), dst: ap(vip4, 91), flags: syn}.build(t)
		}},
		{name: "nat across families", reason: forward.DropUnsupported, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli4, 40000), dst: ap(vip4, 92), flags: syn}.build(t)
		}},
		{name: "table full", max: 1, reason: forward.DropTableFull,
			setup: func(t testing.TB, e *env) {
				// Established: a half-open connection would be evicted.
				e.process(pkt{src: ap(cli4, 39999), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{})
				e.process(pkt{src: ap(cli4, 39999), dst: ap(vip4, 80), flags: ack}.build(t), forward.VNetHdr{})
			},
			frame: synFrame},
		{name: "reply ttl exceeded", reason: forward.DropTTLExceeded,
			setup: func(t testing.TB, e *env) { e.process(synFrame(t), forward.VNetHdr{}) },
			frame: func(t testing.TB) []byte {
				return pkt{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: syn | ack, ttl: 1}.build(t)
			}},
		{name: "ethernet truncated", reason: forward.DropTruncated, frame: func(t testing.TB) []byte {
			return synFrame(t)[:13]
		}},
		{name: "ipv4 truncated", reason: forward.DropTruncated, frame: func(t testing.TB) []byte {
			return synFrame(t)[:l3+19]
		}},
		{name: "ipv4 total length beyond frame", reason: forward.DropTruncated, frame: func(t testing.TB) []byte {
			return edit(synFrame(t), func(b []byte) { binary.BigEndian.PutUint16(b[l3+2:], 1000); fixIPv4(b[l3:]) })
		}},
		{name: "ipv4 version 6 in ipv4 ethertype", reason: forward.DropBadIPHeader, frame: func(t testing.TB) []byte {
			return edit(synFrame(t), func(b []byte) { b[l3] = 0x65 })
		}},
		{name: "ipv4 ihl 4", reason: forward.DropBadIPHeader, frame: func(t testing.TB) []byte {
			return edit(synFrame(t), func(b []byte) { b[l3] = 0x44 })
		}},
		{name: "ipv4 total length below ihl", reason: forward.DropBadIPHeader, frame: func(t testing.TB) []byte {
			return edit(synFrame(t), func(b []byte) { binary.BigEndian.PutUint16(b[l3+2:], 12); fixIPv4(b[l3:]) })
		}},
		{name: "ipv4 bad checksum", reason: forward.DropBadIPChecksum, frame: func(t testing.TB) []byte {
			return edit(synFrame(t), func(b []byte) { b[l3+10] ^= 0x5a })
		}},
		{name: "tcp truncated", reason: forward.DropTruncated, frame: func(t testing.TB) []byte {
			return edit(synFrame(t), func(b []byte) { binary.BigEndian.PutUint16(b[l3+2:], 20+19); fixIPv4(b[l3:]) })
		}},
		{name: "tcp data offset below 5", reason: forward.DropBadL4Header, frame: func(t testing.TB) []byte {
			return edit(synFrame(t), func(b []byte) { b[l4+12] = 4 << 4 })
		}},
		{name: "tcp data offset beyond segment", reason: forward.DropBadL4Header, frame: func(t testing.TB) []byte {
			return edit(synFrame(t), func(b []byte) { b[l4+12] = 6 << 4 })
		}},
		{name: "udp truncated", reason: forward.DropTruncated, frame: func(t testing.TB) []byte {
			return edit(pkt{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP}.build(t),
				func(b []byte) { binary.BigEndian.PutUint16(b[l3+2:], 20+7); fixIPv4(b[l3:]) })
		}},
		{name: "udp length beyond packet", reason: forward.DropBadL4Header, frame: func(t testing.TB) []byte {
			return edit(pkt{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP, payload: "abc"}.build(t),
				func(b []byte) { binary.BigEndian.PutUint16(b[l4+4:], 12) })
		}},
		{name: "udp length below 8", reason: forward.DropBadL4Header, frame: func(t testing.TB) []byte {
			return edit(pkt{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP, payload: "abc"}.build(t),
				func(b []byte) { binary.BigEndian.PutUint16(b[l4+4:], 7) })
		}},
		{name: "ipv6 truncated", reason: forward.DropTruncated, frame: func(t testing.TB) []byte {
			return pkt{src: ap(cli6, 40000), dst: ap(vip6, 443), flags: syn}.build(t)[:l3+39]
		}},
		{name: "ipv6 payload length beyond frame", reason: forward.DropTruncated, frame: func(t testing.TB) []byte {
			return edit(pkt{src: ap(cli6, 40000), dst: ap(vip6, 443), flags: syn}.build(t),
				func(b []byte) { binary.BigEndian.PutUint16(b[l3+4:], 100) })
		}},
		{name: "ipv6 version 4 in ipv6 ethertype", reason: forward.DropBadIPHeader, frame: func(t testing.TB) []byte {
			return edit(pkt{src: ap(cli6, 40000), dst: ap(vip6, 443), flags: syn}.build(t), func(b []byte) { b[l3] = 0x40 })
		}},
		{name: "ip link empty", link: forward.IP, reason: forward.DropTruncated, frame: func(t testing.TB) []byte {
			return nil
		}},
		{name: "ip link version 5", link: forward.IP, reason: forward.DropBadIPHeader, frame: func(t testing.TB) []byte {
			return edit(pkt{link: forward.IP, src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t), func(b []byte) { b[0] = 0x55 })
		}},
		{name: "partial checksum elsewhere", reason: forward.DropBadVNetHdr, frame: synFrame,
			vnet: func(b []byte) forward.VNetHdr {
				h := makePartial(forward.Ethernet, b)
				h.CsumStart += 2
				return h
			}},
		{name: "partial checksum wrong field", reason: forward.DropBadVNetHdr, frame: synFrame,
			vnet: func(b []byte) forward.VNetHdr {
				h := makePartial(forward.Ethernet, b)
				h.CsumOffset = 6
				return h
			}},
		{name: "gso tcp on udp", reason: forward.DropBadVNetHdr,
			frame: func(t testing.TB) []byte {
				return pkt{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP}.build(t)
			},
			vnet: func(b []byte) forward.VNetHdr {
				h := makePartial(forward.Ethernet, b)
				h.GSOType, h.GSOSize = forward.VirtioNetHdrGSOTCPv4, 1448
				return h
			}},
		{name: "gso tcpv6 on ipv4", reason: forward.DropBadVNetHdr, frame: synFrame,
			vnet: func(b []byte) forward.VNetHdr {
				h := makePartial(forward.Ethernet, b)
				h.GSOType, h.GSOSize = forward.VirtioNetHdrGSOTCPv6, 1448
				return h
			}},
		{name: "gso without partial checksum", reason: forward.DropBadVNetHdr, frame: synFrame,
			vnet: func([]byte) forward.VNetHdr {
				return forward.VNetHdr{GSOType: forward.VirtioNetHdrGSOTCPv4, GSOSize: 1448}
			}},
		{name: "gso ecn bit alone", reason: forward.DropBadVNetHdr, frame: synFrame,
			vnet: func([]byte) forward.VNetHdr { return forward.VNetHdr{GSOType: forward.VirtioNetHdrGSOECN} }},
		{name: "gso unknown type", reason: forward.DropBadVNetHdr, frame: synFrame,
			vnet: func(b []byte) forward.VNetHdr {
				h := makePartial(forward.Ethernet, b)
				h.GSOType, h.GSOSize = 2, 1448
				return h
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := stdEnv(t, envOpts{link: tc.link, max: tc.max})
			if tc.setup != nil {
				tc.setup(t, e)
			}
			frame := tc.frame(t)
			var vnet forward.VNetHdr
			if tc.vnet != nil {
				vnet = tc.vnet(frame)
			}
			before := e.f.Counters()
			v, p := e.process(frame, vnet)
			if v != tc.want {
				t.Fatalf("verdict %v (drop reason %v), want %v", v, e.dropReason(before), tc.want)
			}
			after := e.f.Counters()
			switch v {
			case forward.Drop:
				if r := e.dropReason(before); r != tc.reason {
					t.Errorf("drop reason %v, want %v", r, tc.reason)
				}
			case forward.ToStack:
				if after.ToStack != before.ToStack+1 {
					t.Errorf("to-stack counter %d -> %d", before.ToStack, after.ToStack)
				}
				if !bytes.Equal(p.Frame(), frame) || p.VNet != vnet {
					t.Errorf("frame for the stack was modified")
				}
			case forward.Transmit:
				if after.ForwardedIn != before.ForwardedIn+1 {
					t.Errorf("forwarded-in counter %d -> %d", before.ForwardedIn, after.ForwardedIn)
				}
			}
			if v != forward.Transmit && p.Len != len(frame) {
				t.Errorf("Len changed to %d", p.Len)
			}
		})
	}
}

func TestPacketBounds(t *testing.T) {
	e := stdEnv(t, envOpts{})
	for _, p := range []forward.Packet{
		{Buf: make([]byte, 10), Off: 5, Len: 6},
		{Buf: make([]byte, 10), Off: -1, Len: 2},
		{Buf: make([]byte, 10), Off: 11, Len: 0},
		{Buf: make([]byte, 10), Off: 2, Len: -1},
		{Buf: make([]byte, 10), Off: 1 << 62, Len: 1 << 62},
	} {
		if v := e.w.Process(&p); v != forward.Drop {
			t.Errorf("Off %d Len %d over %d bytes: %v, want drop", p.Off, p.Len, len(p.Buf), v)
		}
	}
	if c := e.f.Counters(); c.Drops[forward.DropTruncated] != 5 {
		t.Errorf("truncated drops %d, want 5", c.Drops[forward.DropTruncated])
	}
}

func TestDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := forward.DropNone; r < forward.NumDropReasons; r++ {
		n := r.String()
		if n == "" || n == "unknown" || seen[n] {
			t.Errorf("reason %d has name %q", r, n)
		}
		seen[n] = true
	}
}

func TestDropLogRateLimited(t *testing.T) {
	var logs bytes.Buffer
	clk := &fakeClock{}
	tab := conntrack.New(conntrack.Options{Clock: clk.now})
	f := forward.New(forward.Options{MAC: dirMAC, Table: tab, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	k := lvs.ServiceKey{Addr: lvs.AddrFromNetip(vip4), Port: 80, Proto: lvs.TCP}
	f.SetConfig(&forward.Config{Services: map[lvs.ServiceKey]*forward.Service{k: {Key: k, Sched: fakeSched{}}}})
	w := f.NewWorker()
	frame := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t)
	send := func() {
		buf := append([]byte(nil), frame...)
		if v := w.Process(&forward.Packet{Buf: buf, Len: len(buf)}); v != forward.Drop {
			t.Fatalf("verdict %v", v)
		}
	}
	for range 10 {
		send()
	}
	clk.advance(time.Second)
	send()
	if n := strings.Count(logs.String(), "reason=no-dest"); n != 2 {
		t.Errorf("%d reports, want 2 (one per second):\n%s", n, logs.String())
	}
	if c := f.Counters(); c.Drops[forward.DropNoDest] != 11 {
		t.Errorf("no-dest drops %d, want 11", c.Drops[forward.DropNoDest])
	}
}
