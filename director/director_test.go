package director

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/internal/leakcheck"
	"github.com/lvsd/lvsd/internal/pkttest"
	"github.com/lvsd/lvsd/lvs"
)

// The whole director (netstack, fast path, schedulers, connection table) over
// an in-memory device: the test plays the wire, injecting the client's and
// real servers' frames and checking every frame lvsd writes.

const testConfig = `
[[interface]]
name = "lvt0"
mac = "02:00:5e:00:00:01"
addresses = ["192.0.2.1/24"]

[[virtual_server]]
protocol = "tcp"
address = "192.0.2.100"
port = 80
scheduler = "wrr"
method = "nat"
  [[virtual_server.real_server]]
  address = "192.0.2.21"
  port = 8080
  weight = 2
  [[virtual_server.real_server]]
  address = "192.0.2.22"
  port = 8080
  weight = 1

[[virtual_server]]
protocol = "udp"
address = "192.0.2.100"
port = 53
scheduler = "rr"
method = "nat"
  [[virtual_server.real_server]]
  address = "192.0.2.21"
  port = 5353
`

// The packet kit's hosts; two real servers with MACs of their own.
var (
	dirMAC    = pkttest.HW(pkttest.DirMAC)
	clientMAC = pkttest.HW(pkttest.CliMAC)
	rsMAC     = map[string]net.HardwareAddr{
		"192.0.2.21":  {0x02, 0, 0x5e, 0, 0, 0x21},
		"192.0.2.22":  {0x02, 0, 0x5e, 0, 0, 0x22},
		"192.0.2.150": {0x02, 0, 0x5e, 0, 0, 0x50},
	}
	clientIP = net.IP(pkttest.Cli4.AsSlice())
	vip      = net.IP(pkttest.VIP4.AsSlice())
)

// wire is the test's side of the in-memory device. It answers the
// director's ARP requests for real servers by itself and queues every other
// frame for the test.
type wire struct {
	t   *testing.T
	dev *device.Mem
	out chan gopacket.Packet
}

