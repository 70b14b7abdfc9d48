package director

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/adm"
	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// Weights, quiescence, slow start and persistence across reloads, through
// the director's own forwarder: frames go straight to a forward.Worker, and
// the real servers' MACs are set by the test instead of ARP.

// realsConf is a configuration of one NAT service on 192.0.2.100:80 whose
// real servers are given as "address weight" pairs; extra goes into the
// [[virtual_server]] table.
func realsConf(extra string, reals ...string) string {
	var b strings.Builder
	b.WriteString(`
[[interface]]
name = "lvt0"
mac = "02:00:5e:00:00:01"
addresses = ["192.0.2.1/24"]

[[virtual_server]]
protocol = "tcp"
address = "192.0.2.100"
scheduler = "wrr"
method = "nat"
`)
	if !strings.Contains(extra, "port") {
		b.WriteString("port = 80\n")
	}
	b.WriteString(extra + "\n")
	for _, r := range reals {
		var addr string
		var weight int
		fmt.Sscanf(r, "%s %d", &addr, &weight)
		fmt.Fprintf(&b, "  [[virtual_server.real_server]]\n  address = %q\n  weight = %d\n", addr, weight)
		if !strings.Contains(extra, "port") {
			b.WriteString("  port = 8080\n")
		}
	}
	return b.String()
}

type testDirector struct {
	t *testing.T
	d *Director
	w *forward.Worker
	f *wire // frame builder only
}

func newTestDirector(t *testing.T, conf string) *testDirector {
	t.Helper()
	d, _ := memDirector(t, conf)
	td := &testDirector{t: t, d: d, w: d.Forwarder("lvt0").NewWorker(), f: &wire{t: t}}
	td.setMACs()
	return td
}

// setMACs gives every destination a MAC (the last octet of its address).
func (td *testDirector) setMACs() {
	td.d.mu.Lock()
	defer td.d.mu.Unlock()
	for _, dst := range td.d.dests {
		a := dst.Addr.Netip().As4()
		dst.Neigh.Store(lvs.MAC{0x02, 0, 0x5e, 0, 0, a[3]})
	}
}

func (td *testDirector) reload(conf string) {
	td.t.Helper()
	cfg, err := config.Parse("test.toml", []byte(conf))
	if err != nil {
		td.t.Fatal(err)
	}
	if err := td.d.Reload(cfg); err != nil {
		td.t.Fatal(err)
	}
	td.setMACs()
}

// dest returns the destination in force for a real server of the service
// 192.0.2.100 (port: the service's key port).
func (td *testDirector) dest(port uint16, addr string, rport uint16) *lvs.Dest {
	td.t.Helper()
	td.d.mu.Lock()
	defer td.d.mu.Unlock()
	for k, d := range td.d.dests {
		if k.svc.Port == port && k.addr.String() == addr && k.port == rport {
			return d
		}
	}
	td.t.Fatalf("no destination %s:%d in service port %d", addr, rport, port)
	return nil
}

// send sends a TCP segment from src:sport to the VIP's port and returns
// where the director forwarded it ("192.0.2.21:8080"), or "" if it did not.
func (td *testDirector) send(src string, sport, dport uint16, syn bool) string {
	td.t.Helper()
	frame := td.f.tcpFrame(clientMAC, dirMAC, net.ParseIP(src).To4(), vip, sport, dport, syn, !syn)
	buf := make([]byte, 64+len(frame))
	copy(buf[64:], frame)
	p := &forward.Packet{Buf: buf, Off: 64, Len: len(frame)}
	if td.w.Process(p) != forward.Transmit {
		return ""
	}
	pk := gopacket.NewPacket(p.Frame(), layers.LayerTypeEthernet, gopacket.Default)
	s := describe(pk)
	return fmt.Sprintf("%s:%d", s.Dst, s.DPort)
}

func (td *testDirector) connect(src string, sport uint16) string {
	td.t.Helper()
	return td.send(src, sport, 80, true)
}

