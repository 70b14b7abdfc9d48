package forward_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// collector is the Emitter of the tests: it keeps a copy of every frame and
// scribbles over the scratch space in front of it, as a link writing its
// virtio-net header there does.
type collector struct {
	tb     testing.TB
	frames [][]byte
}

func (c *collector) Emit(buf []byte, off, n int) error {
	if off < forward.EmitHeadroom || off+n > len(buf) {
		c.tb.Fatalf("Emit(off %d, n %d) of a %d-byte buffer", off, n, len(buf))
	}
	for i := off - forward.EmitHeadroom; i < off; i++ {
		buf[i] = 0xee
	}
	c.frames = append(c.frames, append([]byte(nil), buf[off:off+n]...))
	return nil
}

// processAll runs a copy of frame through the worker with a collector and
// returns the verdict and every frame written: the emitted ones, then, for
// Transmit, the verdict's own.
func (e *env) processAll(frame []byte, vnet forward.VNetHdr) (forward.Verdict, [][]byte) {
	e.tb.Helper()
	buf := make([]byte, headroom+len(frame)+16)
	copy(buf[headroom:], frame)
	c := &collector{tb: e.tb}
	p := &forward.Packet{Buf: buf, Off: headroom, Len: len(frame), VNet: vnet, Emit: c}
	v := e.w.Process(p)
	if v == forward.Transmit {
		if p.VNet != (forward.VNetHdr{}) && len(c.frames) > 0 {
			e.tb.Errorf("last of several frames has virtio header %+v", p.VNet)
		}
		c.frames = append(c.frames, append([]byte(nil), p.Frame()...))
	} else if len(c.frames) > 0 {
		e.tb.Errorf("verdict %v after %d emitted frames", v, len(c.frames))
	}
	return v, c.frames
}

func put16(b []byte, v int) { binary.BigEndian.PutUint16(b, uint16(v)) }

// refIPv4 is a plain reference IPv4 header without options.
func refIPv4(src, dst netip.Addr, tos, ttl, proto uint8, id, flags uint16, payload int) []byte {
	h := make([]byte, 20)
	h[0], h[1] = 0x45, tos
	put16(h[2:], 20+payload)
	put16(h[4:], int(id))
	put16(h[6:], int(flags))
	h[8], h[9] = ttl, proto
	copy(h[12:], src.AsSlice())
	copy(h[16:], dst.AsSlice())
	put16(h[10:], int(^fold(onesSum(h, 0))))
	return h
}

