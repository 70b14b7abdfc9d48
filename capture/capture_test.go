package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func TestParseFilter(t *testing.T) {
	tests := []struct {
		in      string
		want    Filter
		wantErr string
	}{
		{in: "", want: Filter{}},
		{in: "tcp", want: Filter{Proto: 6}},
		{in: "udp and port 53", want: Filter{Proto: 17, Ports: []uint16{53}}},
		{in: "host 192.0.2.1 port 80 tcp", want: Filter{Proto: 6, Hosts: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Ports: []uint16{80}}},
		{in: "host 2001:db8::1", want: Filter{Hosts: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}},
		{in: "tcp and hots 192.0.2.1", wantErr: `filter: "hots" (word 3): unknown word`},
		{in: "host 192.0.2.300", wantErr: `filter: "192.0.2.300" (word 2): not an IP address`},
		{in: "port 70000", wantErr: `filter: "70000" (word 2): not a port`},
		{in: "port", wantErr: `filter: "port" (word 1): needs a value`},
		{in: "and tcp", wantErr: `filter: "and" (word 1)`},
		{in: "tcp and", wantErr: `filter: "and" (word 2)`},
		{in: "tcp udp", wantErr: `filter: "udp" (word 2): a second protocol`},
		{in: "icmp port 80", wantErr: `filter: word 3: port with a protocol that has no ports`},
	}
	for _, tt := range tests {
		got, err := ParseFilter(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("ParseFilter(%q) error %v, want prefix %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tt.in, err)
			continue
		}
		got.text, tt.want.text = "", ""
		if got.Proto != tt.want.Proto || !equalAddrs(got.Hosts, tt.want.Hosts) || !equalPorts(got.Ports, tt.want.Ports) {
			t.Errorf("ParseFilter(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalPorts(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// frame builds an Ethernet (or bare IP) frame of a TCP or UDP packet
// between 192.0.2.x addresses, optionally inside IPIP.
func frame(t testing.TB, ethernet bool, proto layers.IPProtocol, src, dst string, sport, dport uint16, ipip bool) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
	var l4 gopacket.SerializableLayer
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true}
		tcp.SetNetworkLayerForChecksum(ip)
		l4 = tcp
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		udp.SetNetworkLayerForChecksum(ip)
		l4 = udp
	default:
		l4 = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}
	}
	ls := []gopacket.SerializableLayer{ip, l4, gopacket.Payload("hello")}
	if ipip {
		outer := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolIPv4,
			SrcIP: netip.MustParseAddr("192.0.2.1").AsSlice(), DstIP: netip.MustParseAddr("192.0.2.99").AsSlice()}
		ls = append([]gopacket.SerializableLayer{outer}, ls...)
	}
	if ethernet {
		ls = append([]gopacket.SerializableLayer{&layers.Ethernet{
			SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}}, ls...)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMatch(t *testing.T) {
	tcp80 := frame(t, true, layers.IPProtocolTCP, "192.0.2.10", "192.0.2.100", 40000, 80, false)
	udp53 := frame(t, false, layers.IPProtocolUDP, "192.0.2.10", "192.0.2.100", 40000, 53, false)
	tunnelled := frame(t, true, layers.IPProtocolTCP, "192.0.2.10", "192.0.2.100", 40000, 80, true)
	arp := append(make([]byte, 12), 0x08, 0x06, 0, 1)
	inner := frame(t, false, layers.IPProtocolTCP, "192.0.2.10", "192.0.2.100", 40000, 80, false)
	outer := func(proto byte, payload []byte) []byte {
		b := append(make([]byte, 14+20), payload...)
		binary.BigEndian.PutUint16(b[12:], 0x0800)
		ip := b[14:]
		ip[0], ip[9] = 0x45, proto
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		copy(ip[12:], []byte{192, 0, 2, 1})
		copy(ip[16:], []byte{192, 0, 2, 99})
		return b
	}
	gre := outer(47, append([]byte{0x80, 0, 0x08, 0, 0, 0, 0, 0}, inner...))
	udp := []byte{0x9c, 0x40, 0x17, 0xc0, 0, 0, 0, 0}
	gue := outer(17, append(append(udp, 0, 4, 0, 0), inner...))
	notGUE := outer(17, append(append(udp, 0x20, 4, 0, 0), inner...))
	tests := []struct {
		filter   string
		frame    []byte
		ethernet bool
		want     bool
	}{
		{"", tcp80, true, true},
		{"", arp, true, true},
		{"tcp", arp, true, false},
		{"tcp", tcp80, true, true},
		{"udp", tcp80, true, false},
		{"tcp port 80", tcp80, true, true},
		{"port 40000", tcp80, true, true},
		{"port 81", tcp80, true, false},
		{"host 192.0.2.100 and host 192.0.2.10", tcp80, true, true},
		{"host 192.0.2.11", tcp80, true, false},
		{"udp port 53", udp53, false, true},
		{"udp port 53", udp53[:22], false, false},
		{"host 192.0.2.99", tunnelled, true, true}, // outer
		{"tcp port 80", tunnelled, true, true},     // inner
		{"icmp", tcp80, true, false},
		{"tcp", tcp80[:20], true, false},
		{"host 192.0.2.10", gre, true, true},     // inner, behind GRE with a checksum
		{"tcp port 80", gue, true, true},         // inner, behind UDP and GUE
		{"udp port 6080", gue, true, true},       // outer
		{"host 192.0.2.10", notGUE, true, false}, // a GUE control message: no inner
		{"host 192.0.2.10", gre[:14+20+3], true, false},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Match(tt.frame, tt.ethernet); got != tt.want {
			t.Errorf("filter %q on a %d-byte frame: %v, want %v", tt.filter, len(tt.frame), got, tt.want)
		}
	}
}

// TestFrameAllocs: offering a frame, matched or not, ring full or not,
// allocates nothing.
func TestFrameAllocs(t *testing.T) {
	f, _ := ParseFilter("tcp port 80")
	c := New([]Iface{{Name: "lvt0", Ethernet: true}}, Options{Filter: f, Slots: 4})
	fr := frame(t, true, layers.IPProtocolTCP, "192.0.2.10", "192.0.2.100", 40000, 80, false)
	other := frame(t, true, layers.IPProtocolUDP, "192.0.2.10", "192.0.2.100", 40000, 53, false)
	if n := testing.AllocsPerRun(1000, func() { c.Frame(0, false, fr); c.Frame(0, true, other) }); n != 0 {
		t.Errorf("Frame allocates %v times per call", n)
	}
	if c.Missed() == 0 {
		t.Errorf("a full ring missed nothing")
	}
}

// TestRingConcurrent: producers that outrun the consumer never block;
// every frame is either read once, whole, or counted missed.
func TestRingConcurrent(t *testing.T) {
	r := newRing(64, 16)
	const producers, each = 4, 20000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			b := make([]byte, 8)
			for i := range each {
				b[0], b[1], b[2] = byte(p), byte(i), byte(i>>8)
				r.put(p, b)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	got := 0
	bad := 0
	read := func(_ int64, iface, length int, data []byte) {
		got++
		if length != 8 || len(data) != 8 || int(data[0]) != iface {
			bad++
		}
	}
	for {
		if r.get(read) {
			continue
		}
		select {
		case <-done:
			for r.get(read) {
			}
			if bad != 0 {
				t.Errorf("%d frames read damaged", bad)
			}
			if total := uint64(got) + r.missed.Load(); total != producers*each {
				t.Errorf("read %d + missed %d = %d, want %d", got, r.missed.Load(), total, producers*each)
			}
			t.Logf("read %d, missed %d", got, r.missed.Load())
			return
		default:
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(b []byte) (int, error) {
	if f.n -= len(b); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(b), nil
}

// TestWriteTo: the stream is pcapng with an interface per direction, the
// frames as offered, and the statistics; a write error ends it.
func TestWriteTo(t *testing.T) {
	c := New([]Iface{{Name: "lvttap0", Ethernet: true}, {Name: "lvttun0"}}, Options{})
	in := frame(t, true, layers.IPProtocolTCP, "192.0.2.10", "192.0.2.100", 40000, 80, false)
	out := frame(t, false, layers.IPProtocolUDP, "192.0.2.10", "192.0.2.11", 40000, 53, false)
	c.Frame(0, false, in)
	c.Frame(1, true, out)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var b bytes.Buffer
	st, err := c.WriteTo(ctx, &b)
	if err != nil || st.Written != 2 {
		t.Fatalf("WriteTo: %+v, %v", st, err)
	}
	r, err := pcapgo.NewNgReader(&b, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		intf, _ := r.Interface(ci.InterfaceIndex)
		got = append(got, intf.Name+" "+intf.LinkType.String())
		want := in
		if ci.InterfaceIndex == 3 {
			want = out
		}
		if !bytes.Equal(data, want) {
			t.Errorf("frame on %s differs from the one offered", intf.Name)
		}
	}
	if strings.Join(got, ",") != "lvttap0 in Ethernet,lvttun0 out Raw" {
		t.Errorf("frames on %q", got)
	}
	if r.NInterfaces() != 4 {
		t.Errorf("%d interfaces, want 4", r.NInterfaces())
	}

	c.Frame(0, false, in)
	_, err = c.WriteTo(context.Background(), &failWriter{n: 300})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("WriteTo on a failing writer: %v, want its error", err)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "tcp", "udp and port 53", "host 192.0.2.1 and tcp port 80", "host 2001:db8::1", "and", "port", "icmp port 1"} {
		f.Add(s)
	}
	fr := frame(f, true, layers.IPProtocolTCP, "192.0.2.10", "192.0.2.100", 40000, 80, false)
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) || fe.Pos < 1 {
				t.Fatalf("error %v is not a FilterError with a position", err)
			}
			return
		}
		flt.Match(fr, true)
		flt.Match(fr[:30], false)
		// Parsing the filter's own text gives the same filter.
		again, err := ParseFilter(flt.String())
		if err != nil || again.Proto != flt.Proto || !equalAddrs(again.Hosts, flt.Hosts) || !equalPorts(again.Ports, flt.Ports) {
			t.Fatalf("%q: reparse of %q gives %+v, %v", s, flt.String(), again, err)
		}
	})
}

// BenchmarkFrame is the cost on a reader goroutine of a capture armed:
// a frame the filter rejects, and a matching frame when the ring is full
// (a slow reader) or has room.
func BenchmarkFrame(b *testing.B) {
	fr := frame(b, true, layers.IPProtocolTCP, "192.0.2.10", "192.0.2.100", 40000, 80, false)
	for _, bc := range []struct{ name, filter string }{{"nomatch", "udp"}, {"full", "tcp"}} {
		b.Run(bc.name, func(b *testing.B) {
			f, _ := ParseFilter(bc.filter)
			c := New([]Iface{{Name: "lvt0", Ethernet: true}}, Options{Filter: f, Slots: 16})
			b.ReportAllocs()
			for b.Loop() {
				c.Frame(0, false, fr)
			}
		})
	}
	b.Run("copy", func(b *testing.B) {
		c := New([]Iface{{Name: "lvt0", Ethernet: true}}, Options{Slots: 1024})
		b.ReportAllocs()
		for b.Loop() {
			c.Frame(0, false, fr)
			c.r.get(func(int64, int, int, []byte) {})
		}
	})
}