func startDirector(t *testing.T, conf string) *wire {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	leakcheck.Check(t) // every goroutine of New and Run stops with Run's context
	dev := device.NewMem(256)
	d, err := New(cfg, Options{Devices: func(config.Interface) ([]device.Device, error) {
		return []device.Device{dev}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := d.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	w := &wire{t: t, dev: dev, out: make(chan gopacket.Packet, 256)}
	wg.Go(func() { w.pump(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return w
}

func (w *wire) pump(ctx context.Context) {
	for {
		b, err := w.dev.Next(ctx)
		if err != nil {
			return
		}
		p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
		if a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok && a.Operation == layers.ARPRequest {
			if mac, ok := rsMAC[net.IP(a.DstProtAddress).String()]; ok {
				ip, _ := netip.AddrFromSlice(a.DstProtAddress)
				to, _ := netip.AddrFromSlice(a.SourceProtAddress)
				w.dev.Inject(pkttest.ARPReply(w.t, [6]byte(mac), ip, [6]byte(dirMAC), to))
				continue
			}
		}
		select {
		case w.out <- p:
		case <-ctx.Done():
			return
		}
	}
}

func (w *wire) frame(ls ...gopacket.SerializableLayer) []byte {
	w.t.Helper()
	return pkttest.Serialize(w.t, ls...)
}

// next returns the next frame matching keep.
func (w *wire) next(what string, keep func(gopacket.Packet) bool) gopacket.Packet {
	w.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-w.out:
			if keep(p) {
				return p
			}
		case <-deadline:
			w.t.Fatalf("no %s from the director", what)
			return nil
		}
	}
}

func isTCP(p gopacket.Packet) bool { return p.Layer(layers.LayerTypeTCP) != nil }

// tcpFrame builds a TCP segment (DF set) with the packet kit.
func (w *wire) tcpFrame(srcMAC, dstMAC net.HardwareAddr, src, dst net.IP, sport, dport uint16, syn, ack bool) []byte {
	w.t.Helper()
	f := pkttest.Frame{SrcMAC: [6]byte(srcMAC), DstMAC: [6]byte(dstMAC), DF: true}
	f.Src = pkttest.AP(netip.AddrFrom4([4]byte(src.To4())), sport)
	f.Dst = pkttest.AP(netip.AddrFrom4([4]byte(dst.To4())), dport)
	if syn {
		f.Flags |= pkttest.SYN
	}
	if ack {
		f.Flags |= pkttest.ACK
	}
	return f.Build(w.t)
}

// checksumsValid checks the forwarded frame's checksums against the kit's
// plain reference sums: the fast path updates them incrementally.
func checksumsValid(t *testing.T, p gopacket.Packet) {
	t.Helper()
	pkttest.CheckSums(t, pkttest.IPOf(false, p.Data()))
}

type seen struct {
	SrcMAC, DstMAC string
	Src, Dst       string
	SPort, DPort   uint16
}

func describe(p gopacket.Packet) seen {
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	s := seen{SrcMAC: eth.SrcMAC.String(), DstMAC: eth.DstMAC.String(), Src: ip.SrcIP.String(), Dst: ip.DstIP.String()}
	switch l4 := p.TransportLayer().(type) {
	case *layers.TCP:
		s.SPort, s.DPort = uint16(l4.SrcPort), uint16(l4.DstPort)
	case *layers.UDP:
		s.SPort, s.DPort = uint16(l4.SrcPort), uint16(l4.DstPort)
	}
	return s
}

func TestDirectorNATInMemory(t *testing.T) {
	w := startDirector(t, testConfig)

	// The client resolves the VIP: the netstack answers with the director's MAC.
	w.dev.Inject(w.frame(
		&layers.Ethernet{SrcMAC: clientMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: clientMAC, SourceProtAddress: clientIP,
			DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: vip,
		}))
	arp := w.next("ARP reply for the VIP", func(p gopacket.Packet) bool {
		a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		return ok && a.Operation == layers.ARPReply
	}).Layer(layers.LayerTypeARP).(*layers.ARP)
	if got := net.HardwareAddr(arp.SourceHwAddress).String(); got != dirMAC.String() {
		t.Errorf("ARP reply for VIP has MAC %s, want %s", got, dirMAC)
	}

	// Three connections: wrr 2:1 sends two to .21 and one to .22, each
	// rewritten to the real server's address, port and MAC, client kept.
	// Until the real servers' MACs are resolved a SYN is dropped (counted);
	// the client retransmits, as TCP would.
	got := map[string]int{}
	for i, sport := range []uint16{40001, 40002, 40003} {
		var p gopacket.Packet
		for try := 0; ; try++ {
			w.dev.Inject(w.tcpFrame(clientMAC, dirMAC, clientIP, vip, sport, 80, true, false))
			select {
			case p = <-w.out:
			case <-time.After(200 * time.Millisecond):
			}
			if p != nil && isTCP(p) {
				break
			}
			if try == 25 {
				t.Fatalf("SYN %d was never forwarded", i)
			}
		}
		s := describe(p)
		got[s.Dst]++
		want := seen{SrcMAC: dirMAC.String(), DstMAC: rsMAC[s.Dst].String(), Src: "192.0.2.10", Dst: s.Dst, SPort: sport, DPort: 8080}
		if diff := cmp.Diff(want, s); diff != "" {
			t.Errorf("SYN %d forwarded as (-want +got):\n%s", i, diff)
		}
		checksumsValid(t, p)

		// The real server's SYN-ACK returns to the client from VIP:80.
		w.dev.Inject(w.tcpFrame(rsMAC[s.Dst], dirMAC, net.ParseIP(s.Dst).To4(), clientIP, 8080, sport, true, true))
		r := w.next("SYN-ACK to the client", isTCP)
		wantR := seen{SrcMAC: dirMAC.String(), DstMAC: clientMAC.String(), Src: "192.0.2.100", Dst: "192.0.2.10", SPort: 80, DPort: sport}
		if diff := cmp.Diff(wantR, describe(r)); diff != "" {
			t.Errorf("reply %d (-want +got):\n%s", i, diff)
		}
		checksumsValid(t, r)
	}
	if diff := cmp.Diff(map[string]int{"192.0.2.21": 2, "192.0.2.22": 1}, got); diff != "" {
		t.Errorf("connections per real server (-want +got):\n%s", diff)
	}

	// UDP to VIP:53 goes to .21:5353 and comes back from VIP:53.
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: clientIP, DstIP: vip}
	udp := &layers.UDP{SrcPort: 5000, DstPort: 53}
	udp.SetNetworkLayerForChecksum(ip)
	w.dev.Inject(w.frame(&layers.Ethernet{SrcMAC: clientMAC, DstMAC: dirMAC, EthernetType: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload("query")))
	p := w.next("UDP datagram to the real server", func(p gopacket.Packet) bool { return p.Layer(layers.LayerTypeUDP) != nil })
	if diff := cmp.Diff(seen{dirMAC.String(), rsMAC["192.0.2.21"].String(), "192.0.2.10", "192.0.2.21", 5000, 5353}, describe(p)); diff != "" {
		t.Errorf("UDP forwarded as (-want +got):\n%s", diff)
	}
	checksumsValid(t, p)

	// Ping to the VIP is answered by the netstack.
	w.dev.Inject(w.frame(
		&layers.Ethernet{SrcMAC: clientMAC, DstMAC: dirMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: clientIP, DstIP: vip},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 9, Seq: 1},
	))
	e := w.next("echo reply", func(p gopacket.Packet) bool { return p.Layer(layers.LayerTypeICMPv4) != nil })
	if ic := e.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ic.TypeCode.Type() != layers.ICMPv4TypeEchoReply ||
		e.Layer(layers.LayerTypeIPv4).(*layers.IPv4).SrcIP.String() != "192.0.2.100" {
		t.Errorf("want an echo reply from the VIP, got %v", e)
	}
}

func TestReloadKeepsRunningConfigOnError(t *testing.T) {
	d, cfg := memDirector(t, testConfig)
	d.mu.Lock()
	dests, services := d.dests, d.services
	d.mu.Unlock()

	// A new weight for the first service, and a second service that fails
	// late (its scheduler cannot be built): nothing of it may apply.
	bad := *cfg
	bad.Services = append([]config.Service(nil), cfg.Services...)
	bad.Services[0].Reals = append([]config.Real(nil), cfg.Services[0].Reals...)
	bad.Services[0].Reals[0].Weight = 7
	bad.Services[1].Scheduler = "lvt-no-such-scheduler"
	if err := d.Reload(&bad); err == nil {
		t.Fatal("reload with an unknown scheduler succeeded")
	}
	d.mu.Lock()
	kept := d.cfg == cfg && maps.Equal(d.dests, dests) && maps.Equal(d.services, services)
	d.mu.Unlock()
	if !kept {
		t.Error("a failed reload replaced the running configuration")
	}
	for k, dst := range dests {
		if want := int32(2); k.addr.String() == "192.0.2.21" && k.port == 8080 && dst.Weight.Load() != want {
			t.Errorf("a failed reload changed the weight of %v to %d, want %d", k.addr, dst.Weight.Load(), want)
		}
	}
}

func TestReloadKeepsServiceCounters(t *testing.T) {
	d, cfg := memDirector(t, testConfig)
	before := make(map[lvs.ServiceKey]*lvs.Stats)
	d.mu.Lock()
	for k, s := range d.services {
		before[k] = s.svc.Stats
	}
	d.mu.Unlock()
	if err := d.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, s := range d.services {
		if s.svc.Stats == nil || s.svc.Stats != before[k] {
			t.Errorf("service %v: counters replaced by a reload; connections would count into the old ones", k)
		}
	}
}

func TestReloadRestartNeededPersists(t *testing.T) {
	d, cfg := memDirector(t, testConfig)
	changed := *cfg
	changed.Interfaces = append([]config.Interface(nil), cfg.Interfaces...)
	changed.Interfaces[0].MTU = 1400
	// Both reloads must say that the interface change waits for a restart:
	// the second compares with what runs, not with the first reload's file.
	for i := range 2 {
		if err := d.Reload(&changed); !errors.Is(err, ErrRestartNeeded) {
			t.Errorf("reload %d with a new MTU: %v, want ErrRestartNeeded", i+1, err)
		}
	}
	if err := d.Reload(cfg); err != nil {
		t.Errorf("reload back to the running interfaces: %v", err)
	}
}

// memDirector returns a Director over an in-memory device, not running,
// closed at the end of the test, and the configuration it was built from.
func memDirector(t *testing.T, conf string) (*Director, *config.Config) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	leakcheck.Check(t) // Close stops every goroutine New started
	dev := device.NewMem(64)
	d, err := New(cfg, Options{Devices: func(config.Interface) ([]device.Device, error) { return []device.Device{dev}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, cfg
}