// ethHdr is an Ethernet header.
func ethHdr(dst, src lvs.MAC, etype uint16) []byte {
	h := append(append(append([]byte(nil), dst[:]...), src[:]...), 0, 0)
	binary.BigEndian.PutUint16(h[12:], etype)
	return h
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// TestTUNBytes compares whole encapsulated frames with frames built by a
// plain reference: Ethernet to the real server's MAC from the director's,
// outer IPv4 from the DIP to the RIP (protocol 4 or 41, TOS and TTL of the
// inner packet, DF copied, identification 0 with DF, a counter without),
// the inner packet unchanged but for its TTL, decremented first.
func TestTUNBytes(t *testing.T) {
	tests := []struct {
		name  string
		link  forward.Framing
		p     pkt
		proto uint8
		df    bool
	}{
		{name: "tcp4 df", p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ttl: 61, tos: 0x28, df: true, payload: "hello"}, proto: 4, df: true},
		{name: "udp4", p: pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 80), ttl: 3, tos: 0x02, payload: "q", pad: 9}, proto: 4},
		{name: "tcp6", p: pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn, ttl: 200, tos: 0xb8, payload: "v6"}, proto: 41},
		{name: "tcp4 ip link", link: forward.IP, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, df: true}, proto: 4, df: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.link = tc.link
			proto := tc.p.proto
			if proto == 0 {
				proto = lvs.TCP
			}
			e := newEnv(t, envOpts{link: tc.link}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: proto, dest: rs(rip4, 80, lvs.TUN), tunSrc: dip4})
			in := tc.p.build(t)
			inner := ipOf(tc.link, ttlDecremented(t, tc.link, in))
			var prevID uint16
			for i := range 2 { // two packets: the identification of the second
				v, frames := e.processAll(in, forward.VNetHdr{})
				if v != forward.Transmit || len(frames) != 1 {
					t.Fatalf("verdict %v, %d frames", v, len(frames))
				}
				got := frames[0]
				l2 := l3Off(tc.link)
				var id, flags uint16
				if tc.df {
					flags = 0x4000
				} else {
					id = binary.BigEndian.Uint16(got[l2+4:])
					if i == 1 && id != prevID+1 {
						t.Errorf("identifications %d then %d, want consecutive", prevID, id)
					}
					prevID = id
				}
				ttl, tos := tc.p.ttl, tc.p.tos
				if ttl == 0 {
					ttl = 64
				}
				want := refIPv4(dip4, rip4, tos, ttl-1, tc.proto, id, flags, len(inner))
				if tc.link == forward.Ethernet {
					want = cat(ethHdr(rsMAC, dirMAC, 0x0800), want)
				}
				want = cat(want, inner)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("packet %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// TestTUNTooBig sends packets that do not fit the tunnel and must not be
// fragmented (IPv4 with DF, any IPv6): each is answered with the ICMP error
// the kernel builds for IPVS, compared byte for byte with a reference.
func TestTUNTooBig(t *testing.T) {
	tests := []struct {
		name    string
		link    forward.Framing
		p       pkt
		mtu     int
		wantMTU int
	}{
		{name: "tcp4 1500 over 1500", p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, df: true, tos: 0xbb, payload: string(bytes.Repeat([]byte("a"), 1460))},
			mtu: 1500, wantMTU: 1480},
		{name: "udp4 small mtu ip link", link: forward.IP, p: pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 80), df: true, payload: string(bytes.Repeat([]byte("u"), 600))},
			mtu: 576, wantMTU: 556},
		{name: "tcp6 1500 over 1500", p: pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: ack, payload: string(bytes.Repeat([]byte("6"), 1440))},
			mtu: 1500, wantMTU: 1480},
		{name: "udp6 just over", p: pkt{proto: lvs.UDP, src: ap(cli6, 40000), dst: ap(vip6, 80), payload: string(bytes.Repeat([]byte("6"), 1280-48+1))},
			mtu: 1300, wantMTU: 1280},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.link = tc.link
			proto := tc.p.proto
			if proto == 0 {
				proto = lvs.TCP
			}
			d := rs(rip4, 80, lvs.TUN)
			e := newEnv(t, envOpts{link: tc.link, mtu: tc.mtu}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: proto, dest: d, tunSrc: dip4})
			if proto == lvs.TCP { // open the connection
				open := tc.p
				open.flags, open.payload = syn, ""
				if v, _ := e.process(open.build(t), forward.VNetHdr{}); v != forward.Transmit {
					t.Fatalf("SYN: %v", v)
				}
			}
			in := tc.p.build(t)
			// The quote shows the TTL decremented: IPVS's decrement_ttl
			// comes before its MTU check.
			ip := ipOf(tc.link, ttlDecremented(t, tc.link, in))
			before := e.f.Counters()
			e.tab.Stats() // folds the workers' packet counters into lvs.Stats
			inPkts := d.Stats.InPkts.Load()
			v, frames := e.processAll(in, forward.VNetHdr{})
			if v != forward.Transmit || len(frames) != 1 {
				t.Fatalf("verdict %v, %d frames; want one ICMP error", v, len(frames))
			}
			if r := e.dropReason(before); r != forward.DropTooBig {
				t.Errorf("drop reason %v, want too-big", r)
			}
			if after := e.f.Counters(); after.ForwardedIn != before.ForwardedIn {
				t.Errorf("counted as forwarded")
			}
			e.tab.Stats()
			if d.Stats.InPkts.Load() != inPkts {
				t.Errorf("counted in the real server's packets")
			}
			got := frames[0]
			var want []byte
			if tc.p.dst.Addr().Is4() {
				quote := ip[:min(len(ip), 576-28)]
				icmp := cat([]byte{3, 4, 0, 0, 0, 0, 0, 0}, quote)
				put16(icmp[6:], tc.wantMTU)
				put16(icmp[2:], int(^fold(onesSum(icmp, 0))))
				l2 := l3Off(tc.link)
				id := binary.BigEndian.Uint16(got[l2+4:]) // the worker's counter
				tos := tc.p.tos&0x1e | 0xc0
				want = refIPv4(tc.p.dst.Addr(), tc.p.src.Addr(), tos, 64, 1, id, 0, len(icmp))
				want = cat(want, icmp)
				if tc.link == forward.Ethernet {
					want = cat(ethHdr(cliMAC, dirMAC, 0x0800), want)
				}
			} else {
				quote := ip[:min(len(ip), 1280-48)]
				icmp := cat([]byte{2, 0, 0, 0, 0, 0, 0, 0}, quote)
				binary.BigEndian.PutUint32(icmp[4:], uint32(tc.wantMTU))
				h := make([]byte, 40)
				h[0] = 0x60
				put16(h[4:], len(icmp))
				h[6], h[7] = 58, 64
				copy(h[8:], tc.p.dst.Addr().AsSlice())
				copy(h[24:], tc.p.src.Addr().AsSlice())
				sum := onesSum(h[8:40], uint32(len(icmp))+58)
				put16(icmp[2:], int(^fold(onesSum(icmp, sum))))
				want = cat(h, icmp)
				if tc.link == forward.Ethernet {
					want = cat(ethHdr(cliMAC, dirMAC, 0x86dd), want)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ICMP error (-want +got):\n%s", diff)
			}
			// gopacket agrees that it is what it claims to be.
			first := layers.LayerTypeEthernet
			if tc.link == forward.IP {
				first = layers.LayerTypeIPv4
				if !tc.p.dst.Addr().Is4() {
					first = layers.LayerTypeIPv6
				}
			}
			pk := gopacket.NewPacket(got, first, gopacket.Default)
			if tc.p.dst.Addr().Is4() {
				if ic, _ := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ic == nil || ic.TypeCode != layers.CreateICMPv4TypeCode(3, 4) {
					t.Errorf("not an ICMP fragmentation-needed: %v", pk)
				}
			} else if ic, _ := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ic == nil || ic.TypeCode != layers.CreateICMPv6TypeCode(2, 0) {
				t.Errorf("not an ICMPv6 packet-too-big: %v", pk)
			}
		})
	}
}

