package stack

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	tcpipstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/internal/pkttest"
	"github.com/lvsd/lvsd/lvs"
)

// The packet kit's hosts.
var (
	dirMAC    = pkttest.HW(pkttest.DirMAC)
	clientMAC = pkttest.HW(pkttest.CliMAC)
	dirIP     = net.IP(pkttest.DIP4.AsSlice())
	clientIP  = net.IP(pkttest.Cli4.AsSlice())
)

// newTestStack returns a netstack with one Ethernet NIC over a device.Mem
// holding 192.0.2.1/24, and no fast path.
func newTestStack(t *testing.T, proc func() Processor) *device.Mem {
	t.Helper()
	dev := device.NewMem(64)
	st := New(Options{})
	link := NewLink(LinkOptions{
		Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC), NewProcessor: proc,
	})
	if _, err := st.AddNIC(NICOptions{
		Name: "lvt0", Link: link, Ethernet: true,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	// The gratuitous ARP for 192.0.2.1 comes first (TestAnnounce checks
	// it); the tests here start after it.
	next(t, dev, layers.LayerTypeARP)
	return dev
}

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	return pkttest.Serialize(t, ls...)
}

func arpRequest(t *testing.T, target netip.Addr) []byte {
	return pkttest.ARPRequest(t, pkttest.CliMAC, pkttest.Cli4, target)
}

// next returns the next frame the director wrote that decodes to a packet
// with layer lt, skipping others (the netstack may send its own probes).
func next(t *testing.T, dev *device.Mem, lt gopacket.LayerType) gopacket.Packet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		b, err := dev.Next(ctx)
		if err != nil {
			t.Fatalf("no %v frame from the director: %v", lt, err)
		}
		p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
		if p.Layer(lt) != nil {
			return p
		}
	}
}

func TestLinkAnswersARPAndPing(t *testing.T) {
	dev := newTestStack(t, nil)

	dev.Inject(arpRequest(t, pkttest.DIP4))
	p := next(t, dev, layers.LayerTypeARP)
	arp := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	got := struct {
		Op      uint16
		SrcHW   string
		SrcProt string
		DstProt string
	}{arp.Operation, net.HardwareAddr(arp.SourceHwAddress).String(), net.IP(arp.SourceProtAddress).String(), net.IP(arp.DstProtAddress).String()}
	want := struct {
		Op      uint16
		SrcHW   string
		SrcProt string
		DstProt string
	}{layers.ARPReply, dirMAC.String(), "192.0.2.1", "192.0.2.10"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ARP reply (-want +got):\n%s", diff)
	}

	dev.Inject(serialize(t,
		&layers.Ethernet{SrcMAC: clientMAC, DstMAC: dirMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: clientIP, DstIP: dirIP},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		gopacket.Payload("ping"),
	))
	p = next(t, dev, layers.LayerTypeICMPv4)
	icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if icmp.TypeCode.Type() != layers.ICMPv4TypeEchoReply || icmp.Id != 7 || icmp.Seq != 1 ||
		!ip.DstIP.Equal(clientIP) || eth.DstMAC.String() != clientMAC.String() {
		t.Errorf("echo reply: got %v", p)
	}
}

// countingProc takes every IPv4 frame (transmits it back unchanged) and
// passes the rest to the stack, to show the fast path sees frames first.
type countingProc struct{ n *int }

func (c countingProc) Process(p *forward.Packet) forward.Verdict {
	f := p.Frame()
	if len(f) > 14 && f[12] == 0x08 && f[13] == 0x00 {
		*c.n++
		return forward.Transmit
	}
	return forward.ToStack
}

func TestLinkFastPathFirst(t *testing.T) {
	var n int
	dev := newTestStack(t, func() Processor { return countingProc{&n} })
	frame := serialize(t,
		&layers.Ethernet{SrcMAC: clientMAC, DstMAC: dirMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: clientIP, DstIP: dirIP},
		withNetwork(&layers.UDP{SrcPort: 1000, DstPort: 2000}, clientIP, dirIP),
		gopacket.Payload("x"),
	)
	dev.Inject(frame)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := dev.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(frame, got); diff != "" {
		t.Errorf("transmitted frame (-want +got):\n%s", diff)
	}
	if n != 1 {
		t.Errorf("fast path saw %d frames, want 1", n)
	}
}

