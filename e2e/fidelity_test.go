package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestStrayACKGetsRST: a TCP connection through lvsd outlives lvsd (a
// restart empties the connection table). The client's next segment finds no
// connection; as in IPVS (tcp_conn_schedule passes it to the local stack,
// which holds the VIP and has no socket), the director's netstack answers
// with a RST, and the client's read fails at once with ECONNRESET instead of
// retransmitting for minutes.
func TestStrayACKGetsRST(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 80)
	svc := lab.Service{Port: 80, Scheduler: "rr"}
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)

	var conn net.Conn
	if err := lab.Do(tp.Client, func() (err error) {
		conn, err = net.DialTimeout("tcp", lab.VIP.String()+":80", 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connect to the VIP: %v", err)
	}
	defer conn.Close()

	if err := p.Stop(); err != nil {
		t.Logf("lvsd stop: %v", err)
	}
	tp.StartLvsd(bin, lab.LvsdOptions{}, svc) // a new, empty connection table

	start := time.Now()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: vip\r\n\r\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := conn.Read(make([]byte, 512))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after lvsd's restart: %v after %v, want ECONNRESET (a RST from the VIP)", err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("connection reset %v after the first segment", time.Since(start).Round(time.Millisecond))
	if got := tp.Status().Interfaces[0].Drops["no-conn"]; got != 0 {
		t.Errorf("lvsd dropped %d stray segments", got)
	}
}

// TestTTL: lvsd decrements the TTL of packets toward the real servers, as
// IPVS does in every method (decrement_ttl), and answers a packet whose TTL
// would reach zero with ICMP time exceeded from the VIP. Three datagrams
// sent with TTL 5 reach a NAT, a DR and a TUN real server (rr) with TTL 4
// (the TUN one's outer header too); the client's capture shows the time
// exceeded for a datagram sent with TTL 1, which no real server receives.
func TestTTL(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	dt := l.DirectLab(lab.RealNAT, lab.RealDR, lab.RealTUNLvsd)
	dt.StartUDP(bin, 53)
	dt.StartRealservers(bin)
	var caps []*lab.Capture
	for _, r := range dt.Reals {
		caps = append(caps, l.Capture(r.NS, lab.GuestLink))
	}
	cliCap := l.Capture(dt.Client, lab.GuestLink)
	dt.StartLvsd(bin, lab.LvsdOptions{Ready: func() error { return nil }}, dt.Service(lab.Service{Protocol: "udp", Port: 53, Scheduler: "rr"}))

	send := func(ttl int, msg string) {
		t.Helper()
		if err := lab.SendUDP(dt.Client, lab.VIP.String()+":53", syscall.IP_TTL, ttl, []byte(msg)); err != nil {
			t.Fatalf("send with TTL %d: %v", ttl, err)
		}
	}
	// The first datagram waits for lvsd to resolve the client's MAC and
	// the real servers': resend until the first real server has it.
	deadline := time.Now().Add(10 * time.Second)
	for len(udpSeen(caps[0], "ttl-five")) == 0 && time.Now().Before(deadline) {
		send(5, "ttl-five")
		time.Sleep(200 * time.Millisecond)
	}
	for range len(dt.Reals) - 1 {
		send(5, "ttl-five")
	}
	send(1, "ttl-one")

	var exceeded []string
	for deadline = time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		exceeded = nil
		for _, f := range cliCap.Frames() {
			if f.Outgoing {
				continue
			}
			pk := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
			ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			ic, _ := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if ip != nil && ic != nil && ic.TypeCode == layers.CreateICMPv4TypeCode(11, 0) {
				exceeded = append(exceeded, fmt.Sprintf("from %s about %q", ip.SrcIP, quotedPayload(ic.Payload)))
			}
		}
		done := len(exceeded) > 0
		for _, c := range caps {
			done = done && len(udpSeen(c, "ttl-five")) > 0
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	for i, c := range caps {
		want := "[4]"
		if dt.Methods[i] == lab.RealTUNLvsd {
			want = "[4 4]" // the outer header, then the inner one
		}
		got := udpSeen(c, "ttl-five")
		if len(got) == 0 || got[0] != want {
			t.Errorf("%s (%s) received the TTL-5 datagrams with TTLs %v, want each %s", dt.Reals[i].Name, dt.Methods[i], got, want)
		}
		if got := udpSeen(c, "ttl-one"); len(got) != 0 {
			t.Errorf("%s received the TTL-1 datagram (TTLs %v)", dt.Reals[i].Name, got)
		}
	}
	want := fmt.Sprintf("from %s about %q", lab.VIP, "ttl-one")
	if len(exceeded) != 1 || exceeded[0] != want {
		t.Errorf("the client got ICMP time exceeded %v, want [%s]", exceeded, want)
	}
	if got := dt.Status().Interfaces[0].Drops["ttl-exceeded"]; got != 1 {
		t.Errorf("lvsd counts %d ttl-exceeded drops, want 1", got)
	}
}

// udpSeen returns, for each datagram carrying msg that c saw arrive, the
// TTLs of its IPv4 headers, outermost first.
func udpSeen(c *lab.Capture, msg string) []string {
	var seen []string
	for _, f := range c.Frames() {
		if f.Outgoing {
			continue
		}
		pk := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
		udp, _ := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if udp == nil || string(udp.Payload) != msg {
			continue
		}
		var ttls []uint8
		for _, l := range pk.Layers() {
			if ip, ok := l.(*layers.IPv4); ok {
				ttls = append(ttls, ip.TTL)
			}
		}
		seen = append(seen, fmt.Sprint(ttls))
	}
	return seen
}

// quotedPayload returns the UDP payload of the packet an ICMP error quotes.
func quotedPayload(q []byte) string {
	if len(q) < 28 {
		return ""
	}
	return string(q[20+8:])
}

// TestAnnounceAfterRestart: lvsd restarted with another MAC is reachable at
// once, over IPv4 and IPv6. Its gratuitous ARP and unsolicited neighbour
// advertisement for each DIP and VIP make the client (which holds the old
// MAC for the VIPs) and the real servers (which hold it for their gateway, a
// DIP) update their neighbour caches; without them every request fails
// until those entries expire (tens of seconds).
func TestAnnounceAfterRestart(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{IPv6: true})
	tp.StartHTTP(bin, 80)
	svcs := []lab.Service{{Port: 80, Scheduler: "rr"}, {VIP: lab.VIP6, Port: 80, Scheduler: "rr"}}
	vip6URL := "http://[" + lab.VIP6.String() + "]/"
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, svcs...)
	for _, u := range []string{vipURL, vip6URL} {
		if res := tp.Get(bin, u, 9); res.OK != 9 {
			t.Fatalf("before the restart: %d of 9 requests to %s answered: %v", res.OK, u, res.Err)
		}
	}
	for _, vip := range []netip.Addr{lab.VIP, lab.VIP6} {
		if mac, _ := l.Neighbor(tp.Client, vip.String()); !strings.EqualFold(mac, tp.MAC) {
			t.Fatalf("the client holds %q for %s, want lvsd's %s", mac, vip, tp.MAC)
		}
	}

	if err := p.Stop(); err != nil {
		t.Logf("lvsd stop: %v", err)
	}
	tp.MAC = "02:00:5e:10:00:77"
	// Ready as soon as lvsd holds the device: the requests below are the
	// test.
	tp.StartLvsd(bin, lab.LvsdOptions{Ready: func() error { return nil }}, svcs...)

	// Every request succeeds within a couple of seconds, none waits for a
	// neighbour entry to expire.
	for _, u := range []string{vipURL, vip6URL} {
		start := time.Now()
		res := tp.Get(bin, u, 9, "-timeout", "2s")
		if res.OK != 9 {
			t.Errorf("after the restart with a new MAC: %d of 9 requests to %s answered in %v: %v\n%s", res.OK, u, time.Since(start).Round(time.Millisecond), res.Err, res.Output)
		}
	}
	for _, vip := range []netip.Addr{lab.VIP, lab.VIP6} {
		if mac, _ := l.Neighbor(tp.Client, vip.String()); !strings.EqualFold(mac, tp.MAC) {
			t.Errorf("the client holds %q for %s, want the new %s", mac, vip, tp.MAC)
		}
	}
	for _, r := range tp.Reals {
		for _, gw := range []netip.Addr{lab.RealGateway, lab.RealGateway6} {
			if mac, _ := l.Neighbor(r.NS, gw.String()); mac != "" && !strings.EqualFold(mac, tp.MAC) {
				t.Errorf("%s holds %q for its gateway %s, want the new %s", r.Name, mac, gw, tp.MAC)
			}
		}
	}
}