// TestReloadQuiescentAndWeights: weight 0 stops new connections to a real
// server and keeps its established ones; a new weight applies to new
// connections at once and leaves established ones where they are; the
// destination object survives both reloads.
func TestReloadQuiescentAndWeights(t *testing.T) {
	// Added .22 then .21: the kernel's list is .21, .22.
	td := newTestDirector(t, realsConf("", "192.0.2.22 1", "192.0.2.21 1"))
	a := td.dest(80, "192.0.2.21", 8080)
	if got := td.connect("192.0.2.10", 1000); got != "192.0.2.21:8080" {
		t.Fatalf("first connection to %s, want 192.0.2.21:8080 (wrr starts at the list head, the last added)", got)
	}

	td.reload(realsConf("", "192.0.2.21 0", "192.0.2.22 1"))
	if td.dest(80, "192.0.2.21", 8080) != a {
		t.Fatalf("the reload replaced the destination object")
	}
	if a.Weight.Load() != 0 || a.LastWeight.Load() != 1 {
		t.Errorf("quiesced: weight %d, last weight %d; want 0 and 1", a.Weight.Load(), a.LastWeight.Load())
	}
	for port := uint16(1001); port <= 1006; port++ {
		if got := td.connect("192.0.2.10", port); got != "192.0.2.22:8080" {
			t.Errorf("new connection %d to the quiesced server's service went to %s, want 192.0.2.22:8080", port, got)
		}
	}
	if got := td.send("192.0.2.10", 1000, 80, false); got != "192.0.2.21:8080" {
		t.Errorf("established connection after quiescing: %q, want still 192.0.2.21:8080", got)
	}
	if a.InactiveConns.Load()+a.ActiveConns.Load() != 1 {
		t.Errorf("the quiesced server counts %d connections, want its 1", a.InactiveConns.Load()+a.ActiveConns.Load())
	}

	// The scheduler lives on and is told of the new weight, as the
	// kernel's ip_vs_wrr_dest_changed: back to the list head with mw 3,
	// and the current weight 1 kept, so the cycle goes on from weight 1
	// (.21 .22), then starts again at 3 (.21), 2 (.21), 1 (.21 .22).
	td.reload(realsConf("", "192.0.2.21 3", "192.0.2.22 1"))
	var seq []string
	for port := uint16(2000); port < 2008; port++ {
		seq = append(seq, strings.TrimSuffix(strings.TrimPrefix(td.connect("192.0.2.10", port), "192.0.2."), ":8080"))
	}
	if got := strings.Join(seq, " "); got != "21 22 21 21 21 22 21 21" {
		t.Errorf("after weights 3:1, eight new connections went to %s; want 21 22 21 21 21 22 21 21", got)
	}
	if got := td.send("192.0.2.10", 1001, 80, false); got != "192.0.2.22:8080" {
		t.Errorf("established connection after the weight change: %q, want still 192.0.2.22:8080", got)
	}
}

// TestReloadSlowStart: slow start applies to a real server added to a
// running service and to one back from weight 0, not to the real servers of
// a new configuration or of a new service.
func TestReloadSlowStart(t *testing.T) {
	const ss = `slow_start = "60s"`
	td := newTestDirector(t, realsConf(ss, "192.0.2.21 1", "192.0.2.22 1"))
	now := td.d.table.Now()
	a, b := td.dest(80, "192.0.2.21", 8080), td.dest(80, "192.0.2.22", 8080)
	if a.Ramping(now) || b.Ramping(now) || a.SlowStart.Load() == 0 {
		t.Fatalf("at start: ramping %v %v, slow start %d; want false false 60s", a.Ramping(now), b.Ramping(now), a.SlowStart.Load())
	}

	td.reload(realsConf(ss, "192.0.2.21 1", "192.0.2.22 0", "192.0.2.23 1"))
	now = td.d.table.Now()
	c := td.dest(80, "192.0.2.23", 8080)
	if !c.Ramping(now) || a.Ramping(now) {
		t.Errorf("after adding .23: .23 ramping %v, .21 ramping %v; want true, false", c.Ramping(now), a.Ramping(now))
	}
	// While .23 ramps (1/64 of its weight) wrr gives it a small share.
	got := map[string]int{}
	for port := uint16(1000); port < 1065; port++ {
		got[td.connect("192.0.2.10", port)]++
	}
	if got["192.0.2.23:8080"] > 2 || got["192.0.2.21:8080"] < 62 {
		t.Errorf("65 connections during .23's slow start: %v; want .23 about 1 in 65", got)
	}

	td.reload(realsConf(ss, "192.0.2.21 1", "192.0.2.22 1", "192.0.2.23 1"))
	if now := td.d.table.Now(); !b.Ramping(now) {
		t.Errorf(".22 back from weight 0 does not ramp")
	}
}

