package forward_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// Plain reference fragmentation and reassembly, independent of frag.go.

// fragIP cuts the IP packet ip (IPv4 without options, or IPv6 without
// extension headers) into fragments carrying sizes bytes of data each (the
// last one the rest). IPv6 fragments get a fragment header with id.
func fragIP(ip []byte, sizes []int, id uint32) [][]byte {
	var out [][]byte
	v6 := ip[0]>>4 == 6
	hl := 20
	if v6 {
		hl = 40
	}
	data := ip[hl:]
	off := 0
	for i := 0; off < len(data); i++ {
		n := len(data) - off
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		more := off+n < len(data)
		var f []byte
		if v6 {
			f = append(append([]byte(nil), ip[:40]...), make([]byte, 8)...)
			f[6] = 44
			f[40] = ip[6]
			fo := uint16(off)
			if more {
				fo |= 1
			}
			binary.BigEndian.PutUint16(f[42:], fo)
			binary.BigEndian.PutUint32(f[44:], id)
			f = append(f, data[off:off+n]...)
			binary.BigEndian.PutUint16(f[4:], uint16(len(f)-40))
		} else {
			f = append(append([]byte(nil), ip[:20]...), data[off:off+n]...)
			binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
			fo := binary.BigEndian.Uint16(ip[6:8])&0x4000 | uint16(off/8)
			if more {
				fo |= 0x2000
			}
			binary.BigEndian.PutUint16(f[6:], fo)
			fixIPv4(f)
		}
		out = append(out, f)
		off += n
	}
	return out
}

// frame puts an IP packet in an Ethernet frame (on Ethernet links).
func frame(link forward.Framing, dst, src lvs.MAC, ip []byte) []byte {
	if link == forward.IP {
		return append([]byte(nil), ip...)
	}
	et := uint16(0x0800)
	if ip[0]>>4 == 6 {
		et = 0x86dd
	}
	return cat(ethHdr(dst, src, et), ip)
}

// refFrag is a fragment as the reference reassembler reads it.
type refFrag struct {
	off  int
	more bool
	id   uint32
	hdr  []byte // IPv4 header, or IPv6 fixed header
	data []byte
}

func parseRefFrag(tb testing.TB, ip []byte) refFrag {
	tb.Helper()
	if ip[0]>>4 == 6 {
		if ip[6] != 44 {
			tb.Fatalf("IPv6 packet without fragment header (next header %d)", ip[6])
		}
		fo := binary.BigEndian.Uint16(ip[42:44])
		h := append([]byte(nil), ip[:40]...)
		h[6] = ip[40]
		return refFrag{off: int(fo &^ 7), more: fo&1 != 0, id: binary.BigEndian.Uint32(ip[44:48]), hdr: h, data: ip[48:]}
	}
	hl := int(ip[0]&0xf) * 4
	if fold(onesSum(ip[:hl], 0)) != 0xffff {
		tb.Errorf("fragment with a bad IPv4 header checksum")
	}
	fo := binary.BigEndian.Uint16(ip[6:8])
	return refFrag{off: int(fo&0x1fff) * 8, more: fo&0x2000 != 0, id: uint32(binary.BigEndian.Uint16(ip[4:6])),
		hdr: append([]byte(nil), ip[:hl]...), data: ip[hl:binary.BigEndian.Uint16(ip[2:4])]}
}

// refReasm reassembles the IP fragments ips (in any order) and returns the
// datagram, failing unless they are the fragments of one datagram, without
// gap or overlap.
func refReasm(tb testing.TB, ips [][]byte) []byte {
	tb.Helper()
	var fs []refFrag
	for _, ip := range ips {
		fs = append(fs, parseRefFrag(tb, ip))
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].off < fs[j].off })
	var data []byte
	for i, f := range fs {
		if f.id != fs[0].id || f.off != len(data) || f.more != (i < len(fs)-1) {
			tb.Fatalf("fragment %d: id %#x offset %d more %v; want id %#x offset %d", i, f.id, f.off, f.more, fs[0].id, len(data))
		}
		data = append(data, f.data...)
	}
	h := fs[0].hdr
	if h[0]>>4 == 6 {
		out := append(append([]byte(nil), h...), data...)
		binary.BigEndian.PutUint16(out[4:], uint16(len(data)))
		return out
	}
	out := append(append([]byte(nil), h...), data...)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	binary.BigEndian.PutUint16(out[6:], binary.BigEndian.Uint16(out[6:])&0x4000)
	fixIPv4(out)
	return out
}