func TestCompleteChecksum(t *testing.T) {
	// A UDP packet with a full checksum is the reference; the partial form
	// holds only the pseudo-header sum, as the kernel hands it over.
	full := serialize(t,
		&layers.Ethernet{SrcMAC: clientMAC, DstMAC: dirMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: clientIP, DstIP: dirIP},
		withNetwork(&layers.UDP{SrcPort: 1000, DstPort: 2000}, clientIP, dirIP),
		gopacket.Payload("hello, partial checksum"),
	)
	partial := append([]byte(nil), full...)
	const start, off = 14 + 20, 6
	// The pseudo-header sum, uncomplemented, in the checksum field.
	sum := pkttest.Fold(pkttest.PseudoSum(pkttest.IPOf(false, full)))
	partial[start+off], partial[start+off+1] = byte(sum>>8), byte(sum)
	h := forward.VNetHdr{Flags: forward.VirtioNetHdrFNeedsCsum, CsumStart: start, CsumOffset: off}
	if !completeChecksum(partial, &h, true) {
		t.Fatal("completeChecksum failed")
	}
	if diff := cmp.Diff(full, partial); diff != "" {
		t.Errorf("completed checksum differs from the reference (-want +got):\n%s", diff)
	}
	if h.Flags&forward.VirtioNetHdrFNeedsCsum != 0 {
		t.Error("NEEDS_CSUM still set")
	}
	short := partial[:start+4]
	if completeChecksum(short, &forward.VNetHdr{Flags: 1, CsumStart: start, CsumOffset: off}, true) {
		t.Error("completeChecksum accepted a frame shorter than its checksum field")
	}
}

func withNetwork(u *layers.UDP, src, dst net.IP) *layers.UDP {
	u.SetNetworkLayerForChecksum(&layers.IPv4{SrcIP: src, DstIP: dst, Protocol: layers.IPProtocolUDP})
	return u
}

// TestCompleteChecksumTUNv6 covers a TUN frame (no Ethernet header) whose
// IPv6 source address holds bytes that look like an Ethertype followed by an
// IPv4 version nibble: the frame's own link type, not a guess from its
// bytes, says where the IP header is.
func TestCompleteChecksumTUNv6(t *testing.T) {
	src, dst := net.ParseIP("2001:db8:86dd:4000:64::1"), net.ParseIP("2001:db8::2")
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	udp.SetNetworkLayerForChecksum(ip)
	full := serialize(t, ip, udp, gopacket.Payload("partial checksum over IPv6 on a TUN"))
	const start, off = 40, 6
	partial := append([]byte(nil), full...)
	// The pseudo-header sum, uncomplemented, in the checksum field.
	sum := pkttest.Fold(pkttest.PseudoSum(pkttest.IPOf(true, full)))
	partial[start+off], partial[start+off+1] = byte(sum>>8), byte(sum)
	h := forward.VNetHdr{Flags: forward.VirtioNetHdrFNeedsCsum, CsumStart: start, CsumOffset: off}
	if !completeChecksum(partial, &h, false) {
		t.Fatal("completeChecksum failed")
	}
	if diff := cmp.Diff(full, partial); diff != "" {
		t.Errorf("completed checksum differs from the reference (-want +got):\n%s", diff)
	}
}

// failingDevice fails every read with err, counting the calls.
type failingDevice struct {
	err   error
	reads atomic.Int64
	done  chan struct{}
	once  sync.Once
}

func (d *failingDevice) Read([]byte) (int, error) {
	select {
	case <-d.done:
		return 0, os.ErrClosed
	default:
	}
	d.reads.Add(1)
	return 0, d.err
}
func (d *failingDevice) Write(b []byte) (int, error) { return len(b), nil }
func (d *failingDevice) Close() error                { d.once.Do(func() { close(d.done) }); return nil }

func TestReaderErrors(t *testing.T) {
	t.Run("repeated error backs off", func(t *testing.T) {
		dev := &failingDevice{err: syscall.EAGAIN, done: make(chan struct{})}
		l := NewLink(LinkOptions{Devices: []device.Device{dev}, MTU: 1500})
		l.Attach(nopDispatcher{})
		time.Sleep(200 * time.Millisecond)
		l.Close()
		l.Wait()
		// Without back-off a failing read loops hundreds of thousands of
		// times in 200 ms; with it, a handful.
		if n := dev.reads.Load(); n > 50 {
			t.Errorf("%d reads in 200 ms of a failing device: the reader spins", n)
		}
		if l.Stats().RxErrors == 0 {
			t.Error("read errors not counted")
		}
	})
	t.Run("device gone stops the reader", func(t *testing.T) {
		dev := &failingDevice{err: syscall.EBADFD, done: make(chan struct{})}
		l := NewLink(LinkOptions{Devices: []device.Device{dev}, MTU: 1500})
		l.Attach(nopDispatcher{})
		stopped := make(chan struct{})
		go func() { l.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			t.Fatal("reader still running after EBADFD")
		}
		if n := dev.reads.Load(); n != 1 {
			t.Errorf("%d reads after EBADFD, want 1", n)
		}
		l.Close()
	})
}

type nopDispatcher struct{}