// TestTUNFragments sends an IPv4 packet without DF that does not fit the
// tunnel: it leaves as fragments of the outer packet, each a valid IPv4
// fragment of at most the MTU, which reassemble into the inner packet.
func TestTUNFragments(t *testing.T) {
	for _, link := range []forward.Framing{forward.Ethernet, forward.IP} {
		e := newEnv(t, envOpts{link: link, mtu: 1500}, svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: rs(rip4, 53, lvs.TUN), tunSrc: dip4})
		in := pkt{link: link, proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 53), tos: 0x10, ttl: 30, payload: string(bytes.Repeat([]byte("0123456789"), 400))}.build(t)
		inner := ipOf(link, ttlDecremented(t, link, in))
		v, frames := e.processAll(in, forward.VNetHdr{})
		if v != forward.Transmit || len(frames) != 3 {
			t.Fatalf("verdict %v, %d frames; want 3 fragments", v, len(frames))
		}
		l2 := l3Off(link)
		id := binary.BigEndian.Uint16(frames[0][l2+4:])
		var whole []byte
		for i, f := range frames {
			if len(f)-l2 > 1500 {
				t.Errorf("fragment %d: %d bytes over the MTU", i, len(f)-l2)
			}
			payload := f[l2+20:]
			flags := uint16(len(whole) / 8)
			if i < len(frames)-1 {
				flags |= 0x2000
				if len(payload)%8 != 0 {
					t.Errorf("fragment %d: %d bytes, not a multiple of 8", i, len(payload))
				}
			}
			want := refIPv4(dip4, rip4, 0x10, 29, 4, id, flags, len(payload))
			if link == forward.Ethernet {
				want = cat(ethHdr(rsMAC, dirMAC, 0x0800), want)
			}
			if diff := cmp.Diff(want, f[:l2+20]); diff != "" {
				t.Errorf("fragment %d headers (-want +got):\n%s", i, diff)
			}
			whole = append(whole, payload...)
		}
		if !bytes.Equal(whole, inner) {
			t.Errorf("reassembled fragments differ from the inner packet")
		}
	}
}