// processFrag runs a copy of frame through the worker, in a buffer as big
// as a link's (64 KiB), and returns the verdict and every frame written:
// the emitted ones, then, for Transmit, the verdict's own.
func (e *env) processFrag(frame []byte) (forward.Verdict, [][]byte) {
	e.tb.Helper()
	buf := make([]byte, headroom+65550)
	copy(buf[headroom:], frame)
	c := &collector{tb: e.tb}
	p := &forward.Packet{Buf: buf, Off: headroom, Len: len(frame), Emit: c}
	v := e.w.Process(p)
	if v == forward.Transmit {
		c.frames = append(c.frames, append([]byte(nil), p.Frame()...))
	} else if v != forward.Held && len(c.frames) > 0 {
		e.tb.Errorf("verdict %v after %d emitted frames", v, len(c.frames))
	}
	return v, c.frames
}

// ipOfFrame returns the IP packet of a frame.
func ipOfFrame(link forward.Framing, f []byte) []byte { return ipOf(link, f) }

// udpDatagram returns a UDP datagram with n bytes of payload as an IP packet.
func udpDatagram(tb testing.TB, src, dst netip.AddrPort, n int) []byte {
	tb.Helper()
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*7 + i/251)
	}
	return ipOf(forward.IP, pkt{link: forward.IP, proto: lvs.UDP, src: src, dst: dst, payload: string(payload)}.build(tb))
}

// fragEnv is a forwarder with a UDP service on port 53 of each VIP, NAT,
// DR or TUN.
func fragEnv(tb testing.TB, link forward.Framing, m lvs.Method) *env {
	d4, d6 := rs(rip4, 5353, m), rs(rip6, 5353, m)
	if m != lvs.NAT {
		d4, d6 = rs(rip4, 53, m), rs(rip6, 53, m)
	}
	return newEnv(tb, envOpts{link: link},
		svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: d4, tunSrc: dip4},
		svcSpec{vip: vip6, port: 53, proto: lvs.UDP, dest: d6, tunSrc: dip6})
}

// TestFragmentsForwarded sends a 4000-byte UDP datagram in 3 fragments
// (1480, 1480 and the rest of data; in every order) to a VIP, NAT, DR and
// TUN, IPv4 and IPv6, and a NAT real server's 4000-byte reply in fragments
// back. The first two fragments are held; the last one completes the
// datagram, which leaves as fragments cut where the received ones were
// (NAT, DR: the kernel's ip_do_fragment fast path), or, TUN, inside an
// outer packet sent in fragments. The fragments out reassemble into the
// datagram the method makes of the one sent in.
func TestFragmentsForwarded(t *testing.T) {
	orders := map[string][]int{"in order": {0, 1, 2}, "reversed": {2, 1, 0}, "last first": {2, 0, 1}}
	for _, link := range []forward.Framing{forward.Ethernet, forward.IP} {
		for _, m := range []lvs.Method{lvs.NAT, lvs.DR, lvs.TUN} {
			if m == lvs.DR && link == forward.IP {
				continue
			}
			for _, v6 := range []bool{false, true} {
				for oname, order := range orders {
					name := fmt.Sprintf("%v/%v/v6=%v/%s", link, m, v6, oname)
					t.Run(name, func(t *testing.T) { testFragmentsForwarded(t, link, m, v6, order) })
				}
			}
		}
	}
}

