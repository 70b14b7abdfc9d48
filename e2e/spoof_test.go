package e2e

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestSpoofs sends, from the client's namespace, frames that pretend to
// belong to an established NAT connection (HTTP keep-alive): a blind RST
// (right addresses and ports, a sequence number far from the connection's)
// and an IPv6 RST with the IPv4-mapped forms of the same addresses. lvsd
// drops both and counts them (rst-window, v4-mapped), and the connection
// still answers after the CLOSE timeout (shortened to 2 s) would have ended
// it. After a reload with check_rst = false (IPVS's behaviour) the same
// blind RST closes the connection, which is gone 2 s later.
func TestSpoofs(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	tp.Globals = []string{"[timeouts]", `tcp_close = "2s"`}
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr"}
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)

	keep := l.KeepAlive(tp.Client, 2*time.Second)
	get := func() (string, error) {
		_, client, err := keep.Get(vipURL)
		return client, err
	}
	client, err := get()
	if err != nil {
		t.Fatalf("keep-alive connection: %v", err)
	}
	caddr, err := netip.ParseAddrPort(client)
	if err != nil {
		t.Fatalf("client %q: %v", client, err)
	}
	port := caddr.Port()

	// An AF_PACKET socket on the client's link, and the MACs of the frames.
	var fd, ifindex int
	var cliMAC net.HardwareAddr
	if err := lab.Do(tp.Client, func() error {
		ifc, err := net.InterfaceByName("lvteth0")
		if err != nil {
			return err
		}
		ifindex, cliMAC = ifc.Index, ifc.HardwareAddr
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	}); err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	defer unix.Close(fd)
	dirMAC, err := net.ParseMAC(tp.MAC)
	if err != nil {
		t.Fatal(err)
	}
	send := func(v6 bool) {
		t.Helper()
		eth := &layers.Ethernet{SrcMAC: cliMAC, DstMAC: dirMAC, EthernetType: layers.EthernetTypeIPv4}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(port), DstPort: 80, Seq: 0x5eed1234 ^ uint32(time.Now().UnixNano()), RST: true, Window: 0}
		var ip gopacket.SerializableLayer
		if v6 {
			eth.EthernetType = layers.EthernetTypeIPv6
			src, dst := lab.ClientIP.As16(), lab.VIP.As16() // ::ffff:a.b.c.d
			ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src[:], DstIP: dst[:]}
			tcp.SetNetworkLayerForChecksum(ip6)
			ip = ip6
		} else {
			ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: lab.ClientIP.AsSlice(), DstIP: lab.VIP.AsSlice()}
			tcp.SetNetworkLayerForChecksum(ip4)
			ip = ip4
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
			t.Fatal(err)
		}
		if err := unix.Sendto(fd, buf.Bytes(), 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6, Addr: [8]byte(append(dirMAC[:6:6], 0, 0))}); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	drops := func() (rst, mapped uint64) {
		for _, i := range tp.Status().Interfaces {
			rst += i.Drops["rst-window"]
			mapped += i.Drops["v4-mapped"]
		}
		return
	}

	send(false)
	send(true)
	time.Sleep(4500 * time.Millisecond) // past the 2 s CLOSE timeout and the next expiry run (1 s ticks)
	if c, err := get(); err != nil || c != client {
		t.Fatalf("keep-alive connection after the spoofs: %q, %v; want %s", c, err, client)
	}
	rst, mapped := drops()
	st := tp.Status()
	t.Logf("drops: rst-window %d, v4-mapped %d; table rst_out_of_window %d", rst, mapped, st.Table.RSTOutOfWindow)
	if rst != 1 || mapped != 1 || st.Table.RSTOutOfWindow != 1 {
		t.Errorf("drops: rst-window %d, v4-mapped %d, table %d; want 1, 1, 1", rst, mapped, st.Table.RSTOutOfWindow)
	}

	// IPVS's behaviour: the blind RST closes the connection.
	tp.Globals = append(tp.Globals, "[connections]", "check_rst = false")
	tp.ReloadLvsd(p, svc)
	if _, err := get(); err != nil {
		t.Fatalf("keep-alive connection after the reload: %v", err)
	}
	send(false)
	time.Sleep(4500 * time.Millisecond)
	// The entry is gone, so the client's next segment on the old
	// connection reaches the VIP's stack and is reset; its retry comes
	// from a new port. Answered from the old port means it survived.
	if c, err := get(); err == nil && c == client {
		t.Errorf("with check_rst = false the blind RST left the connection alive (%s)", c)
	}
}
