package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/internal/lab"
)

// directHTTP is the DR/TUN counterpart of wrrHTTP: VIP:80 over the real
// servers' :80 (DR and TUN cannot map ports), wrr 3:2:1.
var directHTTP = lab.Service{Protocol: "tcp", Port: 80, Scheduler: "wrr", Weights: []int{3, 2, 1}}

func TestDRWRR(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	dt := l.DirectLab(lab.RealDR, lab.RealDR, lab.RealDR)
	servers := dt.StartHTTP(bin, 80)
	capture := l.Capture(dt.Director, lab.TAPName)
	dt.StartLvsd(bin, lab.LvsdOptions{}, dt.Service(directHTTP))
	checkWRRPorts(t, dt, servers, 300)
	checkDirect(t, dt, capture)
	checkList(t, dt.Topology, bin, "Route")
}

// firstPort is the client port of checkWRRPorts' first request: below the
// ephemeral range (32768-60999), which the readiness probe and other
// clients use.
const firstPort = 10000

// checkWRRPorts is checkWRR with the client's ports chosen: request i comes
// from port firstPort+i, so that no two connections share a 4-tuple. It
// matters with DR and TUN: the director sees only the client's half of a
// connection, which therefore ends in FIN_WAIT (IPVS's input-only table) and
// stays for tcp_fin (120 s); a SYN from the same client port meanwhile
// follows the old connection to its real server instead of being scheduled,
// as with IPVS's default conn_reuse_mode, and a random ephemeral port that
// comes back (labserver get's, as checkWRR uses) would break the exact count.
//
// It makes n requests (a multiple of 6), one connection each, and checks
// that they all succeed, that the real servers got exactly 3:2:1 of them,
// and that each saw the client's own address.
func checkWRRPorts(t *testing.T, dt *lab.DirectTopology, servers []*lab.Proc, n int) {
	t.Helper()
	start := time.Now()
	got := map[string]int{}
	clients := map[string]int{}
	var errs []string
	for i := range n {
		server, client, err := getFromPort(dt.Client, firstPort+i)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		got[server]++
		host, _, _ := net.SplitHostPort(client)
		clients[host]++
	}
	t.Logf("%d requests in %v", n, time.Since(start).Round(time.Millisecond))
	if len(errs) > 0 {
		t.Errorf("%d of %d requests failed; first errors:\n%s", len(errs), n, strings.Join(errs[:min(len(errs), 10)], "\n"))
	}
	want := map[string]int{"rs1": n / 2, "rs2": n / 3, "rs3": n / 6}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers per real server (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{lab.ClientIP.String(): n - len(errs)}, clients); diff != "" {
		t.Errorf("client address seen by the real servers (-want +got):\n%s", diff)
	}
	from := regexp.MustCompile(`http GET / from ` + regexp.QuoteMeta(lab.ClientIP.String()) + `:1\d{4}\n`)
	for i, p := range servers {
		name := dt.Reals[i].Name
		if got := len(from.FindAllString(p.Output(), -1)); got != want[name] {
			t.Errorf("%s logged %d requests from %s, want %d", name, got, lab.ClientIP, want[name])
		}
	}
}

// getFromPort makes one HTTP GET of the VIP from ns, on a new connection
// from ClientIP:port, and returns the real server's name and the client
// address it saw.
func getFromPort(ns lab.NS, port int) (server, client string, err error) {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := lab.Do(ns, func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: lab.ClientIP.AsSlice(), Port: port}}
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	hc := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true, Proxy: nil}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(vipURL)
	if err != nil {
		return "", "", fmt.Errorf("GET from port %d: %w", port, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", "", fmt.Errorf("GET from port %d: %w", port, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("GET from port %d: %s", port, resp.Status)
	}
	return resp.Header.Get("X-Lab-Server"), resp.Header.Get("X-Lab-Client"), nil
}

// checkList checks that `lvsd list` shows the method of every real server
// in ipvsadm's words (Masq, Route, Tunnel).
func checkList(t *testing.T, tp *lab.Topology, bin lab.Binaries, forward ...string) {
	t.Helper()
	out, err := exec.Command(bin.Lvsd, "list", "-control", tp.Control).CombinedOutput()
	if err != nil {
		t.Fatalf("lvsd list: %v\n%s", err, out)
	}
	t.Logf("lvsd list:\n%s", out)
	for _, f := range forward {
		if !strings.Contains(string(out), " "+f+" ") {
			t.Errorf("lvsd list shows no %s real server:\n%s", f, out)
		}
	}
}

// flowCounts sorts the frames captured on lvsd's TAP.
type flowCounts struct {
	toVIP       int            // client -> VIP:80, sent to lvsd
	replies     int            // VIP:80 -> client, sent to lvsd: a reply passing through the director
	natReplies  int            // RIP:80 -> client, sent to lvsd (NAT real servers)
	drOut       map[string]int // VIP:80 frames lvsd wrote, by destination MAC
	tunOut      map[string]int // IPIP frames lvsd wrote, by outer destination
	natOut      map[string]int // frames lvsd wrote to a RIP:80, by RIP
	fragsNeeded int            // ICMP fragmentation-needed frames lvsd wrote
}