// TestReloadRemovedServer: a real server removed by a reload becomes
// unavailable, so that its persistence templates are invalidated at their
// next use; its connections end at their next packet (expire_nodest_conn,
// on by default).
func TestReloadRemovedServer(t *testing.T) {
	const p = `persistence_timeout = "300s"`
	td := newTestDirector(t, realsConf(p, "192.0.2.22 1", "192.0.2.21 1")) // list .21, .22
	a := td.dest(80, "192.0.2.21", 8080)
	for port := uint16(1000); port < 1005; port++ {
		if got := td.connect("192.0.2.10", port); got != "192.0.2.21:8080" {
			t.Fatalf("persistent client's connection %d went to %s", port, got)
		}
	}
	if td.d.persist.Len() != 1 {
		t.Errorf("%d templates, want 1", td.d.persist.Len())
	}
	td.reload(realsConf(p, "192.0.2.22 1"))
	if a.Available.Load() {
		t.Errorf("the removed destination is still available")
	}
	if got := td.send("192.0.2.10", 1000, 80, false); got != "" {
		t.Errorf("established connection to the removed server: forwarded to %q, want dropped (expire_nodest_conn)", got)
	}
	if got := td.connect("192.0.2.10", 2000); got != "192.0.2.22:8080" {
		t.Errorf("the persistent client's new connection went to %s, want 192.0.2.22:8080", got)
	}
}

// TestPersistentPorts: a persistent service over ports 80 and 443 with a
// /24 netmask keeps a client network on one real server across both ports,
// with each connection on the port the client addressed.
func TestPersistentPorts(t *testing.T) {
	td := newTestDirector(t, realsConf("ports = [80, 443]\npersistence_timeout = true\npersistence_netmask = 24",
		"192.0.2.21 1", "192.0.2.22 1"))
	first := td.send("192.0.2.10", 1000, 80, true)
	host, _, _ := strings.Cut(first, ":")
	for i, c := range []struct {
		src  string
		port uint16
	}{{"192.0.2.10", 443}, {"192.0.2.11", 80}, {"192.0.2.99", 443}, {"192.0.2.10", 80}} {
		want := fmt.Sprintf("%s:%d", host, c.port)
		if got := td.send(c.src, uint16(1001+i), c.port, true); got != want {
			t.Errorf("%s to port %d went to %s, want %s", c.src, c.port, got, want)
		}
	}
	if got := td.send("192.0.2.10", 3000, 8080, true); got != "" {
		t.Errorf("port 8080, not in the list, was forwarded to %s", got)
	}
	if td.d.persist.Len() != 1 {
		t.Errorf("%d templates, want 1 for the /24", td.d.persist.Len())
	}
	// -Lc lists the template as IPVS lists a fwmark service's: protocol
	// IP, the mark (1, the first free one) as the virtual address, port 0.
	var tmpl []adm.Conn
	for _, c := range td.d.Conns() {
		if c.State == "NONE" {
			tmpl = append(tmpl, c)
		}
	}
	if len(tmpl) != 1 || tmpl[0].Proto != 0 || tmpl[0].Virtual != netip.MustParseAddrPort("0.0.0.1:0") ||
		tmpl[0].Client != netip.MustParseAddrPort("192.0.2.0:0") {
		t.Errorf("templates in -Lc: %+v, want one IP 192.0.2.0:0 -> 0.0.0.1:0", tmpl)
	}
}

// TestTemplateOfPortService: a persistent service on one port lists its
// templates with its protocol, VIP and port, as IPVS does.
func TestTemplateOfPortService(t *testing.T) {
	td := newTestDirector(t, realsConf(`persistence_timeout = "300s"`, "192.0.2.21 1"))
	td.connect("192.0.2.10", 1000)
	for _, c := range td.d.Conns() {
		if c.State == "NONE" && (c.Proto != lvs.TCP || c.Virtual != netip.MustParseAddrPort("192.0.2.100:80")) {
			t.Errorf("template %+v, want TCP with virtual 192.0.2.100:80", c)
		}
	}
}

// TestReloadRebuildsHashTables: a reload that changes weights rebuilds the
// hashing schedulers' tables from the new weights.
func TestReloadRebuildsHashTables(t *testing.T) {
	conf := func(w1, w2 int) string {
		return strings.Replace(realsConf("", fmt.Sprintf("192.0.2.21 %d", w1), fmt.Sprintf("192.0.2.22 %d", w2)),
			`scheduler = "wrr"`, `scheduler = "mh"`, 1)
	}
	td := newTestDirector(t, conf(1, 1))
	td.reload(conf(1, 0)) // quiesce .22: its slots stay, no client moves
	td.reload(conf(1, 9)) // .22 now takes 9 of 10 slots
	got := map[string]int{}
	for i := range 200 {
		got[td.connect(fmt.Sprintf("192.0.2.%d", 120+i%100), uint16(1000+i))]++
	}
	if got["192.0.2.22:8080"] < 150 {
		t.Errorf("after weights 1:9, 200 clients went %v; want about 180 to .22", got)
	}
}