func testFragmentsForwarded(t *testing.T, link forward.Framing, m lvs.Method, v6 bool, order []int) {
	e := fragEnv(t, link, m)
	cli, vip, rip := cli4, vip4, rip4
	if v6 {
		cli, vip, rip = cli6, vip6, rip6
	}
	in := udpDatagram(t, ap(cli, 40000), ap(vip, 53), 4000-8)
	sizes := []int{1480, 1480}
	if v6 {
		sizes = []int{1448, 1448}
		if m == lvs.TUN {
			// Fragments that fit the tunnel (1460 bytes of inner packet):
			// a bigger one gets packet-too-big (TestTUN6TooBig).
			sizes = []int{1408, 1408}
		}
	}
	frs := fragIP(in, sizes, 0xabcd1234)
	if len(frs) != 3 {
		t.Fatalf("%d fragments", len(frs))
	}
	before := e.f.Counters()
	var out [][]byte
	for i, k := range order {
		v, frames := e.processFrag(frame(link, dirMAC, cliMAC, frs[k]))
		if i < len(order)-1 {
			if v != forward.Held || len(frames) != 0 {
				t.Fatalf("fragment %d: verdict %v with %d frames, want held", k, v, len(frames))
			}
			continue
		}
		if v != forward.Transmit {
			t.Fatalf("last fragment: verdict %v (drop reason %v), want transmit", v, e.dropReason(before))
		}
		out = frames
	}
	c := e.f.Counters()
	if c.FragsHeld-before.FragsHeld != 2 || c.Reassembled-before.Reassembled != 1 || c.ForwardedIn-before.ForwardedIn != 1 {
		t.Errorf("counters: held %d reassembled %d forwarded %d, want 2 1 1", c.FragsHeld-before.FragsHeld,
			c.Reassembled-before.Reassembled, c.ForwardedIn-before.ForwardedIn)
	}
	var ips [][]byte
	for _, f := range out {
		if link == forward.Ethernet && !bytes.Equal(f[0:6], rsMAC[:]) {
			t.Errorf("frame to %x, want the real server's MAC", f[0:6])
		}
		ip := ipOfFrame(link, f)
		if len(ip) > 1500 {
			t.Errorf("a %d-byte packet leaves a 1500-byte link", len(ip))
		}
		ips = append(ips, ip)
	}
	// The datagram as the method makes it: its TTL or hop limit
	// decremented (IPVS's decrement_ttl, in every method), and more.
	want := ttlDecremented(t, forward.IP, in)
	switch m {
	case lvs.NAT:
		// The destination becomes the real server.
		if v6 {
			copy(want[24:40], rip.AsSlice())
		} else {
			copy(want[16:20], rip.AsSlice())
			fixIPv4(want)
		}
		l4 := l4Of(want)
		binary.BigEndian.PutUint16(l4[2:], 5353)
		l4[6], l4[7] = 0, 0
		binary.BigEndian.PutUint16(l4[6:], ^fold(onesSum(l4, pseudoSum(want))))
	case lvs.TUN:
		// Outer fragments from the DIP (IPv4 in IPv4, IPv6 in IPv6);
		// inside, the datagram as sent.
		outer := refReasm(t, ips)
		src, proto, inner := netip.AddrFrom4([4]byte(outer[12:16])), outer[9], outer[20:]
		if v6 {
			src, proto, inner = netip.AddrFrom16([16]byte(outer[8:24])), outer[6], outer[40:]
		}
		if want := map[bool]netip.Addr{false: dip4, true: dip6}[v6]; src != want || proto != map[bool]byte{false: 4, true: 41}[v6] {
			t.Fatalf("outer packet from %v protocol %d", src, proto)
		}
		if !bytes.Equal(inner, want) {
			t.Errorf("inner packet differs from the datagram sent")
		}
		return
	}
	if len(ips) != 3 {
		t.Fatalf("%d fragments out, want 3 (as received)", len(ips))
	}
	for i, ip := range ips {
		f := parseRefFrag(t, ip)
		if len(f.data) != len(parseRefFrag(t, frs[i]).data) {
			t.Errorf("fragment %d out carries %d bytes, the one received %d", i, len(f.data), len(parseRefFrag(t, frs[i]).data))
		}
		if m == lvs.DR && !v6 && !bytes.Equal(ip, ttlDecremented(t, forward.IP, frs[i])) {
			t.Errorf("DR fragment %d differs from the one received (TTL decremented)", i)
		}
	}
	got := refReasm(t, ips)
	checkSums(t, got)
	if !bytes.Equal(got, want) {
		t.Errorf("reassembled datagram out differs:\n got %x\nwant %x", got[:48], want[:48])
	}
}

// TestFragmentsNATReply: a NAT real server's 4000-byte reply in fragments
// leaves, reassembled and rewritten (source VIP:53), in fragments to the
// client's MAC.
func TestFragmentsNATReply(t *testing.T) {
	for _, link := range []forward.Framing{forward.Ethernet, forward.IP} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/v6=%v", link, v6), func(t *testing.T) {
				e := fragEnv(t, link, lvs.NAT)
				cli, vip, rip := cli4, vip4, rip4
				if v6 {
					cli, vip, rip = cli6, vip6, rip6
				}
				q := udpDatagram(t, ap(cli, 40000), ap(vip, 53), 20)
				if v, _ := e.processFrag(frame(link, dirMAC, cliMAC, q)); v != forward.Transmit {
					t.Fatalf("query: verdict %v", v)
				}
				reply := udpDatagram(t, ap(rip, 5353), ap(cli, 40000), 4000-8)
				frs := fragIP(reply, []int{1448, 1448}, 7)
				var out [][]byte
				for i, f := range frs {
					v, frames := e.processFrag(frame(link, dirMAC, rsMAC, f))
					if want := map[bool]forward.Verdict{false: forward.Held, true: forward.Transmit}[i == len(frs)-1]; v != want {
						t.Fatalf("fragment %d: verdict %v, want %v", i, v, want)
					}
					out = frames
				}
				if len(out) != 3 {
					t.Fatalf("%d frames out, want 3", len(out))
				}
				var ips [][]byte
				for _, f := range out {
					if link == forward.Ethernet && !bytes.Equal(f[0:6], cliMAC[:]) {
						t.Errorf("reply fragment to %x, want the client's MAC", f[0:6])
					}
					ips = append(ips, ipOfFrame(link, f))
				}
				got := refReasm(t, ips)
				checkSums(t, got)
				s := summarize(t, forward.IP, got)
				if s.Src != ap(vip, 53).String() || s.Dst != ap(cli, 40000).String() || len(s.Payload) != 4000-8 {
					t.Errorf("reply %s -> %s, %d bytes", s.Src, s.Dst, len(s.Payload))
				}
			})
		}
	}
}

