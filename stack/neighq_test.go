package stack

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	tcpipstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/internal/pkttest"
	"github.com/lvsd/lvsd/lvs"
)

// awaitProc stands for the fast path forwarding every IPv4 frame to one
// real server, as package forward does: the frame is rewritten (here: the
// IPv4 TOS byte set to 0x2c, the source MAC the director's) and gets the
// real server's MAC from its slot, or waits for it (AwaitNeighbor).
// (n is set after the readers start, before the first frame is injected.)
type awaitProc struct{ lab *holdLab }

func (a awaitProc) Process(p *forward.Packet) forward.Verdict {
	f := p.Frame()
	if len(f) < 34 || f[12] != 0x08 || f[13] != 0x00 {
		return forward.ToStack
	}
	f[15] = 0x2c
	copy(f[6:12], dirMAC)
	n := a.lab.n
	if m, ok := n.Load(); ok {
		copy(f[0:6], m[:])
		return forward.Transmit
	}
	clear(f[0:6])
	p.Neigh = n
	return forward.AwaitNeighbor
}

var (
	rsAddr = netip.MustParseAddr("192.0.2.21")
	rsHW   = pkttest.HW(pkttest.RSMAC)
)

// holdLab is a Stack over a memory device whose frames carry a virtio-net
// header, with one real server slot (192.0.2.21) that awaitProc forwards
// every IPv4 frame to.
type holdLab struct {
	st   *Stack
	dev  *device.Mem
	link *Link
	n    *lvs.Neighbor
	nic  NICID
}

func newHoldLab(t *testing.T, probeEvery time.Duration) *holdLab {
	t.Helper()
	lab := &holdLab{dev: device.NewMem(512), st: New(Options{})}
	lab.link = NewLink(LinkOptions{
		Devices: []device.Device{lab.dev}, Ethernet: true, VNetHdr: true, MTU: 1500, MAC: [6]byte(dirMAC),
		NewProcessor: func() Processor { return awaitProc{lab} },
	})
	var err error
	lab.nic, err = lab.st.AddNIC(NICOptions{Name: "lvt0", Link: lab.link, Ethernet: true,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.st.Close)
	if probeEvery > 0 {
		c := tcpipstack.DefaultNUDConfigurations()
		c.RetransmitTimer = probeEvery
		if err := lab.st.s.SetNUDConfigurations(1, ipv4.ProtocolNumber, c); err != nil {
			t.Fatal(err)
		}
	}
	lab.n = lab.st.Neighbor(lab.nic, rsAddr)
	return lab
}

// clientFrame is a client's UDP datagram to the VIP 192.0.2.100, its
// payload byte id, after a virtio-net header (vh).
func clientFrame(t *testing.T, id byte, size int, vh []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: dirMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{192, 0, 2, 10}, DstIP: net.IP{192, 0, 2, 100}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(bytes.Repeat([]byte{id}, size)))
	if err != nil {
		t.Fatal(err)
	}
	return append(append([]byte{}, vh...), buf.Bytes()...)
}

// forwarded is in as the real server receives it: awaitProc's rewrite, the
// real server's MAC.
func forwarded(in []byte) []byte {
	out := bytes.Clone(in)
	f := out[forward.VNetHdrLen:]
	copy(f[0:6], rsHW)
	copy(f[6:12], dirMAC)
	f[15] = 0x2c
	return out
}

// next returns the next IPv4 frame the link wrote (not the netstack's ARP
// requests or IPv6 traffic).
func (lab *holdLab) next(ctx context.Context, t *testing.T) []byte {
	t.Helper()
	for {
		b, err := lab.dev.Next(ctx)
		if err != nil {
			t.Fatalf("no frame: %v", err)
		}
		if len(b) >= forward.VNetHdrLen+34 && b[forward.VNetHdrLen+12] == 0x08 && b[forward.VNetHdrLen+13] == 0x00 {
			return b
		}
	}
}