func (nopDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *tcpipstack.PacketBuffer) {}
func (nopDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *tcpipstack.PacketBuffer)    {}

func TestKeepNeighbors(t *testing.T) {
	dev := device.NewMem(64)
	st := New(Options{})
	link := NewLink(LinkOptions{Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC)})
	id, err := st.AddNIC(NICOptions{Name: "lvt0", Link: link, Ethernet: true,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	a := st.Neighbor(id, netip.MustParseAddr("192.0.2.21"))
	b := st.Neighbor(id, netip.MustParseAddr("192.0.2.22"))
	if a == nil || b == nil || a == b {
		t.Fatalf("Neighbor slots: %p %p", a, b)
	}
	if again := st.Neighbor(id, netip.MustParseAddr("192.0.2.21")); again != a {
		t.Error("the same next hop got a second slot")
	}
	st.KeepNeighbors(map[*lvs.Neighbor]bool{a: true})
	st.mu.Lock()
	n, kept := len(st.neigh), false
	for _, s := range st.neigh {
		kept = kept || s == a
	}
	st.mu.Unlock()
	if n != 1 || !kept {
		t.Errorf("after KeepNeighbors: %d slots (kept a: %v), want only a", n, kept)
	}
}

// TestLinkReplace: a device that fails for good is reported once through
// OnLost, and Replace puts new queues under the link: the readers run
// again, and the netstack writes to the new device.
func TestLinkReplace(t *testing.T) {
	lost := make(chan error, 4)
	gone := &failingDevice{err: syscall.EBADFD, done: make(chan struct{})}
	l := NewLink(LinkOptions{Devices: []device.Device{gone}, MTU: 1500, OnLost: func(err error) { lost <- err }})
	l.Attach(nopDispatcher{})
	defer func() { l.Close(); l.Wait() }()
	select {
	case err := <-lost:
		if !device.IsFatal(err) {
			t.Errorf("OnLost(%v), want a fatal error", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("OnLost not called")
	}
	if !l.Lost() {
		t.Error("Lost() false after the device failed")
	}
	mem := device.NewMem(8)
	if err := l.Replace([]device.Device{mem}); err != nil {
		t.Fatal(err)
	}
	if l.Lost() {
		t.Error("Lost() true after Replace")
	}
	// The netstack's own frames go to the new device.
	var pkts tcpipstack.PacketBufferList
	pkt := tcpipstack.NewPacketBuffer(tcpipstack.PacketBufferOptions{Payload: buffer.MakeWithData([]byte("hello, new device"))})
	pkts.PushBack(pkt)
	if n, err := l.WritePackets(pkts); n != 1 || err != nil {
		t.Fatalf("WritePackets: %d, %v", n, err)
	}
	pkt.DecRef()
	select {
	case f := <-mem.Outbound():
		if string(f) != "hello, new device" {
			t.Errorf("frame %q", f)
		}
	case <-time.After(time.Second):
		t.Fatal("nothing written to the new device")
	}
	// A reader runs on it: an injected frame is read (counted).
	before := l.Stats().RxFrames
	mem.Inject(make([]byte, 60))
	deadline := time.Now().Add(2 * time.Second)
	for l.Stats().RxFrames == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l.Stats().RxFrames == before {
		t.Error("no reader on the new device")
	}
	select {
	case err := <-lost:
		t.Errorf("OnLost called again: %v", err)
	default:
	}
	// Too many queues, and a closed link, are refused.
	if err := l.Replace([]device.Device{device.NewMem(1), device.NewMem(1)}); err == nil {
		t.Error("Replace with more queues than the link has: no error")
	}
}

// Close returns while frames keep arriving: a reader that is delivering a
// frame when the netstack stops must not wait for the netstack's lock that
// gVisor's Wait holds while it waits for the link (the readers are waited
// for first).
func TestCloseWhileDelivering(t *testing.T) {
	ping := serialize(t,
		&layers.Ethernet{SrcMAC: clientMAC, DstMAC: dirMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: clientIP, DstIP: dirIP},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		gopacket.Payload("ping"),
	)
	for range 20 {
		dev := device.NewMem(64)
		st := New(Options{})
		link := NewLink(LinkOptions{Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC)})
		if _, err := st.AddNIC(NICOptions{Name: "lvt0", Link: link, Ethernet: true,
			Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}}); err != nil {
			t.Fatal(err)
		}
		go func() { // drain the replies
			for {
				select {
				case <-dev.Outbound():
				case <-time.After(time.Second):
					return
				}
			}
		}()
		go func() {
			for dev.Inject(ping) {
			}
		}()
		time.Sleep(5 * time.Millisecond)
		done := make(chan struct{})
		go func() {
			st.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close still waiting after 10 s while frames arrive")
		}
	}
}