func countFlows(t *testing.T, frames []lab.Frame) flowCounts {
	t.Helper()
	vip := lab.VIP.String()
	c := flowCounts{drOut: map[string]int{}, tunOut: map[string]int{}, natOut: map[string]int{}}
	for _, f := range frames {
		pk := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Lazy)
		eth, _ := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if eth == nil || ip == nil {
			continue
		}
		src, dst := ip.SrcIP.String(), ip.DstIP.String()
		if ip.Protocol == layers.IPProtocolIPv4 {
			if !f.Outgoing {
				c.tunOut[dst]++
			}
			continue
		}
		if ic, ok := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
			if !f.Outgoing && ic.TypeCode == layers.CreateICMPv4TypeCode(3, 4) {
				c.fragsNeeded++
			}
			continue
		}
		tcp, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			continue
		}
		switch {
		case f.Outgoing && dst == vip && tcp.DstPort == 80:
			c.toVIP++
		case f.Outgoing && src == vip && tcp.SrcPort == 80:
			c.replies++
		case f.Outgoing && tcp.SrcPort == 80:
			c.natReplies++
		case !f.Outgoing && dst == vip && tcp.DstPort == 80:
			c.drOut[eth.DstMAC.String()]++
		case !f.Outgoing && tcp.DstPort == 80:
			c.natOut[dst]++
		}
	}
	return c
}

// settle waits until the capture has seen no new frame for half a second
// (at most 10 s): the last packets of the last connections (the client's
// final ACKs) are through.
func settle(t *testing.T, c *lab.Capture) {
	t.Helper()
	n, quiet := -1, time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := len(c.Frames()); m != n {
			n, quiet = m, time.Now()
		} else if time.Since(quiet) > 500*time.Millisecond {
			return
		}
	}
	t.Logf("traffic on the TAP did not settle: %d frames", n)
}

// checkDirect checks, after traffic through a DirectLab, that every real
// server got its packets by its own method and that no DR or TUN reply
// passed through the director: none reached lvsd's TAP (a capture in the
// director's namespace) and lvsd counted none (no NAT reply forwarded, no
// outbound packet of a DR or TUN real server).
func checkDirect(t *testing.T, dt *lab.DirectTopology, capture *lab.Capture) flowCounts {
	t.Helper()
	settle(t, capture)
	frames := capture.Stop()
	if err := capture.Err(); err != nil || capture.Missed() > 0 {
		t.Fatalf("capture: %v, %d frames missed", err, capture.Missed())
	}
	c := countFlows(t, frames)
	t.Logf("on %s: %d frames; to VIP:80 %d; replies from VIP:80 %d; NAT replies %d; lvsd wrote DR %v, IPIP %v, NAT %v",
		lab.TAPName, len(frames), c.toVIP, c.replies, c.natReplies, c.drOut, c.tunOut, c.natOut)
	if c.toVIP == 0 {
		t.Errorf("the capture saw no client packet to VIP:80: it does not work")
	}
	if c.replies != 0 {
		t.Errorf("%d replies from VIP:80 reached the director's TAP, want 0", c.replies)
	}
	hasNAT := false
	for i, m := range dt.Methods {
		r := dt.Reals[i]
		switch m {
		case lab.RealDR:
			mac := dt.Lab.MAC(r.NS, lab.GuestLink)
			if c.drOut[mac] == 0 {
				t.Errorf("%s (dr): lvsd wrote no frame to VIP:80 for its MAC %s", r.Name, mac)
			}
		case lab.RealTUNLvsd, lab.RealTUNKernel:
			if c.tunOut[r.Addr.String()] == 0 {
				t.Errorf("%s (tun): lvsd sent it no IPIP packet", r.Name)
			}
		case lab.RealNAT:
			hasNAT = true
			if c.natOut[r.Addr.String()] == 0 || c.natReplies == 0 {
				t.Errorf("%s (nat): %d packets to it, %d NAT replies through lvsd", r.Name, c.natOut[r.Addr.String()], c.natReplies)
			}
		}
	}

	st := dt.Status()
	for _, ifc := range st.Interfaces {
		if !hasNAT && ifc.ForwardedOut != 0 {
			t.Errorf("interface %s forwarded %d replies, want 0", ifc.Name, ifc.ForwardedOut)
		}
	}
	for _, s := range st.Services {
		for _, r := range s.Reals {
			host, _, _ := net.SplitHostPort(r.Address)
			i := realIndex(dt, host)
			if i < 0 {
				t.Errorf("status lists unknown real server %s", r.Address)
				continue
			}
			nat := dt.Methods[i] == lab.RealNAT
			if want := dt.Methods[i].ConfigMethod(); r.Method != want {
				t.Errorf("real %s: method %q, want %q", r.Address, r.Method, want)
			}
			if r.Stats.InPkts == 0 || nat != (r.Stats.OutPkts > 0) {
				t.Errorf("real %s (%s): in %d out %d packets; want in > 0, out %s", r.Address, r.Method,
					r.Stats.InPkts, r.Stats.OutPkts, map[bool]string{true: "> 0", false: "0"}[nat])
			}
		}
	}
	return c
}

func realIndex(dt *lab.DirectTopology, host string) int {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return -1
	}
	for i, r := range dt.Reals {
		if r.Addr == a {
			return i
		}
	}
	return -1
}