// TestFragmentsToStack: fragments of a datagram for the director itself
// are reassembled too, and the netstack gets the whole datagram.
func TestFragmentsToStack(t *testing.T) {
	e := fragEnv(t, forward.Ethernet, lvs.NAT)
	in := udpDatagram(t, ap(cli4, 40000), ap(dip4, 9999), 3000)
	frs := fragIP(in, []int{1480}, 0)
	if v, _ := e.process(frame(forward.Ethernet, dirMAC, cliMAC, frs[0]), forward.VNetHdr{}); v != forward.Held {
		t.Fatalf("first fragment: %v", v)
	}
	buf := make([]byte, headroom+4000)
	f := frame(forward.Ethernet, dirMAC, cliMAC, frs[1])
	copy(buf[headroom:], f)
	p := &forward.Packet{Buf: buf, Off: headroom, Len: len(f)}
	if v := e.w.Process(p); v != forward.ToStack {
		t.Fatalf("last fragment: %v", v)
	}
	if got := ipOf(forward.Ethernet, p.Frame()); !bytes.Equal(got, in) {
		t.Errorf("the netstack gets %d bytes, not the datagram", len(got))
	}
}

// TestFragmentRefragment: fragments bigger than the link's MTU (a sender
// behind a bigger MTU) leave cut to fit: 1480 bytes of data, multiples of 8.
// IPv4 options not to be copied become no-operations after the first
// fragment.
func TestFragmentRefragment(t *testing.T) {
	e := newEnv(t, envOpts{link: forward.Ethernet, mtu: 1500},
		svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: rs(rip4, 53, lvs.DR)})
	in := udpDatagram(t, ap(cli4, 40000), ap(vip4, 53), 6000)
	frs := fragIP(in, []int{4000}, 0)
	for i, f := range frs {
		v, out := e.processFrag(frame(forward.Ethernet, dirMAC, cliMAC, f))
		if i == 0 {
			if v != forward.Held {
				t.Fatalf("first: %v", v)
			}
			continue
		}
		if v != forward.Transmit || len(out) != 5 {
			t.Fatalf("verdict %v, %d frames; want transmit, 5", v, len(out))
		}
		var ips [][]byte
		for j, o := range out {
			ip := ipOf(forward.Ethernet, o)
			rf := parseRefFrag(t, ip)
			if j < 4 && len(rf.data) != 1480 {
				t.Errorf("fragment %d carries %d bytes, want 1480", j, len(rf.data))
			}
			ips = append(ips, ip)
		}
		if got := refReasm(t, ips); !bytes.Equal(got, ttlDecremented(t, forward.IP, in)) {
			t.Errorf("reassembled output differs from the datagram (TTL decremented)")
		}
	}

	// Options: a copied one (0x94, router alert) stays, a not-copied one
	// (0x07, record route) becomes no-operations after the first fragment.
	opt := []byte{0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 0}
	ip := append(append(append([]byte(nil), in[:20]...), opt...), in[20:]...)
	ip[0] = 0x48
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	fixIPv4(ip)
	var ffs [][]byte
	for off := 0; off < len(ip)-32; off += 1456 {
		n := min(1456, len(ip)-32-off)
		f := append(append([]byte(nil), ip[:32]...), ip[32+off:32+off+n]...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		fo := uint16(off / 8)
		if off+n < len(ip)-32 {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], fo)
		fixIPv4(f)
		ffs = append(ffs, f)
	}
	var out [][]byte
	for _, f := range ffs {
		_, out = e.processFrag(frame(forward.Ethernet, dirMAC, cliMAC, f))
	}
	if len(out) != len(ffs) {
		t.Fatalf("%d fragments out, %d in", len(out), len(ffs))
	}
	for j, o := range out {
		h := ipOf(forward.Ethernet, o)[20:32]
		want := opt
		if j > 0 {
			want = []byte{0x94, 4, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0}
		}
		if !bytes.Equal(h, want) {
			t.Errorf("fragment %d options % x, want % x", j, h, want)
		}
	}
}

