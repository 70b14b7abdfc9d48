package realserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// seg describes one TCP segment of the GRO tests.
type seg struct {
	v6       bool
	sport    uint16 // 40000 unless set
	seq      uint32 // payload offset from 1000
	n        int    // payload bytes
	flags    string // any of "SFRPUACE"
	ack      uint32 // 7000 unless set
	win      uint16 // 500 unless set
	tos      uint8
	ttl      uint8 // 60 unless set
	options  []layers.IPv4Option
	tsval    uint32 // a timestamp option when set
	badCsum  bool
	udp      bool
	fragment bool
}

// payloadByte is the payload of every segment at stream offset i: a
// super-frame's payload is then the same function of its offset.
func payloadByte(i uint32) byte { return byte(i*7 + i>>8) }

func (s seg) build(tb testing.TB) []byte {
	tb.Helper()
	if s.sport == 0 {
		s.sport = 40000
	}
	if s.ack == 0 {
		s.ack = 7000
	}
	if s.win == 0 {
		s.win = 500
	}
	if s.ttl == 0 {
		s.ttl = 60
	}
	pay := make([]byte, s.n)
	for i := range pay {
		pay[i] = payloadByte(s.seq + uint32(i))
	}
	var l4 gopacket.SerializableLayer
	var tcp *layers.TCP
	if s.udp {
		l4 = &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: 53}
	} else {
		tcp = &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: 80, Seq: 1000 + s.seq, Ack: s.ack, Window: s.win}
		for _, f := range s.flags {
			switch f {
			case 'S':
				tcp.SYN = true
			case 'F':
				tcp.FIN = true
			case 'R':
				tcp.RST = true
			case 'P':
				tcp.PSH = true
			case 'U':
				tcp.URG = true
			case 'A':
				tcp.ACK = true
			case 'C':
				tcp.CWR = true
			case 'E':
				tcp.ECE = true
			}
		}
		if s.tsval != 0 {
			ts := make([]byte, 8)
			binary.BigEndian.PutUint32(ts, s.tsval)
			tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts}}
		}
		l4 = tcp
	}
	var b []byte
	if s.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: s.ttl, TrafficClass: s.tos, SrcIP: cli6.AsSlice(), DstIP: vip6.AsSlice(), NextHeader: layers.IPProtocolTCP}
		if s.udp {
			ip.NextHeader = layers.IPProtocolUDP
			l4.(*layers.UDP).SetNetworkLayerForChecksum(ip)
		} else {
			tcp.SetNetworkLayerForChecksum(ip)
		}
		b = serialize(tb, ip, l4, gopacket.Payload(pay))
	} else {
		ip := &layers.IPv4{Version: 4, TTL: s.ttl, TOS: s.tos, Flags: layers.IPv4DontFragment, Id: uint16(s.seq),
			SrcIP: cli.AsSlice(), DstIP: vip.AsSlice(), Protocol: layers.IPProtocolTCP, Options: s.options}
		if s.fragment {
			ip.Flags = layers.IPv4MoreFragments
		}
		if s.udp {
			ip.Protocol = layers.IPProtocolUDP
			l4.(*layers.UDP).SetNetworkLayerForChecksum(ip)
		} else {
			tcp.SetNetworkLayerForChecksum(ip)
		}
		b = serialize(tb, ip, l4, gopacket.Payload(pay))
	}
	if s.badCsum {
		b[len(b)-1] ^= 0xff // payload corrupted on the way
	}
	return b
}

// groRun feeds the packets, each in a slot of its own laid out as the
// receive path lays them out (the outer IPv4 header's room before the inner
// packet), and returns the frames written, virtio-net header first.
func groRun(tb testing.TB, pkts ...[]byte) (frames [][]byte, segs []int) {
	tb.Helper()
	c := newCoalescer(len(pkts))
	for _, p := range pkts {
		slot := make([]byte, slotSize)
		start := vnetHdrLen + 20
		copy(slot[start:], p)
		c.add(slot, start, start+len(p))
	}
	c.flush(func(f []byte, n int) {
		frames = append(frames, append([]byte(nil), f...))
		segs = append(segs, n)
	})
	if len(c.items) != 0 {
		tb.Fatal("flush left items behind")
	}
	return frames, segs
}

// vnet is a decoded virtio-net header.
type vnet struct {
	flags, gsoType                         uint8
	hdrLen, gsoSize, csumStart, csumOffset uint16
}