// gsoFrame describes a TCP super-frame and the segments it must become.
type gsoFrame struct {
	v6      bool
	flags   string // of the super-frame: any of "SAPFC"
	payload int
	mss     int
	ipID    uint16
}

func (g gsoFrame) tcp(seq uint32, flags string, payload []byte, nl gopacket.NetworkLayer) []gopacket.SerializableLayer {
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: seq, Ack: 777, Window: 500,
		SYN: bytes.ContainsRune([]byte(flags), 'S'), ACK: bytes.ContainsRune([]byte(flags), 'A'),
		PSH: bytes.ContainsRune([]byte(flags), 'P'), FIN: bytes.ContainsRune([]byte(flags), 'F'),
		CWR: bytes.ContainsRune([]byte(flags), 'C'),
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}}}}
	tcp.SetNetworkLayerForChecksum(nl)
	return []gopacket.SerializableLayer{tcp, gopacket.Payload(payload)}
}

// packet builds an IP packet (no Ethernet header) of the flow.
func (g gsoFrame) packet(tb testing.TB, id uint16, seq uint32, flags string, payload []byte) []byte {
	var nl gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	if g.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: cli6.AsSlice(), DstIP: vip6.AsSlice()}
		nl, ls = ip, []gopacket.SerializableLayer{ip}
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
			SrcIP: cli4.AsSlice(), DstIP: vip4.AsSlice()}
		nl, ls = ip, []gopacket.SerializableLayer{ip}
	}
	return serialize(tb, append(ls, g.tcp(seq, flags, payload, nl)...)...)
}

// segments returns the reference segments of the super-frame: what the
// kernel's tcp_gso_segment makes of it.
func (g gsoFrame) segments(tb testing.TB, payload []byte, mss int) [][]byte {
	var out [][]byte
	for i, off := 0, 0; off < len(payload); i, off = i+1, off+mss {
		end := min(off+mss, len(payload))
		flags := g.flags
		if i > 0 {
			flags = string(bytes.ReplaceAll([]byte(flags), []byte("C"), nil))
		}
		if end < len(payload) {
			flags = string(bytes.ReplaceAll(bytes.ReplaceAll([]byte(flags), []byte("F"), nil), []byte("P"), nil))
		}
		out = append(out, g.packet(tb, g.ipID+uint16(i), 5000+uint32(off), flags, payload[off:end]))
	}
	return out
}