// TestFragmentErrors checks the kernel's rules for bad fragments, each
// dropped and counted by reason: overlap (the whole datagram discarded,
// RFC 5722, as the kernel does for IPv4 too), duplicate (dropped alone, the
// datagram completes), timeout (30 s IPv4, 60 s IPv6), a second last
// fragment ending elsewhere, an IPv6 fragment not a multiple of 8 long, and
// a mix of ECN-capable and not-ECT fragments.
func TestFragmentErrors(t *testing.T) {
	type step struct {
		frag    int // index into the fragments, or -1 for the clock
		advance time.Duration
		want    forward.Verdict
		reason  forward.DropReason
		count   uint64 // frames counted with the reason (held ones too)
	}
	in4 := udpDatagram(t, ap(cli4, 40000), ap(vip4, 53), 3000)
	in6 := udpDatagram(t, ap(cli6, 40000), ap(vip6, 53), 3000)
	f4 := fragIP(in4, []int{1480}, 0)                    // [0,1480) [1480,3008)
	f6 := fragIP(in6, []int{1448}, 9)                    // [0,1448) [1448,3008)
	ov4 := fragIP(in4, []int{1000}, 0)                   // [0,1000) [1000,3008): overlaps f4[1]
	ov6 := fragIP(in6, []int{1000}, 9)                   //
	odd6 := append([]byte(nil), f6[0][:len(f6[0])-1]...) // 1447 bytes, M set
	binary.BigEndian.PutUint16(odd6[4:], uint16(len(odd6)-40))
	ect := append([]byte(nil), f4[0]...)
	ect[1] |= 2 // ECT(0)
	fixIPv4(ect)
	shortLast := append([]byte(nil), f4[1][:len(f4[1])-8]...)
	binary.BigEndian.PutUint16(shortLast[2:], uint16(len(shortLast)))
	fixIPv4(shortLast)
	tests := []struct {
		name  string
		frags [][]byte
		steps []step
	}{
		{name: "ipv4 overlap", frags: [][]byte{f4[1], ov4[1], f4[0]}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: 1, want: forward.Drop, reason: forward.DropFragOverlap, count: 2},
			{frag: 2, want: forward.Held}, // a new datagram
		}},
		{name: "ipv6 overlap", frags: [][]byte{f6[0], ov6[1]}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: 1, want: forward.Drop, reason: forward.DropFragOverlap, count: 2},
		}},
		{name: "ipv4 duplicate", frags: [][]byte{f4[0], f4[0], f4[1]}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: 1, want: forward.Drop, reason: forward.DropFragDup, count: 1},
			{frag: 2, want: forward.Transmit},
		}},
		{name: "ipv4 timeout", frags: [][]byte{f4[0], f4[1]}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: -1, advance: 30 * time.Second},
			{frag: 1, want: forward.Held, reason: forward.DropFragTimeout, count: 1},
		}},
		{name: "ipv4 within timeout", frags: [][]byte{f4[0], f4[1]}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: -1, advance: 29 * time.Second},
			{frag: 1, want: forward.Transmit},
		}},
		{name: "ipv6 timeout", frags: [][]byte{f6[0], f6[1]}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: -1, advance: 59 * time.Second},
			{frag: -1, advance: time.Second},
			{frag: 1, want: forward.Held, reason: forward.DropFragTimeout, count: 1},
		}},
		{name: "ipv4 second last fragment ends elsewhere", frags: [][]byte{f4[1], shortLast}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: 1, want: forward.Drop, reason: forward.DropFragment, count: 2},
		}},
		{name: "ipv6 fragment not a multiple of 8", frags: [][]byte{f6[1], odd6}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: 1, want: forward.Drop, reason: forward.DropFragment, count: 2},
		}},
		{name: "ecn mix", frags: [][]byte{ect, f4[1]}, steps: []step{
			{frag: 0, want: forward.Held},
			{frag: 1, want: forward.Drop, reason: forward.DropFragment, count: 2},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := fragEnv(t, forward.Ethernet, lvs.DR)
			for i, s := range tc.steps {
				if s.frag < 0 {
					e.clk.advance(s.advance)
					continue
				}
				before := e.f.Counters()
				v, _ := e.processFrag(frame(forward.Ethernet, dirMAC, cliMAC, tc.frags[s.frag]))
				if v != s.want {
					t.Fatalf("step %d: verdict %v (drop reason %v), want %v", i, v, e.dropReason(before), s.want)
				}
				after := e.f.Counters()
				if s.reason != forward.DropNone {
					if got := after.Drops[s.reason] - before.Drops[s.reason]; got != s.count {
						t.Errorf("step %d: %d frames counted %v, want %d", i, got, s.reason, s.count)
					}
				} else if after.Dropped() != before.Dropped() {
					t.Errorf("step %d: drop counted (%v)", i, e.dropReason(before))
				}
			}
			if _, held := e.f.FragMemory(); held != 0 && tc.steps[len(tc.steps)-1].want != forward.Held {
				t.Errorf("%d bytes of fragments still held", held)
			}
		})
	}
}

