package e2e

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsd/lvsd/internal/lab"
	"github.com/lvsd/lvsd/internal/pkttest"
)

// replaySkip names the scenarios of testdata/packets that
// TestScenarioReplay does not replay, and why.
var replaySkip = map[string]string{
	// lvsd's own netstack answers it (a RST to the client): nothing on
	// the real-server side either way, so the verdict is not told apart
	// from a drop there.
	"to-stack-no-service": "to-stack: no frame on the real-server side",
}

// TestScenarioReplay replays the packet scenarios of testdata/packets (the
// ones forward's and director's TestScenarios check in memory) through labs:
// those of a NAT service through a NAT lab, those of a DR or TUN service
// through a DirectLab whose rs1 is a DR and rs2 a TUN real server. Each
// scenario's addresses are mapped to the lab's (client 192.0.2.10 to
// lab.ClientIP, VIP 192.0.2.100 to lab.VIP, the director's 192.0.2.1 to
// lab.DIP, real server 192.0.2.21 to the real server of the scenario's
// method, MACs to the lab's links; a TUN scenario's port 80 to 81, the
// port of the DirectLab's TUN service), the frame is rebuilt with its
// checksums recomputed (and broken again where the scenario breaks them),
// sent from the client's namespace over AF_PACKET, and the real server's
// link is watched: a "transmit" must arrive as the scenario's expect says,
// mapped (MACs, addresses, TTL, the IPIP header, valid checksums); a "drop"
// or "held" must not arrive, a held fragment is counted held, and a drop is
// counted under its reason (but other-host, which the TAP's MAC filter
// keeps from lvsd).
func TestScenarioReplay(t *testing.T) {
	t.Parallel() // see the package doc
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	byMethod := map[string][]*pkttest.Scenario{}
	for _, s := range pkttest.Scenarios(t) {
		if why, ok := replaySkip[s.Name]; ok {
			t.Logf("%s: skipped: %s", s.Name, why)
			continue
		}
		byMethod[s.Service.Method] = append(byMethod[s.Service.Method], s)
	}
	for m := range byMethod {
		if m != "nat" && m != "dr" && m != "tun" {
			t.Errorf("scenarios of method %q: no lab replays them", m)
		}
	}

	t.Run("nat", func(t *testing.T) {
		t.Parallel()
		l := lab.New(t)
		tp := l.NATLab(lab.Options{Reals: 1})
		tp.StartHTTP(bin, 8080)
		// With br_netfilter loaded, the bridge validates the IPv4 header
		// of what it forwards (checksum, length) before lvsd could see
		// it: off in the director's namespace, so that the malformed
		// frames reach lvsd.
		if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
			l.Exec(tp.Director, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
		}
		// Every NAT scenario's service is one of these two.
		services := map[string]lab.Service{
			"tcp/80/8080": {Port: 80, RealPort: 8080, Scheduler: "rr"},
			"udp/53/5353": {Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "rr"},
		}
		tp.StartLvsd(bin, lab.LvsdOptions{}, services["tcp/80/8080"], services["udp/53/5353"])
		r := newReplayer(t, l, tp)
		if len(byMethod["nat"]) == 0 {
			t.Error("no NAT scenario")
		}
		for _, s := range byMethod["nat"] {
			if _, ok := services[scenarioService(s)]; !ok || s.Service.VIP != "192.0.2.100" {
				t.Errorf("%s: service %+v is not one of the lab's; add it or skip the scenario", s.Name, s.Service)
				continue
			}
			t.Run(s.Name, func(t *testing.T) { r.replay(t, s, tp.Reals[0], nil) })
		}
	})

	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		l := lab.New(t)
		dt := l.DirectLab(lab.RealDR, lab.RealTUNLvsd)
		// One service a method: rs1 alone takes port 80 (DR), rs2
		// alone port 81 (TUN); the other real server has weight 0.
		// rs1's server answers the readiness probe (through port 80).
		dt.StartHTTP(bin, 80)
		dt.StartLvsd(bin, lab.LvsdOptions{},
			dt.Service(lab.Service{Port: 80, Scheduler: "rr", Weights: []int{1, 0}}),
			dt.Service(lab.Service{Port: 81, Scheduler: "rr", Weights: []int{0, 1}}))
		r := newReplayer(t, l, dt.Topology)
		real := map[string]lab.Real{"dr": dt.Reals[0], "tun": dt.Reals[1]}
		ports := map[string]map[uint16]uint16{"dr": nil, "tun": {80: 81}}
		for _, m := range []string{"dr", "tun"} {
			if len(byMethod[m]) == 0 {
				t.Errorf("no %s scenario", m)
			}
			for _, s := range byMethod[m] {
				if scenarioService(s) != "tcp/80/80" || s.Service.VIP != "192.0.2.100" {
					t.Errorf("%s: service %+v is not one of the lab's; add it or skip the scenario", s.Name, s.Service)
					continue
				}
				t.Run(s.Name, func(t *testing.T) { r.replay(t, s, real[m], ports[m]) })
			}
		}
	})
}