// TestTUNGSO segments TCP super-frames bound for a TUN-mode real server and
// compares every inner segment, byte for byte, with the kernel's
// segmentation built by a plain reference (gopacket): lengths, IPv4
// identifications id+i, sequence numbers, FIN/PSH on the last segment only,
// CWR on the first only, full checksums. Each segment is encapsulated with a
// valid outer header and fits the MTU.
func TestTUNGSO(t *testing.T) {
	tests := []struct {
		name string
		g    gsoFrame
		mtu  int
		df   bool
		want int // segment payload size
	}{
		{name: "tcp4 three segments", g: gsoFrame{flags: "APC", payload: 4000, mss: 1400, ipID: 0xfffe}, want: 1400},
		{name: "tcp4 fin", g: gsoFrame{flags: "AFP", payload: 2 * 1000, mss: 1000, ipID: 7}, want: 1000},
		{name: "tcp4 one segment", g: gsoFrame{flags: "AP", payload: 500, mss: 1000, ipID: 7}, want: 1000},
		{name: "tcp6 many segments", g: gsoFrame{v6: true, flags: "AP", payload: 60000, mss: 1368}, want: 1368},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.g.payload)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			vip := vip4
			etype := uint16(0x0800)
			if tc.g.v6 {
				vip, etype = vip6, 0x86dd
			}
			d := rs(rip4, 80, lvs.TUN)
			e := newEnv(t, envOpts{}, svcSpec{vip: vip, port: 80, proto: lvs.TCP, dest: d, tunSrc: dip4})
			g := tc.g
			synPkt := g.packet(t, 1, 4999, "S", nil)
			if v, _ := e.processAll(cat(ethHdr(dirMAC, cliMAC, etype), synPkt), forward.VNetHdr{}); v != forward.Transmit {
				t.Fatalf("SYN: %v", v)
			}
			frame := cat(ethHdr(dirMAC, cliMAC, etype), g.packet(t, g.ipID, 5000, g.flags, payload))
			vnet := makePartial(forward.Ethernet, frame)
			vnet.GSOType = forward.VirtioNetHdrGSOTCPv4
			if g.v6 {
				vnet.GSOType = forward.VirtioNetHdrGSOTCPv6
			}
			vnet.GSOSize = uint16(g.mss)
			vnet.HdrLen = vnet.CsumStart + 32
			v, frames := e.processAll(frame, vnet)
			if v != forward.Transmit {
				t.Fatalf("verdict %v (drop %v)", v, e.dropReason(forward.Counters{}))
			}
			want := g.segments(t, payload, tc.want)
			if len(frames) != len(want) {
				t.Fatalf("%d frames, want %d segments", len(frames), len(want))
			}
			outerDF := uint16(0x4000)
			proto := uint8(4)
			if g.v6 {
				outerDF, proto = 0, 41
			}
			for i, f := range frames {
				if len(f)-14 > 1500 {
					t.Errorf("segment %d: outer packet of %d bytes", i, len(f)-14)
				}
				id := uint16(0)
				if g.v6 {
					id = binary.BigEndian.Uint16(f[14+4:])
				}
				// Every segment has the super-frame's TTL, decremented.
				seg := ttlDecremented(t, forward.IP, want[i])
				wantFrame := cat(ethHdr(rsMAC, dirMAC, 0x0800), refIPv4(dip4, rip4, 0, 63, proto, id, outerDF, len(seg)), seg)
				if diff := cmp.Diff(wantFrame, f); diff != "" {
					t.Fatalf("segment %d of %d (-want +got):\n%s", i, len(want), diff)
				}
				checkSums(t, f[34:])
			}
			e.tab.Stats() // folds the workers' packet counters into lvs.Stats
			if d.Stats.InPkts.Load() != 2 {
				t.Errorf("real server counts %d packets, want 2 (the SYN and the super-frame)", d.Stats.InPkts.Load())
			}
		})
	}
}

// TestTUNGSOTooBig sends super-frames whose segments do not fit the tunnel:
// with DF the client gets one ICMP fragmentation-needed (MTU 1480), without
// DF the frame is cut into segments that fit.
func TestTUNGSOTooBig(t *testing.T) {
	g := gsoFrame{flags: "AP", payload: 3 * 1448, mss: 1448, ipID: 100}
	payload := bytes.Repeat([]byte("x"), g.payload)
	for _, df := range []bool{true, false} {
		e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 80, lvs.TUN), tunSrc: dip4})
		if v, _ := e.processAll(cat(ethHdr(dirMAC, cliMAC, 0x0800), g.packet(t, 1, 4999, "S", nil)), forward.VNetHdr{}); v != forward.Transmit {
			t.Fatalf("SYN: %v", v)
		}
		ip := g.packet(t, g.ipID, 5000, g.flags, payload)
		if !df {
			ip[6] &^= 0x40
			put16(ip[10:], 0)
			put16(ip[10:], int(^fold(onesSum(ip[:20], 0))))
		}
		frame := cat(ethHdr(dirMAC, cliMAC, 0x0800), ip)
		vnet := makePartial(forward.Ethernet, frame)
		vnet.GSOType, vnet.GSOSize, vnet.HdrLen = forward.VirtioNetHdrGSOTCPv4, uint16(g.mss), 14+52
		before := e.f.Counters()
		v, frames := e.processAll(frame, vnet)
		if v != forward.Transmit {
			t.Fatalf("df %v: verdict %v", df, v)
		}
		if df {
			if len(frames) != 1 || frames[0][14+9] != 1 || frames[0][34] != 3 || frames[0][35] != 4 ||
				binary.BigEndian.Uint16(frames[0][34+6:]) != 1480 {
				t.Fatalf("df: want one ICMP fragmentation-needed with MTU 1480, got %d frames: % x", len(frames), frames[0][:min(len(frames[0]), 48)])
			}
			if r := e.dropReason(before); r != forward.DropTooBig {
				t.Errorf("drop reason %v", r)
			}
			continue
		}
		// 1480 bytes of inner packet: 52 of headers, 1428 of payload.
		if len(frames) != 4 {
			t.Fatalf("no df: %d frames, want 4 segments of at most 1428 bytes", len(frames))
		}
		for i, f := range frames {
			inner := f[34:]
			if len(inner) > 1480 || binary.BigEndian.Uint16(inner[2:]) != uint16(len(inner)) {
				t.Errorf("segment %d: %d bytes", i, len(inner))
			}
			if seq := binary.BigEndian.Uint32(inner[24:]); seq != 5000+uint32(i*1428) {
				t.Errorf("segment %d: seq %d", i, seq)
			}
			checkSums(t, inner)
		}
	}
}