func decodeVNet(f []byte) vnet {
	return vnet{f[0], f[1], binary.LittleEndian.Uint16(f[2:]), binary.LittleEndian.Uint16(f[4:]),
		binary.LittleEndian.Uint16(f[6:]), binary.LittleEndian.Uint16(f[8:])}
}

// offload completes a super-frame's partial checksum as the kernel's
// checksum offload would, and returns the IP packet.
func offload(tb testing.TB, f []byte) []byte {
	tb.Helper()
	h := decodeVNet(f)
	pkt := append([]byte(nil), f[vnetHdrLen:]...)
	if h.flags&vnetNeedsCsum != 0 {
		at := int(h.csumStart + h.csumOffset)
		binary.BigEndian.PutUint16(pkt[at:], ^checksum.Checksum(pkt[h.csumStart:], 0))
	}
	return pkt
}

// checkSuper checks that frame f is a valid super-frame of n segments of
// gso bytes carrying stream bytes [from, from+size) with flags.
func checkSuper(t *testing.T, f []byte, v6 bool, gso, from, size int, flags string) {
	t.Helper()
	h := decodeVNet(f)
	ipLen := 20
	wantType := uint8(vnetGSOTCPv4)
	if v6 {
		ipLen, wantType = 40, vnetGSOTCPv6
	}
	want := vnet{vnetNeedsCsum, wantType, uint16(ipLen + 20), uint16(gso), uint16(ipLen), 16}
	if h != want {
		t.Errorf("virtio-net header %+v, want %+v", h, want)
	}
	pkt := offload(t, f)
	if !segmentValid(pkt, ipLen, v6) {
		t.Errorf("super-frame checksums do not verify once offloaded")
	}
	var first gopacket.LayerType = layers.LayerTypeIPv4
	if v6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(pkt, first, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("super-frame does not parse: %v", el.Error())
	}
	if v6 {
		if ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); int(ip.Length) != len(pkt)-40 {
			t.Errorf("IPv6 payload length %d, want %d", ip.Length, len(pkt)-40)
		}
	} else if ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); int(ip.Length) != len(pkt) {
		t.Errorf("IPv4 total length %d, want %d", ip.Length, len(pkt))
	}
	tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp.Seq != 1000+uint32(from) {
		t.Errorf("seq %d, want %d", tcp.Seq, 1000+from)
	}
	if len(tcp.Payload) != size {
		t.Fatalf("payload %d bytes, want %d", len(tcp.Payload), size)
	}
	for i, c := range tcp.Payload {
		if c != payloadByte(uint32(from+i)) {
			t.Fatalf("payload byte %d is %#x, want %#x", i, c, payloadByte(uint32(from+i)))
		}
	}
	got := ""
	for _, f := range []struct {
		c  byte
		on bool
	}{{'F', tcp.FIN}, {'P', tcp.PSH}, {'A', tcp.ACK}} {
		if f.on {
			got += string(f.c)
		}
	}
	if got != flags {
		t.Errorf("flags %q, want %q", got, flags)
	}
}

// checkAsIs checks that frame f is packet p unchanged, with an empty
// virtio-net header.
func checkAsIs(t *testing.T, f, p []byte) {
	t.Helper()
	if h := decodeVNet(f); h != (vnet{}) {
		t.Errorf("virtio-net header %+v, want empty", h)
	}
	if !bytes.Equal(f[vnetHdrLen:], p) {
		t.Errorf("packet changed:\n got %x\nwant %x", f[vnetHdrLen:], p)
	}
}

func TestGROCoalesces(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprint("v6=", v6), func(t *testing.T) {
			var pkts [][]byte
			for i := range 5 {
				s := seg{v6: v6, seq: uint32(i * 100), n: 100, flags: "A", tsval: 77}
				if i == 4 {
					s.n, s.flags = 60, "AP"
				}
				pkts = append(pkts, s.build(t))
			}
			frames, segs := groRun(t, pkts...)
			if len(frames) != 1 || segs[0] != 5 {
				t.Fatalf("%d frames of %v segments, want 1 of 5", len(frames), segs)
			}
			// The timestamp option (12 bytes) is part of the header.
			h := decodeVNet(frames[0])
			ipLen := 20
			if v6 {
				ipLen = 40
			}
			if int(h.hdrLen) != ipLen+32 {
				t.Errorf("hdr_len %d, want %d", h.hdrLen, ipLen+32)
			}
			binary.LittleEndian.PutUint16(frames[0][2:], uint16(ipLen+20)) // for checkSuper
			checkSuper(t, frames[0], v6, 100, 0, 460, "PA")
		})
	}
}