// TestFragmentFlood sends 20000 first fragments of 1480 bytes with random
// IDs (30 MB, as a flood of incomplete datagrams would) from random
// sources: the fragments held never exceed the 4 MiB bound
// (DefaultFragMemory), the excess is dropped as frag-limit, the heap does
// not grow by more than the memory set aside at New, and none of it
// allocates. After the timeout the memory is free again and a datagram
// completes.
func TestFragmentFlood(t *testing.T) {
	e := fragEnv(t, forward.Ethernet, lvs.DR)
	reserved, _ := e.f.FragMemory()
	t.Logf("reassembly memory set aside: %d bytes (%d of fragments)", reserved, forward.DefaultFragMemory)
	if reserved > forward.DefaultFragMemory*3/2 {
		t.Errorf("reassembly sets aside %d bytes", reserved)
	}
	in := udpDatagram(t, ap(cli4, 40000), ap(vip4, 53), 3000)
	base := fragIP(in, []int{1480}, 0)[0]
	fr := frame(forward.Ethernet, dirMAC, cliMAC, base)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, headroom+len(fr)+16)
	p := &forward.Packet{}
	send := func() forward.Verdict {
		copy(buf[headroom:], fr)
		ip := buf[headroom+14:]
		binary.BigEndian.PutUint16(ip[4:], uint16(rng.Uint32()))
		binary.BigEndian.PutUint32(ip[12:], 0xc6120000|rng.Uint32()&0xffff) // any source
		fixIPv4(ip)
		*p = forward.Packet{Buf: buf, Off: headroom, Len: len(fr)}
		return e.w.Process(p)
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	held, limited := 0, 0
	maxHeld := 0
	for range 20000 {
		switch v := send(); v {
		case forward.Held:
			held++
		case forward.Drop:
			limited++
		default:
			t.Fatalf("verdict %v", v)
		}
		if _, h := e.f.FragMemory(); h > maxHeld {
			maxHeld = h
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	t.Logf("held %d, dropped %d, at most %d bytes held; heap %d -> %d", held, limited, maxHeld, ms0.HeapAlloc, ms1.HeapAlloc)
	if maxHeld > forward.DefaultFragMemory {
		t.Errorf("%d bytes of fragments held, bound %d", maxHeld, forward.DefaultFragMemory)
	}
	if c := e.f.Counters(); c.Drops[forward.DropFragLimit] != uint64(limited) || limited == 0 {
		t.Errorf("frag-limit drops %d, dropped %d", c.Drops[forward.DropFragLimit], limited)
	}
	if grew := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc); grew > 1<<20 {
		t.Errorf("the heap grew by %d bytes during the flood", grew)
	}
	if n := testing.AllocsPerRun(200, func() { send() }); n != 0 {
		t.Errorf("%v allocations per fragment", n)
	}

	e.clk.advance(31 * time.Second)
	frs := fragIP(in, []int{1480, 1480}, 0)
	if v, _ := e.processFrag(frame(forward.Ethernet, dirMAC, cliMAC, frs[0])); v != forward.Held {
		t.Fatalf("after the timeout, a first fragment: %v", v)
	}
	if c := e.f.Counters(); c.Drops[forward.DropFragTimeout] != uint64(held) {
		t.Errorf("%d frag-timeout drops after the timeout, want the %d held", c.Drops[forward.DropFragTimeout], held)
	}
	e.processFrag(frame(forward.Ethernet, dirMAC, cliMAC, frs[1]))
	if v, out := e.processFrag(frame(forward.Ethernet, dirMAC, cliMAC, frs[2])); v != forward.Transmit || len(out) != 3 {
		t.Errorf("after the timeout, the datagram: %v, %d frames", v, len(out))
	}
	if _, h := e.f.FragMemory(); h != 0 {
		t.Errorf("%d bytes still held", h)
	}
}

// TestFragmentAllocs: reassembling and forwarding a fragmented datagram
// allocates nothing, in every method.
func TestFragmentAllocs(t *testing.T) {
	for _, m := range []lvs.Method{lvs.NAT, lvs.DR, lvs.TUN} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/v6=%v", m, v6), func(t *testing.T) {
				e := fragEnv(t, forward.Ethernet, m)
				cli, vip := cli4, vip4
				if v6 {
					cli, vip = cli6, vip6
				}
				frs := fragIP(udpDatagram(t, ap(cli, 40000), ap(vip, 53), 4000), []int{1448, 1448}, 3)
				var frames [][]byte
				for _, f := range frs {
					frames = append(frames, frame(forward.Ethernet, dirMAC, cliMAC, f))
				}
				buf := make([]byte, 256+4096)
				em := &countEmitter{}
				p := &forward.Packet{}
				run := func() {
					for i, f := range frames {
						copy(buf[256:], f)
						*p = forward.Packet{Buf: buf, Off: 256, Len: len(f), Emit: em}
						v := e.w.Process(p)
						if (i == len(frames)-1) != (v == forward.Transmit) {
							t.Fatalf("fragment %d: %v", i, v)
						}
					}
				}
				run()
				if n := testing.AllocsPerRun(100, run); n != 0 {
					t.Errorf("%v allocations per datagram", n)
				}
			})
		}
	}
}

type countEmitter struct{ n int }

func (c *countEmitter) Emit(buf []byte, off, n int) error { c.n++; return nil }