// TestDRTUNInputOnly checks the connection entries of DR and TUN: indexed by
// the client's direction only (replies never pass through the director),
// moved by the client's segments alone, and expired.
func TestDRTUNInputOnly(t *testing.T) {
	for _, m := range []lvs.Method{lvs.DR, lvs.TUN} {
		t.Run(m.String(), func(t *testing.T) {
			d := rs(rip4, 80, m)
			e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d, tunSrc: dip4})
			for _, f := range []uint8{syn, ack, ack} {
				if v, _ := e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: f}.build(t), forward.VNetHdr{}); v != forward.Transmit {
					t.Fatalf("verdict %v", v)
				}
			}
			in := lvs.Tuple{Src: lvs.AddrFromNetip(cli4), Dst: lvs.AddrFromNetip(vip4), SPort: 40000, DPort: 80, Proto: lvs.TCP}
			ent, reply := e.tab.Lookup(&in)
			if ent == nil || reply {
				t.Fatalf("no entry for the client's direction")
			}
			if ent.State() != conntrack.StateEstablished || d.ActiveConns.Load() != 1 {
				t.Errorf("state %v, active %d; want ESTABLISHED from the client's ACK", ent.State(), d.ActiveConns.Load())
			}
			for _, k := range []lvs.Tuple{
				{Src: lvs.AddrFromNetip(rip4), Dst: lvs.AddrFromNetip(cli4), SPort: 80, DPort: 40000, Proto: lvs.TCP},
				{Src: lvs.AddrFromNetip(vip4), Dst: lvs.AddrFromNetip(cli4), SPort: 80, DPort: 40000, Proto: lvs.TCP},
			} {
				if r, _ := e.tab.Lookup(&k); r != nil {
					t.Errorf("reply tuple %v is indexed", k)
				}
			}
			// A reply that does reach the director is not forwarded.
			back := pkt{srcMAC: rsMAC, src: ap(vip4, 80), dst: ap(cli4, 40000), flags: ack}.build(t)
			if v, _ := e.process(back, forward.VNetHdr{}); v == forward.Transmit {
				t.Errorf("a reply from the VIP was forwarded")
			}
			if v, _ := e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: fin | ack}.build(t), forward.VNetHdr{}); v != forward.Transmit {
				t.Fatalf("FIN: %v", v)
			}
			if ent.State() != conntrack.StateFinWait {
				t.Errorf("state %v after the client's FIN, want FIN_WAIT", ent.State())
			}
			e.clk.advance(conntrack.DefaultTCPFinTimeout + time.Second)
			if n := e.tab.Expire(e.clk.now()); n != 1 || e.tab.Len() != 0 {
				t.Errorf("expired %d, %d left; want the entry gone", n, e.tab.Len())
			}
			if d.ActiveConns.Load() != 0 || d.InactiveConns.Load() != 0 {
				t.Errorf("counters %d/%d after expiry", d.ActiveConns.Load(), d.InactiveConns.Load())
			}
		})
	}
}
