package e2e

import (
	"errors"
	"fmt"
	"net"
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
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
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
// would reach zero with ICMP time exceeded from the VIP. The real server's
// capture shows TTL 4 for a datagram sent with 5; the client's capture
// shows the time exceeded for a datagram sent with TTL 1, which no real
// server receives.
func TestTTL(t *testing.T) {
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{Reals: 1})
	tp.StartUDP(bin, 53)
	rsCap := l.Capture(tp.Reals[0].NS, lab.GuestLink)
	cliCap := l.Capture(tp.Client, lab.GuestLink)
	tp.StartLvsd(bin, lab.LvsdOptions{}, lab.Service{Protocol: "udp", Port: 53})

	send := func(ttl int, msg string) {
		t.Helper()
		err := lab.Do(tp.Client, func() error {
			c, err := net.Dial("udp", lab.VIP.String()+":53")
			if err != nil {
				return err
			}
			defer c.Close()
			rc, err := c.(*net.UDPConn).SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, ttl)
			}); err != nil {
				return err
			}
			if serr != nil {
				return serr
			}
			_, err = c.Write([]byte(msg))
			return err
		})
		if err != nil {
			t.Fatalf("send with TTL %d: %v", ttl, err)
		}
	}
	send(5, "ttl-five")
	send(1, "ttl-one")

	// udpSeen returns the TTLs of the datagrams carrying msg in c.
	udpSeen := func(c *lab.Capture, msg string, incoming bool) []uint8 {
		var ttls []uint8
		for _, f := range c.Frames() {
			if f.Outgoing == incoming {
				continue
			}
			pk := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
			ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			udp, _ := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if ip != nil && udp != nil && string(udp.Payload) == msg {
				ttls = append(ttls, ip.TTL)
			}
		}
		return ttls
	}
	var exceeded []string
	deadline := time.Now().Add(5 * time.Second)
	for {
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
		if len(exceeded) > 0 && len(udpSeen(rsCap, "ttl-five", true)) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := udpSeen(rsCap, "ttl-five", true); len(got) != 1 || got[0] != 4 {
		t.Errorf("the real server received the TTL-5 datagram with TTLs %v, want [4]", got)
	}
	if got := udpSeen(rsCap, "ttl-one", true); len(got) != 0 {
		t.Errorf("the real server received the TTL-1 datagram (TTLs %v)", got)
	}
	want := fmt.Sprintf("from %s about %q", lab.VIP, "ttl-one")
	if len(exceeded) != 1 || exceeded[0] != want {
		t.Errorf("the client got ICMP time exceeded %v, want [%s]", exceeded, want)
	}
	if got := tp.Status().Interfaces[0].Drops["ttl-exceeded"]; got != 1 {
		t.Errorf("lvsd counts %d ttl-exceeded drops, want 1", got)
	}
}

// quotedPayload returns the UDP payload of the packet an ICMP error quotes.
func quotedPayload(q []byte) string {
	if len(q) < 28 {
		return ""
	}
	return string(q[20+8:])
}

// TestAnnounceAfterRestart: lvsd restarted with another MAC is reachable at
// once. Its gratuitous ARP for each DIP and VIP makes the client (which
// holds the old MAC for the VIP) and the real servers (which hold it for
// their gateway, a DIP) update their neighbour caches; without it every
// request fails until those entries expire (tens of seconds).
func TestAnnounceAfterRestart(t *testing.T) {
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 80)
	svc := lab.Service{Port: 80, Scheduler: "rr"}
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
	if res := tp.Get(bin, vipURL, 9); res.OK != 9 {
		t.Fatalf("before the restart: %d of 9 requests answered: %v", res.OK, res.Err)
	}
	old := tp.MAC
	if mac, _ := l.Neighbor(tp.Client, lab.VIP.String()); !strings.EqualFold(mac, old) {
		t.Fatalf("the client holds %q for the VIP, want lvsd's %s", mac, old)
	}

	if err := p.Stop(); err != nil {
		t.Logf("lvsd stop: %v", err)
	}
	tp.MAC = "02:00:5e:10:00:77"
	// Ready as soon as lvsd holds the device: the requests below are the
	// test.
	tp.StartLvsd(bin, lab.LvsdOptions{Ready: func() error { return nil }}, svc)

	// Every request succeeds within a couple of seconds, none waits for a
	// neighbour entry to expire.
	start := time.Now()
	res := tp.Get(bin, vipURL, 9, "-timeout", "2s")
	if res.OK != 9 {
		t.Errorf("after the restart with a new MAC: %d of 9 requests answered in %v: %v\n%s", res.OK, time.Since(start).Round(time.Millisecond), res.Err, res.Output)
	}
	if mac, _ := l.Neighbor(tp.Client, lab.VIP.String()); !strings.EqualFold(mac, tp.MAC) {
		t.Errorf("the client holds %q for the VIP, want the new %s", mac, tp.MAC)
	}
	for _, r := range tp.Reals {
		if mac, _ := l.Neighbor(r.NS, lab.RealGateway.String()); mac != "" && !strings.EqualFold(mac, tp.MAC) {
			t.Errorf("%s holds %q for its gateway %s, want the new %s", r.Name, mac, lab.RealGateway, tp.MAC)
		}
	}
}