// TestIPv6ExtensionHeaders: a packet to a virtual service with extension
// headers before TCP or UDP is forwarded as IPVS forwards it (ipv6_find_hdr
// skips hop-by-hop, routing, destination options, AH and an atomic fragment
// header), its L4 header found after them and rewritten with a valid
// checksum; ESP and no-next-header stop the walk (the netstack's); a header
// running past the packet is dropped.
func TestIPv6ExtensionHeaders(t *testing.T) {
	hbh := []byte{0, 0, 1, 4, 0, 0, 0, 0}            // hop-by-hop: PadN
	dst := []byte{0, 0, 1, 4, 0, 0, 0, 0}            // destination options: PadN
	rth := []byte{0, 0, 0, 0, 0, 0, 0, 0}            // routing: type 0, segments left 0
	ah := []byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1} // AH: 12 bytes (payload len 1)
	atomic := []byte{0, 0, 0, 0, 0, 0, 0, 42}        // fragment header, offset 0, M clear
	type hdr struct {
		typ  uint8
		body []byte
	}
	tests := []struct {
		name   string
		hdrs   []hdr
		want   forward.Verdict
		reason forward.DropReason
	}{
		{name: "hop-by-hop", hdrs: []hdr{{0, hbh}}, want: forward.Transmit},
		{name: "hop-by-hop, routing, destination options", hdrs: []hdr{{0, hbh}, {43, rth}, {60, dst}}, want: forward.Transmit},
		{name: "authentication header", hdrs: []hdr{{51, ah}}, want: forward.Transmit},
		{name: "atomic fragment", hdrs: []hdr{{44, atomic}}, want: forward.Transmit},
		{name: "esp", hdrs: []hdr{{50, nil}}, want: forward.ToStack},
		{name: "no next header", hdrs: []hdr{{59, nil}}, want: forward.ToStack},
		{name: "truncated", hdrs: []hdr{{60, []byte{0, 9, 0, 0, 0, 0, 0, 0}}}, want: forward.Drop, reason: forward.DropTruncated},
	}
	for _, tc := range tests {
		for _, l4 := range []lvs.Proto{lvs.TCP, lvs.UDP} {
			t.Run(fmt.Sprintf("%s/%v", tc.name, l4), func(t *testing.T) {
				e := newEnv(t, envOpts{},
					svcSpec{vip: vip6, port: 443, proto: lvs.TCP, dest: rs(rip6, 8443, lvs.NAT)},
					svcSpec{vip: vip6, port: 443, proto: lvs.UDP, dest: rs(rip6, 8443, lvs.NAT)})
				plain := ipOf(forward.IP, pkt{link: forward.IP, proto: l4, flags: syn, src: ap(cli6, 40000), dst: ap(vip6, 443), payload: "hello"}.build(t))
				// Insert the headers between the fixed header and L4.
				ip := append([]byte(nil), plain[:40]...)
				next := plain[6]
				var chain []byte
				for i := len(tc.hdrs) - 1; i >= 0; i-- {
					h := append([]byte(nil), tc.hdrs[i].body...)
					if len(h) > 0 {
						h[0] = next
					}
					chain = append(h, chain...)
					next = tc.hdrs[i].typ
				}
				ip[6] = next
				ip = append(append(ip, chain...), plain[40:]...)
				binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
				before := e.f.Counters()
				v, out := e.processFrag(frame(forward.Ethernet, dirMAC, cliMAC, ip))
				if v != tc.want {
					t.Fatalf("verdict %v (drop reason %v), want %v", v, e.dropReason(before), tc.want)
				}
				if v == forward.Drop {
					if r := e.dropReason(before); r != tc.reason {
						t.Errorf("drop reason %v, want %v", r, tc.reason)
					}
				}
				if v != forward.Transmit {
					return
				}
				got := ipOf(forward.Ethernet, out[0])
				if !bytes.Equal(got[40:40+len(chain)], chain) {
					t.Errorf("extension headers changed")
				}
				seg := got[40+len(chain):]
				if netip.AddrFrom16([16]byte(got[24:40])) != rip6 || binary.BigEndian.Uint16(seg[2:4]) != 8443 {
					t.Errorf("not rewritten to the real server: %x", got[24:40])
				}
				ps := onesSum(got[8:40], uint32(l4)+uint32(len(seg)))
				if s := fold(onesSum(seg, ps)); s != 0xffff {
					t.Errorf("L4 checksum invalid after the extension headers (sum %#x)", s)
				}
				if !strings.HasSuffix(string(seg), "hello") {
					t.Errorf("payload lost")
				}
			})
		}
	}
}