func TestGROEdges(t *testing.T) {
	a := func(seq uint32, n int, flags string) seg { return seg{seq: seq, n: n, flags: flags} }
	tests := []struct {
		name string
		segs []seg
		// want: per frame, the indexes of the segments it carries; a
		// single index is that packet as it came.
		want [][]int
	}{
		{"out of order", []seg{a(0, 100, "A"), a(200, 100, "A"), a(100, 100, "A")}, [][]int{{0}, {1}, {2}}},
		{"retransmission", []seg{a(0, 100, "A"), a(100, 100, "A"), a(100, 100, "A")}, [][]int{{0, 1}, {2}}},
		{"PSH ends a frame", []seg{a(0, 100, "A"), a(100, 100, "AP"), a(200, 100, "A"), a(300, 100, "A")}, [][]int{{0, 1}, {2, 3}}},
		{"PSH first", []seg{a(0, 100, "AP"), a(100, 100, "A")}, [][]int{{0}, {1}}},
		{"FIN ends a frame", []seg{a(0, 100, "A"), a(100, 50, "AF"), a(150, 100, "A")}, [][]int{{0, 1}, {2}}},
		{"short segment ends a frame", []seg{a(0, 100, "A"), a(100, 40, "A"), a(140, 40, "A")}, [][]int{{0, 1}, {2}}},
		{"bigger segment does not join", []seg{a(0, 100, "A"), a(100, 120, "A")}, [][]int{{0}, {1}}},
		{"different flows interleaved", []seg{a(0, 100, "A"), {sport: 40001, n: 100, flags: "A"}, a(100, 100, "A"), {sport: 40001, seq: 100, n: 100, flags: "A"}},
			[][]int{{0, 2}, {1, 3}}},
		{"other family", []seg{a(0, 100, "A"), {v6: true, seq: 100, n: 100, flags: "A"}}, [][]int{{0}, {1}}},
		{"SYN passes", []seg{{n: 0, flags: "S"}, a(0, 100, "A")}, [][]int{{0}, {1}}},
		{"RST passes", []seg{a(0, 100, "A"), a(100, 100, "AR")}, [][]int{{0}, {1}}},
		{"URG passes", []seg{a(0, 100, "A"), a(100, 100, "AU")}, [][]int{{0}, {1}}},
		{"CWR passes", []seg{a(0, 100, "AC"), a(100, 100, "A")}, [][]int{{0}, {1}}},
		{"ECE on both joins", []seg{a(0, 100, "AE"), a(100, 100, "AE")}, [][]int{{0, 1}}},
		{"ECE on one does not", []seg{a(0, 100, "A"), a(100, 100, "AE")}, [][]int{{0}, {1}}},
		{"pure ACKs pass", []seg{a(0, 0, "A"), a(0, 0, "A")}, [][]int{{0}, {1}}},
		{"other ack", []seg{a(0, 100, "A"), {seq: 100, n: 100, flags: "A", ack: 9000}}, [][]int{{0}, {1}}},
		{"other window", []seg{a(0, 100, "A"), {seq: 100, n: 100, flags: "A", win: 9}}, [][]int{{0}, {1}}},
		{"other timestamp", []seg{{n: 100, flags: "A", tsval: 1}, {seq: 100, n: 100, flags: "A", tsval: 2}}, [][]int{{0}, {1}}},
		{"other TTL", []seg{a(0, 100, "A"), {seq: 100, n: 100, flags: "A", ttl: 9}}, [][]int{{0}, {1}}},
		{"other TOS", []seg{a(0, 100, "A"), {seq: 100, n: 100, flags: "A", tos: 4}}, [][]int{{0}, {1}}},
		{"same IP options join", []seg{{n: 100, flags: "A", options: rr()}, {seq: 100, n: 100, flags: "A", options: rr()}}, [][]int{{0, 1}}},
		{"other IP options", []seg{a(0, 100, "A"), {seq: 100, n: 100, flags: "A", options: rr()}, {seq: 200, n: 100, flags: "A"}}, [][]int{{0}, {1}, {2}}},
		{"IPv4 fragment passes", []seg{a(0, 100, "A"), {seq: 100, n: 100, flags: "A", fragment: true}}, [][]int{{0}, {1}}},
		{"UDP passes", []seg{{udp: true, n: 100}, {udp: true, n: 100}}, [][]int{{0}, {1}}},
		{"bad checksum passes", []seg{a(0, 100, "A"), {seq: 100, n: 100, flags: "A", badCsum: true}, a(200, 100, "A")}, [][]int{{0}, {1}, {2}}},
		{"bad first checksum", []seg{{n: 100, flags: "A", badCsum: true}, a(100, 100, "A"), a(200, 100, "A")}, [][]int{{0}, {1, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pkts [][]byte
			for _, s := range tt.segs {
				pkts = append(pkts, s.build(t))
			}
			frames, segs := groRun(t, pkts...)
			if len(frames) != len(tt.want) {
				t.Fatalf("%d frames (%v segments each), want %d: %v", len(frames), segs, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if segs[i] != len(w) {
					t.Fatalf("frame %d carries %d segments, want %d", i, segs[i], len(w))
				}
				if len(w) == 1 {
					checkAsIs(t, frames[i], pkts[w[0]])
					continue
				}
				first, last := tt.segs[w[0]], tt.segs[w[len(w)-1]]
				flags := "A"
				if bytes.ContainsRune([]byte(last.flags), 'P') {
					flags = "PA"
				}
				if bytes.ContainsRune([]byte(last.flags), 'F') {
					flags = "F" + flags
				}
				if first.options != nil {
					continue // checkSuper expects 20 bytes of IPv4 header; the lengths were checked by segs
				}
				if bytes.ContainsRune([]byte(first.flags), 'E') {
					continue // ECE: checked by segs
				}
				checkSuper(t, frames[i], first.v6, first.n, int(first.seq), int(last.seq)+last.n-int(first.seq), flags)
			}
		})
	}
}

// rr is a record-route IPv4 option (8 bytes with its padding).
func rr() []layers.IPv4Option {
	return []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}, {OptionType: 0}}
}