// scenarioService returns the scenario's service as "proto/port/realport".
func scenarioService(s *pkttest.Scenario) string {
	return s.Service.Proto + "/" + strconv.Itoa(int(s.Service.Port)) + "/" +
		strconv.Itoa(int(netip.MustParseAddrPort(s.Service.Real).Port()))
}

// replayer sends scenarios' frames from a lab's client over AF_PACKET.
type replayer struct {
	l              *lab.Lab
	tp             *lab.Topology
	fd, ifindex    int
	cliMAC, dirMAC net.HardwareAddr
}

func newReplayer(t *testing.T, l *lab.Lab, tp *lab.Topology) *replayer {
	t.Helper()
	r := &replayer{l: l, tp: tp, cliMAC: linkMAC(t, tp.Client)}
	var err error
	if r.dirMAC, err = net.ParseMAC(tp.MAC); err != nil {
		t.Fatal(err)
	}
	if err := lab.Do(tp.Client, func() error {
		ifc, err := net.InterfaceByName(lab.GuestLink)
		if err != nil {
			return err
		}
		r.ifindex = ifc.Index
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	}); err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

// linkMAC returns the MAC of lab.GuestLink in ns.
func linkMAC(t *testing.T, ns lab.NS) net.HardwareAddr {
	t.Helper()
	var m net.HardwareAddr
	if err := lab.Do(ns, func() error {
		ifc, err := net.InterfaceByName(lab.GuestLink)
		if err == nil {
			m = ifc.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

func (r *replayer) drops(reason string) (n uint64) {
	for _, i := range r.tp.Status().Interfaces {
		n += i.Drops[reason]
	}
	return n
}

func (r *replayer) held() (n uint64) {
	for _, i := range r.tp.Status().Interfaces {
		n += i.FragsHeld
	}
	return n
}

// replay sends s's frame, mapped to the lab with rs as the scenario's real
// server and ports mapping the scenario's ports (nil: none), and checks
// what reaches rs's link.
func (r *replayer) replay(t *testing.T, s *pkttest.Scenario, rs lab.Real, ports map[uint16]uint16) {
	t.Helper()
	rsMAC := linkMAC(t, rs.NS)
	// The unit tests' addresses and MACs, and the lab's in their place.
	addrs := map[string]string{
		"192.0.2.1":   lab.DIP.String(),
		"192.0.2.10":  lab.ClientIP.String(),
		"192.0.2.100": lab.VIP.String(),
		"192.0.2.21":  rs.Addr.String(),
	}
	macs := map[string]string{
		pkttest.HW(pkttest.DirMAC).String(): r.dirMAC.String(),
		"02:00:5e:00:00:0c":                 r.cliMAC.String(),
		"02:00:5e:00:00:21":                 rsMAC.String(),
	}
	mapAddr := func(s string) string {
		a, ok := addrs[s]
		if !ok {
			t.Fatalf("address %s: no lab address for it", s)
		}
		return a
	}
	mapAP := func(s string) string {
		if s == "" {
			return ""
		}
		ap := netip.MustParseAddrPort(s)
		port := ap.Port()
		if p, ok := ports[port]; ok {
			port = p
		}
		return netip.AddrPortFrom(netip.MustParseAddr(mapAddr(ap.Addr().String())), port).String()
	}
	mapMAC := func(s string) string {
		if m, ok := macs[s]; ok {
			return m
		}
		return s // another host's MAC stays another host's
	}

	in := s.In
	in.Src, in.Dst = mapAP(in.Src), mapAP(in.Dst)
	in.DstMAC = "" // set below, after the build
	frame := in.Build(t)
	copy(frame[0:6], r.dirMAC)
	if s.In.DstMAC != "" {
		copy(frame[0:6], mustMAC(t, mapMAC(s.In.DstMAC)))
	}
	copy(frame[6:12], r.cliMAC)

	want := *s
	if s.Expect != nil {
		e := *s.Expect
		e.DstMAC, e.SrcMAC = mapMAC(e.DstMAC), mapMAC(e.SrcMAC)
		e.Src, e.Dst = mapAP(e.Src), mapAP(e.Dst)
		if e.IPIP != nil {
			e.IPIP = &pkttest.ScenOuterIP{Src: mapAddr(e.IPIP.Src), Dst: mapAddr(e.IPIP.Dst)}
		}
		want.Expect = &e
	}
	// What lvsd sent to rs: an IPv4 frame to rs's MAC (the client's own
	// frame, which the bridge may flood to rs's link too, is to lvsd's)
	// from the scenario's client port (inside IPIP for TUN).
	srcPort := netip.MustParseAddrPort(in.Src).Port()
	forwarded := func(f lab.Frame) bool {
		if f.Outgoing || len(f.Data) < 14+20+4 || !bytes.Equal(f.Data[0:6], rsMAC) ||
			f.Data[12] != 0x08 || f.Data[13] != 0x00 {
			return false
		}
		ip := f.Data[14:]
		hl := int(ip[0]&0xf) * 4
		if ip[9] == 4 && len(ip) >= hl+20 { // IPIP: the inner packet
			ip = ip[hl:]
			hl = int(ip[0]&0xf) * 4
		}
		return len(ip) >= hl+2 && uint16(ip[hl])<<8|uint16(ip[hl+1]) == srcPort
	}

	before, heldBefore := uint64(0), r.held()
	if s.Verdict == "drop" {
		before = r.drops(s.Drop)
	}
	capture := r.l.Capture(rs.NS, lab.GuestLink)
	if err := unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6, Addr: [8]byte(append(frame[0:6:6], 0, 0))}); err != nil {
		t.Fatalf("send: %v", err)
	}
	var got []lab.Frame
	deadline := time.Now().Add(time.Second)
	if s.Verdict != "transmit" {
		deadline = time.Now().Add(300 * time.Millisecond) // time for a wrongly forwarded frame to show
	}
	for time.Now().Before(deadline) && len(got) == 0 {
		time.Sleep(20 * time.Millisecond)
		got = got[:0]
		for _, f := range capture.Frames() {
			if forwarded(f) {
				got = append(got, f)
			}
		}
	}
	capture.Stop()

	switch s.Verdict {
	case "transmit":
		// The first one: the client's kernel answers the real
		// server's SYN-ACK with a RST, forwarded too.
		if len(got) == 0 {
			t.Fatalf("no frame from lvsd on %s's link", rs.Name)
		}
		if got[0].Len > len(got[0].Data) {
			t.Fatalf("frame of %d bytes cut at %d", got[0].Len, len(got[0].Data))
		}
		want.CheckExpect(t, got[0].Data)
	case "drop", "held":
		if len(got) != 0 {
			t.Errorf("verdict %s, but %d frames from lvsd reached %s: % x", s.Verdict, len(got), rs.Name, got[0].Data)
		}
		// On a TAP the kernel's filter (TUNSETTXFILTER) keeps a
		// frame for another host's MAC from lvsd: the bridge floods
		// it, but only the wire shows that it is not forwarded.
		if h := r.held(); s.Verdict == "held" && h != heldBefore+1 {
			t.Errorf("fragments held %d -> %d, want one more", heldBefore, h)
		}
		if s.Verdict == "drop" && s.Drop != "other-host" {
			if after := r.drops(s.Drop); after != before+1 {
				t.Errorf("drops %q %d -> %d, want one more", s.Drop, before, after)
			}
		}
	default:
		t.Fatalf("verdict %q not replayed", s.Verdict)
	}
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		t.Fatalf("MAC %q: %v", s, err)
	}
	return m
}