// FuzzReassembly feeds fragments cut from two datagrams (IPv4 and IPv6,
// UDP to a DR service) at fuzzed offsets and lengths, with fuzzed "more"
// flags, identifications and clock jumps, in fuzzed order. Invariants: no
// panic; the fragments held never exceed the memory bound; whatever is
// forwarded is fragments that reassemble into exactly the datagram they were
// cut from (overlaps, duplicates and inconsistent lengths never produce a
// datagram of mixed or missing bytes).
func FuzzReassembly(f *testing.F) {
	// 3 bytes a fragment: offset/8, length/8-1, flags (1: flip "more",
	// 2: IPv6, 4-8: identification, 16: advance the clock past the
	// timeout).
	f.Add([]byte{0, 184, 0, 185, 184, 0, 114, 184, 0})                 // in order, IPv4
	f.Add([]byte{114, 184, 2, 0, 180, 2, 181, 184, 2})                 // reversed, IPv6
	f.Add([]byte{0, 184, 0, 100, 184, 0, 185, 184, 0})                 // overlap
	f.Add([]byte{0, 184, 0, 0, 184, 0, 185, 184, 16, 0, 184, 0})       // duplicate, timeout
	f.Add([]byte{0, 184, 1, 185, 184, 1, 0, 3, 4, 8, 3, 4, 200, 0, 8}) // flipped flags, small ones
	e := fragEnv(f, forward.Ethernet, lvs.DR)
	base := map[bool][]byte{
		false: udpDatagram(f, ap(cli4, 40000), ap(vip4, 53), 2100),
		true:  udpDatagram(f, ap(cli6, 40000), ap(vip6, 53), 2100),
	}
	f.Fuzz(func(t *testing.T, spec []byte) { fuzzReassembly(t, e, base, spec) })
}

func fuzzReassembly(t *testing.T, e *env, base map[bool][]byte, spec []byte) {
	e.tb = t
	buf := make([]byte, headroom+65550)
	c := &collector{tb: t}
	p := &forward.Packet{}
	{
		for i := 0; i+3 <= len(spec) && i < 3*64; i += 3 {
			v6 := spec[i+2]&2 != 0
			if spec[i+2]&16 != 0 {
				e.clk.advance(61 * time.Second)
			}
			ip := base[v6]
			hl := 20
			if v6 {
				hl = 40
			}
			data := len(ip) - hl
			off := min(int(spec[i])*8, data-8)
			end := min(off+(int(spec[i+1])+1)*8, data)
			more := end < data
			if spec[i+2]&1 != 0 {
				more = !more
			}
			id := uint32(spec[i+2] >> 2 & 3)
			var fr []byte
			if v6 {
				fr = append(append([]byte(nil), ip[:40]...), make([]byte, 8)...)
				fr[6], fr[40] = 44, ip[6]
				fo := uint16(off)
				if more {
					fo |= 1
				}
				binary.BigEndian.PutUint16(fr[42:], fo)
				binary.BigEndian.PutUint32(fr[44:], id)
				fr = append(fr, ip[hl+off:hl+end]...)
				binary.BigEndian.PutUint16(fr[4:], uint16(len(fr)-40))
			} else {
				fr = append(append([]byte(nil), ip[:20]...), ip[hl+off:hl+end]...)
				binary.BigEndian.PutUint16(fr[2:], uint16(len(fr)))
				binary.BigEndian.PutUint16(fr[4:], uint16(id))
				fo := uint16(off / 8)
				if more {
					fo |= 0x2000
				}
				binary.BigEndian.PutUint16(fr[6:], fo)
				fixIPv4(fr)
			}
			fr = frame(forward.Ethernet, dirMAC, cliMAC, fr)
			copy(buf[headroom:], fr)
			c.frames = c.frames[:0]
			*p = forward.Packet{Buf: buf, Off: headroom, Len: len(fr), Emit: c}
			v := e.w.Process(p)
			out := append(c.frames, p.Frame())
			if _, held := e.f.FragMemory(); held > forward.DefaultFragMemory {
				t.Fatalf("%d bytes held", held)
			}
			if v != forward.Transmit {
				continue
			}
			var ips [][]byte
			for _, o := range out {
				ips = append(ips, ipOf(forward.Ethernet, o))
			}
			if got := refReasm(t, ips); !bytes.Equal(got[hl:], ip[hl:]) {
				t.Fatalf("forwarded a datagram that differs from the one cut (v6 %v)", v6)
			}
		}
	}
}

// BenchmarkReassembly measures a 4000-byte UDP datagram in 3 fragments,
// reassembled, NAT-rewritten and sent in 3 fragments again (per datagram).
func BenchmarkReassembly(b *testing.B) {
	e := fragEnv(b, forward.Ethernet, lvs.NAT)
	frs := fragIP(udpDatagram(b, ap(cli4, 40000), ap(vip4, 53), 4000), []int{1480, 1480}, 0)
	var frames [][]byte
	for _, f := range frs {
		frames = append(frames, frame(forward.Ethernet, dirMAC, cliMAC, f))
	}
	buf := make([]byte, 256+4096)
	em := &countEmitter{}
	p := &forward.Packet{}
	b.ReportAllocs()
	b.SetBytes(4028)
	for b.Loop() {
		for _, f := range frames {
			copy(buf[256:], f)
			*p = forward.Packet{Buf: buf, Off: 256, Len: len(f), Emit: em}
			e.w.Process(p)
		}
	}
}