// TestGROSizeLimit: a super-frame stays within 65,535 bytes of IP packet;
// the segments beyond start the next one.
func TestGROSizeLimit(t *testing.T) {
	const mss = 1448
	var pkts [][]byte
	for i := range 60 {
		pkts = append(pkts, seg{seq: uint32(i * mss), n: mss, flags: "A"}.build(t))
	}
	frames, segs := groRun(t, pkts...)
	if len(frames) != 2 {
		t.Fatalf("%d frames of %v segments, want 2", len(frames), segs)
	}
	n0 := (maxIPPacket - 40) / mss
	if segs[0] != n0 || segs[1] != 60-n0 {
		t.Errorf("segments %v, want [%d %d]", segs, n0, 60-n0)
	}
	checkSuper(t, frames[0], false, mss, 0, n0*mss, "A")
	checkSuper(t, frames[1], false, mss, n0*mss, (60-n0)*mss, "A")
}

// TestGROAllocs: joining and flushing a batch allocates nothing.
func TestGROAllocs(t *testing.T) {
	var pkts [][]byte
	for i := range 45 {
		pkts = append(pkts, seg{seq: uint32(i * 1448), n: 1448, flags: "A"}.build(t))
	}
	c := newCoalescer(rxBatchSize)
	slots := make([][]byte, len(pkts))
	for i := range slots {
		slots[i] = make([]byte, slotSize)
	}
	var frames int
	write := func(f []byte, n int) { frames++ }
	allocs := testing.AllocsPerRun(100, func() {
		for i, p := range pkts {
			copy(slots[i][30:], p)
			c.add(slots[i], 30, 30+len(p))
		}
		c.flush(write)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
	if frames != 101 {
		t.Errorf("%d frames written in 101 batches, want 101", frames)
	}
}

func BenchmarkGRO(b *testing.B) {
	var pkts [][]byte
	for i := range 45 {
		pkts = append(pkts, seg{seq: uint32(i * 1448), n: 1448, flags: "A"}.build(b))
	}
	c := newCoalescer(rxBatchSize)
	slots := make([][]byte, len(pkts))
	for i := range slots {
		slots[i] = make([]byte, slotSize)
	}
	write := func(f []byte, n int) {}
	b.ReportAllocs()
	b.SetBytes(45 * 1448)
	for b.Loop() {
		for i, p := range pkts {
			copy(slots[i][30:], p)
			c.add(slots[i], 30, 30+len(p))
		}
		c.flush(write)
	}
}

// FuzzCoalesce feeds the coalescer batches of inner packets as decap passes
// them (a valid IPv4 or IPv6 packet to a VIP, whatever it carries): it must
// not panic, must account for every packet exactly once, must pass what it
// does not join unchanged with an empty virtio-net header, and every
// super-frame must be whole: the joined segments' payloads in order, with
// checksums that verify once offloaded.
func FuzzCoalesce(f *testing.F) {
	join := func(ps ...[]byte) []byte {
		var out []byte
		for _, p := range ps {
			out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
			out = append(out, p...)
		}
		return out
	}
	var run [][]byte
	for i := range 4 {
		run = append(run, seg{seq: uint32(i * 100), n: 100, flags: "A"}.build(f))
	}
	f.Add(join(run...))
	f.Add(join(run[0], run[2], run[1], run[3]))
	f.Add(join(seg{v6: true, n: 100, flags: "A"}.build(f), seg{v6: true, seq: 100, n: 100, flags: "AP"}.build(f)))
	f.Add(join(seg{n: 100, flags: "A", options: rr()}.build(f), seg{seq: 100, n: 100, flags: "A", options: rr()}.build(f)))
	f.Add(join(seg{udp: true, n: 10}.build(f), seg{n: 0, flags: "S"}.build(f)))
	flt := &filter{vips: []netip.Addr{vip, vip6}}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newCoalescer(rxBatchSize)
		var in [][]byte
		for len(data) >= 2 && len(in) < rxBatchSize {
			n := int(binary.BigEndian.Uint16(data))
			data = data[2:]
			n = min(n, len(data))
			p := data[:n]
			data = data[n:]
			if len(p) == 0 {
				continue
			}
			proto := uint8(protoIPIP)
			if p[0]>>4 == 6 {
				proto = protoIPv6
			}
			inner, r := flt.decapInner(p, proto, dip)
			if r != Injected {
				continue
			}
			slot := make([]byte, slotSize)
			start := vnetHdrLen + 20
			copy(slot[start:], inner)
			c.add(slot, start, start+len(inner))
			in = append(in, inner)
		}
		next := 0
		c.flush(func(fr []byte, segs int) {
			if segs < 1 || next+segs > len(in) {
				t.Fatalf("a frame of %d segments after %d of %d packets", segs, next, len(in))
			}
			first, joined := in[next], in[next:next+segs]
			next += segs
			if segs == 1 {
				checkAsIs(t, fr, first)
				return
			}
			h := decodeVNet(fr)
			pkt := offload(t, fr)
			if !segmentValid(pkt, int(h.csumStart), pkt[0]>>4 == 6) {
				t.Fatalf("super-frame of %d segments does not verify", segs)
			}
			if len(pkt) > maxIPPacket {
				t.Fatalf("super-frame of %d bytes", len(pkt))
			}
			var payload []byte
			for _, p := range joined {
				payload = append(payload, p[h.hdrLen:]...)
			}
			if !bytes.Equal(pkt[h.hdrLen:], payload) {
				t.Fatalf("super-frame's payload is not its %d segments' in order", segs)
			}
		})
		if next != len(in) {
			t.Fatalf("frames carry %d packets of %d", next, len(in))
		}
	})
}

// TestGROIPv6ExtensionHeaders: IPv6 segments with an extension header
// (destination options) pass through as they came, in order.
func TestGROIPv6ExtensionHeaders(t *testing.T) {
	withExt := func(p []byte) []byte {
		out := append([]byte(nil), p[:40]...)
		out[6] = 60 // destination options
		binary.BigEndian.PutUint16(out[4:6], uint16(len(p)-40+8))
		out = append(out, 6, 0, 1, 4, 0, 0, 0, 0) // next header TCP, PadN
		return append(out, p[40:]...)
	}
	var pkts [][]byte
	for i := range 3 {
		pkts = append(pkts, withExt(seg{v6: true, seq: uint32(i * 100), n: 100, flags: "A"}.build(t)))
	}
	frames, segs := groRun(t, pkts...)
	if len(frames) != 3 {
		t.Fatalf("%d frames (%v segments), want the 3 packets as they came", len(frames), segs)
	}
	for i := range frames {
		checkAsIs(t, frames[i], pkts[i])
	}
}