// TestPacketPreconditions: the README's preconditions of type = "packet"
// are checked at start. An address on the interface, or forwarding in its
// namespace, makes the kernel answer or route the traffic beside lvsd
// (requests then fail at random); lvsd refuses to start and says why.
func TestPacketPreconditions(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{Packet: true})
	path := l.WriteFile("packet.toml", tp.Config(lab.Service{Port: 80}))
	run := func() string {
		t.Helper()
		out, err := l.TryExec(tp.Director, 20*time.Second, bin.Lvsd, "run", "-c", path, "-control", path+".sock")
		if err == nil {
			t.Fatalf("lvsd run succeeded; want a refusal:\n%s", out)
		}
		return out
	}

	l.Addr(tp.Director, lab.PacketName, "198.18.1.5/24")
	if out := run(); !strings.Contains(out, lab.PacketName) || !strings.Contains(out, "holds the address 198.18.1.5/24") {
		t.Errorf("with an address on %s, lvsd says:\n%s", lab.PacketName, out)
	}
	l.IP(tp.Director, "addr", "flush", "dev", lab.PacketName)

	l.Sysctl(tp.Director, "net.ipv4.ip_forward", "1")
	if out := run(); !strings.Contains(out, fmt.Sprintf("net.ipv4.conf.%s.forwarding is 1", lab.PacketName)) {
		t.Errorf("with forwarding on, lvsd says:\n%s", out)
	}
	l.Sysctl(tp.Director, "net.ipv4.ip_forward", "0")

	// Both fixed, it starts and forwards.
	tp.StartHTTP(bin, 80)
	tp.StartLvsd(bin, lab.LvsdOptions{}, lab.Service{Port: 80})
	if res := tp.Get(bin, vipURL, 3); res.OK != 3 {
		t.Errorf("after the fixes, %d of 3 requests answered: %v", res.OK, res.Err)
	}
}