// arpReply injects the real server's answer to the director's request.
func (lab *holdLab) arpReply(t *testing.T) {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: rsHW, DstMAC: dirMAC, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: rsHW, SourceProtAddress: rsAddr.AsSlice(),
		DstHwAddress: dirMAC, DstProtAddress: []byte{192, 0, 2, 1}}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		t.Fatal(err)
	}
	lab.dev.Inject(append(make([]byte, forward.VNetHdrLen), buf.Bytes()...))
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHoldUntilResolved: frames forwarded to a real server whose MAC is not
// known yet wait for it, and leave once the ARP reply arrives: in order,
// byte for byte as forwarded with the MAC (virtio-net header included), on
// the device queue they came from; a frame after them goes out directly.
func TestHoldUntilResolved(t *testing.T) {
	lab := newHoldLab(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A partial checksum header, which the frame keeps.
	vh := []byte{forward.VirtioNetHdrFNeedsCsum, 0, 0, 0, 0, 0, 34, 0, 6, 0}
	var want [][]byte
	for id := byte(1); id <= 3; id++ {
		in := clientFrame(t, id, 100*int(id), vh)
		want = append(want, forwarded(in))
		lab.dev.Inject(in)
	}
	waitFor(ctx, t, "3 frames held", func() bool { return lab.link.Stats().NeighHeld == 3 })
	if c := lab.link.Stats(); c.NeighSent != 0 || c.TxFrames != 0 {
		t.Fatalf("sent before the MAC is known: %+v", c)
	}
	lab.arpReply(t)
	for i, w := range want {
		if got := lab.next(ctx, t); !bytes.Equal(got, w) {
			t.Fatalf("frame %d:\n got % x\nwant % x", i+1, got, w)
		}
	}
	in := clientFrame(t, 4, 50, vh)
	lab.dev.Inject(in)
	if got := lab.next(ctx, t); !bytes.Equal(got, forwarded(in)) {
		t.Fatalf("frame after resolution:\n got % x\nwant % x", got, forwarded(in))
	}
	waitFor(ctx, t, "counters", func() bool { return lab.link.Stats().TxFrames == 4 })
	if c := lab.link.Stats(); c.NeighHeld != 3 || c.NeighSent != 3 || c.NeighOverflow != 0 || c.NeighDropped != 0 {
		t.Errorf("counters %+v", c)
	}
}

// TestHoldOverflowLink: a neighbour's queue holds the kernel's unres_qlen_bytes
// (101 full-size frames); the oldest are dropped first and counted.
func TestHoldOverflowLink(t *testing.T) {
	lab := newHoldLab(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vh := make([]byte, forward.VNetHdrLen)
	const total = 104
	var ins [][]byte
	for id := range byte(total) {
		in := clientFrame(t, id, 1472, vh) // 1514-byte frames
		ins = append(ins, in)
		lab.dev.Inject(in)
	}
	waitFor(ctx, t, "frames held", func() bool { return lab.link.Stats().NeighHeld == total })
	if c := lab.link.Stats(); c.NeighOverflow != total-101 {
		t.Errorf("overflow %d, want %d", c.NeighOverflow, total-101)
	}
	lab.arpReply(t)
	for id := total - 101; id < total; id++ {
		if got := lab.next(ctx, t); !bytes.Equal(got, forwarded(ins[id])) {
			t.Fatalf("frame %d: got payload byte %d", id, got[forward.VNetHdrLen+42])
		}
	}
	waitFor(ctx, t, "sent", func() bool { return lab.link.Stats().NeighSent == 101 })
}

// TestHoldFailed: when the resolution fails (nobody answers the ARP
// requests), the frames that waited are dropped and counted, never sent;
// a frame after the failure waits again and starts a new resolution (an
// ARP request goes out at once, not at the next resolution round).
func TestHoldFailed(t *testing.T) {
	lab := newHoldLab(t, 50*time.Millisecond) // 3 probes: fails in 150 ms
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vh := make([]byte, forward.VNetHdrLen)
	for id := byte(1); id <= 2; id++ {
		lab.dev.Inject(clientFrame(t, id, 10, vh))
	}
	waitFor(ctx, t, "2 frames held", func() bool { return lab.link.Stats().NeighHeld == 2 })
	waitFor(ctx, t, "frames dropped", func() bool { return lab.link.Stats().NeighDropped == 2 })
	if f, _ := lab.n.Held(); f != 0 {
		t.Errorf("%d frames still held", f)
	}
	// Another frame: held, and its own ARP request goes out (the failed
	// resolution's requests drained first). (It is not answered here:
	// gVisor's neighbour entry, after a failure with waiters, reads its
	// link address without its lock in a goroutine of its own, which the
	// race detector reports when a later answer writes it.)
	for drained := false; !drained; {
		select {
		case <-lab.dev.Outbound():
		case <-time.After(100 * time.Millisecond):
			drained = true
		}
	}
	in := clientFrame(t, 3, 10, vh)
	lab.dev.Inject(in)
	waitFor(ctx, t, "frame held", func() bool { return lab.link.Stats().NeighHeld == 3 })
	for {
		b, err := lab.dev.Next(ctx)
		if err != nil {
			t.Fatal("no new ARP request after the failure")
		}
		f := b[forward.VNetHdrLen:]
		if f[12] == 0x08 && f[13] == 0x06 && bytes.Equal(f[38:42], rsAddr.AsSlice()) {
			break
		}
		if f[12] == 0x08 && f[13] == 0x00 {
			t.Fatalf("a held frame was sent: % x", b)
		}
	}
	if f, _ := lab.n.Held(); f != 1 {
		t.Errorf("%d frames held after the new request, want 1", f)
	}
	if c := lab.link.Stats(); c.NeighDropped != 2 {
		t.Errorf("dropped %d, want 2", c.NeighDropped)
	}
}

// TestHoldForgotten: the frames waiting for a neighbour that no real server
// needs any more (KeepNeighbors without it) are dropped and counted, and a
// frame for it afterwards (a connection of a removed real server) is
// dropped at once: nothing would resolve it.
func TestHoldForgotten(t *testing.T) {
	lab := newHoldLab(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vh := make([]byte, forward.VNetHdrLen)
	for id := byte(1); id <= 2; id++ {
		lab.dev.Inject(clientFrame(t, id, 10, vh))
	}
	waitFor(ctx, t, "2 frames held", func() bool { return lab.link.Stats().NeighHeld == 2 })
	lab.st.KeepNeighbors(nil)
	if c := lab.link.Stats(); c.NeighDropped != 2 {
		t.Errorf("dropped %d at KeepNeighbors, want 2", c.NeighDropped)
	}
	lab.dev.Inject(clientFrame(t, 3, 10, vh))
	waitFor(ctx, t, "the later frame dropped", func() bool { return lab.link.Stats().NeighDropped == 3 })
	if f, _ := lab.n.Held(); f != 0 {
		t.Errorf("%d frames held on a forgotten neighbour", f)
	}
}
