package stack

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/device"
)

// announcement is what a test reads of a gratuitous ARP or an unsolicited
// neighbour advertisement.
type announcement struct {
	EthDst, EthSrc string
	Addr           string // ARP: sender = target protocol address; NA: target
	HW             string // ARP: sender hardware address; NA: target link-layer option
	// ARP
	Op       uint16
	TargetHW string
	// NA
	Src, Dst       string
	HopLimit       uint8
	Flags          uint8 // router, solicited, override (0x20)
	ChecksumValid  bool
	TargetProtAddr string
}

func readAnnouncement(t *testing.T, b []byte) announcement {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	a := announcement{EthDst: eth.DstMAC.String(), EthSrc: eth.SrcMAC.String()}
	if arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok {
		a.Op = arp.Operation
		a.Addr = net.IP(arp.SourceProtAddress).String()
		a.TargetProtAddr = net.IP(arp.DstProtAddress).String()
		a.HW = net.HardwareAddr(arp.SourceHwAddress).String()
		a.TargetHW = net.HardwareAddr(arp.DstHwAddress).String()
		return a
	}
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	ic, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if ip == nil || na == nil || ic == nil {
		t.Fatalf("neither a gratuitous ARP nor a neighbour advertisement: %v", p)
	}
	a.Src, a.Dst, a.HopLimit = ip.SrcIP.String(), ip.DstIP.String(), ip.HopLimit
	a.Addr, a.Flags = na.TargetAddress.String(), na.Flags
	for _, o := range na.Options {
		if o.Type == layers.ICMPv6OptTargetAddress {
			a.HW = net.HardwareAddr(o.Data).String()
		}
	}
	// The checksum, recomputed by gopacket, equals the one sent.
	c := *ic
	c.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(ic.Payload)); err != nil {
		t.Fatal(err)
	}
	a.ChecksumValid = cmp.Equal(buf.Bytes()[2:4], ic.Contents[2:4])
	return a
}

// TestAnnounce: every address of a NIC, when it is added, and every VIP
// added later, is announced once on an Ethernet link: a gratuitous ARP for
// IPv4, an unsolicited neighbour advertisement with override for IPv6, as
// the kernel's arp_notify and ndisc_notify send them. Nothing is announced
// on a link without MACs.
func TestAnnounce(t *testing.T) {
	dev := device.NewMem(64)
	st := New(Options{})
	t.Cleanup(st.Close)
	link := NewLink(LinkOptions{Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC)})
	id, err := st.AddNIC(NICOptions{
		Name: "lvt0", Link: link, Ethernet: true,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, vip := range []string{"192.0.2.100", "2001:db8::100"} {
		if err := st.AddVIP(id, netip.MustParseAddr(vip)); err != nil {
			t.Fatal(err)
		}
	}
	garp := func(a string) announcement {
		return announcement{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: dirMAC.String(), Addr: a, TargetProtAddr: a,
			HW: dirMAC.String(), Op: layers.ARPRequest, TargetHW: "00:00:00:00:00:00"}
	}
	una := func(a string) announcement {
		return announcement{EthDst: "33:33:00:00:00:01", EthSrc: dirMAC.String(), Addr: a, HW: dirMAC.String(),
			Src: a, Dst: "ff02::1", HopLimit: 255, Flags: 0x20, ChecksumValid: true}
	}
	want := []announcement{garp("192.0.2.1"), una("2001:db8::1"), garp("192.0.2.100"), una("2001:db8::100")}
	var got []announcement
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for len(got) < len(want) {
		b, err := dev.Next(ctx)
		if err != nil {
			t.Fatalf("after %d announcements: %v", len(got), err)
		}
		p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
		if p.Layer(layers.LayerTypeARP) == nil && p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement) == nil {
			continue // the netstack's own NDP (router solicitations, DAD)
		}
		got = append(got, readAnnouncement(t, b))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}

	// A TUN link has no neighbours to tell.
	tun := device.NewMem(8)
	tl := NewLink(LinkOptions{Devices: []device.Device{tun}, MTU: 1500})
	tid, err := st.AddNIC(NICOptions{Name: "lvt1", Link: tl, Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.129/25")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddVIP(tid, netip.MustParseAddr("192.0.2.200")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-tun.Outbound():
		t.Errorf("a TUN link sent %x", b)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestAnnounceAfterReplace: once the link's device was replaced (a lost
// device re-attached), announcements go out on the new device, not on the
// closed one the link was made with; with no device at all they fail.
func TestAnnounceAfterReplace(t *testing.T) {
	first := device.NewMem(64)
	st := New(Options{})
	t.Cleanup(st.Close)
	link := NewLink(LinkOptions{Devices: []device.Device{first}, Ethernet: true, MTU: 1500, MAC: [6]byte(dirMAC)})
	id, err := st.AddNIC(NICOptions{
		Name: "lvt0", Link: link, Ethernet: true,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")},
	})
	if err != nil {
		t.Fatal(err)
	}
	second := device.NewMem(64)
	if err := link.Replace([]device.Device{second}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddVIP(id, netip.MustParseAddr("192.0.2.100")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		b, err := second.Next(ctx)
		if err != nil {
			t.Fatalf("no announcement of the VIP on the replacing device: %v", err)
		}
		if p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default); p.Layer(layers.LayerTypeARP) == nil {
			continue
		}
		if a := readAnnouncement(t, b); a.Addr == "192.0.2.100" {
			break
		}
	}
	if err := link.Replace(nil); err != nil {
		t.Fatal(err)
	}
	if err := st.announce(id, netip.MustParseAddr("192.0.2.100")); err == nil {
		t.Error("announce with no device: no error")
	}
}
