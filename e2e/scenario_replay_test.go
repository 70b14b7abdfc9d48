package e2e

import (
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
	// Their services need the DR/TUN lab (real servers holding the VIP);
	// a second lab would double the test's time.
	"dr-in-tcp-syn":  "DR service: needs the DirectLab",
	"tun-in-tcp-syn": "TUN service: needs the DirectLab",
	// lvsd's own netstack answers it (a RST to the client): nothing on
	// the real-server side either way, so the verdict is not told apart
	// from a drop there.
	"to-stack-no-service": "to-stack: no frame on the real-server side",
}

// TestScenarioReplay replays the packet scenarios of testdata/packets (the
// ones forward's and director's TestScenarios check in memory) through a
// NAT lab: each scenario's addresses are mapped to the lab's (client
// 192.0.2.10 to lab.ClientIP, VIP 192.0.2.100 to lab.VIP, real server
// 192.0.2.21 to rs1, MACs to the lab's links), the frame is rebuilt with its
// checksums recomputed (and broken again where the scenario breaks them),
// sent from the client's namespace over AF_PACKET, and rs1's link is
// watched: a "transmit" must arrive rewritten as the scenario's expect
// says, mapped (addresses, MACs, TTL, valid checksums); a "drop" or "held"
// must not arrive rewritten, a held fragment is counted held, and a drop
// is counted under its reason (but
// other-host, which the TAP's MAC filter keeps from lvsd).
func TestScenarioReplay(t *testing.T) {
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	tp := l.NATLab(lab.Options{Reals: 1})
	tp.StartHTTP(bin, 8080)
	rs := tp.Reals[0]
	// With br_netfilter loaded, the bridge validates the IPv4 header of
	// what it forwards (checksum, length) before lvsd could see it: off in
	// the director's namespace, so that the malformed frames reach lvsd.
	if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
		l.Exec(tp.Director, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
	}
	// Every NAT scenario's service is one of these two (checked below).
	services := map[string]lab.Service{
		"tcp/80/8080": {Port: 80, RealPort: 8080, Scheduler: "rr"},
		"udp/53/5353": {Protocol: "udp", Port: 53, RealPort: 5353, Scheduler: "rr"},
	}
	tp.StartLvsd(bin, lab.LvsdOptions{}, services["tcp/80/8080"], services["udp/53/5353"])

	macOf := func(ns lab.NS) net.HardwareAddr {
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
	cliMAC, rsMAC := macOf(tp.Client), macOf(rs.NS)
	dirMAC, err := net.ParseMAC(tp.MAC)
	if err != nil {
		t.Fatal(err)
	}

	// The unit tests' addresses and MACs, and the lab's in their place.
	addrs := map[string]string{
		"192.0.2.10":  lab.ClientIP.String(),
		"192.0.2.100": lab.VIP.String(),
		"192.0.2.21":  rs.Addr.String(),
	}
	macs := map[string]string{
		pkttest.HW(pkttest.DirMAC).String(): dirMAC.String(),
		"02:00:5e:00:00:0c":                 cliMAC.String(),
		"02:00:5e:00:00:21":                 rsMAC.String(),
	}
	mapAP := func(s string) string {
		if s == "" {
			return ""
		}
		ap := netip.MustParseAddrPort(s)
		a, ok := addrs[ap.Addr().String()]
		if !ok {
			t.Fatalf("address %s: no lab address for it", ap.Addr())
		}
		return netip.AddrPortFrom(netip.MustParseAddr(a), ap.Port()).String()
	}
	mapMAC := func(s string) string {
		if m, ok := macs[s]; ok {
			return m
		}
		return s // another host's MAC stays another host's
	}

	var fd, ifindex int
	if err := lab.Do(tp.Client, func() error {
		ifc, err := net.InterfaceByName(lab.GuestLink)
		if err != nil {
			return err
		}
		ifindex = ifc.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	}); err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	defer unix.Close(fd)

	drops := func(reason string) (n uint64) {
		for _, i := range tp.Status().Interfaces {
			n += i.Drops[reason]
		}
		return n
	}

	held := func() (n uint64) {
		for _, i := range tp.Status().Interfaces {
			n += i.FragsHeld
		}
		return n
	}

	replayed := 0
	for _, s := range pkttest.Scenarios(t) {
		if why, ok := replaySkip[s.Name]; ok {
			t.Logf("%s: skipped: %s", s.Name, why)
			continue
		}
		svcKey := s.Service.Proto + "/" + strconv.Itoa(int(s.Service.Port)) + "/" + strconv.Itoa(int(netip.MustParseAddrPort(s.Service.Real).Port()))
		if _, ok := services[svcKey]; !ok || s.Service.Method != "nat" || s.Service.VIP != "192.0.2.100" {
			t.Errorf("%s: service %+v is not one of the lab's; add it or skip the scenario", s.Name, s.Service)
			continue
		}
		replayed++
		t.Run(s.Name, func(t *testing.T) {
			in := s.In
			in.Src, in.Dst = mapAP(in.Src), mapAP(in.Dst)
			in.DstMAC = "" // set below, after the build
			frame := in.Build(t)
			copy(frame[0:6], mustMAC(t, dirMAC.String()))
			if s.In.DstMAC != "" {
				copy(frame[0:6], mustMAC(t, mapMAC(s.In.DstMAC)))
			}
			copy(frame[6:12], cliMAC)

			want := *s
			if s.Expect != nil {
				e := *s.Expect
				e.DstMAC, e.SrcMAC = mapMAC(e.DstMAC), mapMAC(e.SrcMAC)
				e.Src, e.Dst = mapAP(e.Src), mapAP(e.Dst)
				want.Expect = &e
			}
			// The rewritten frame: to rs1, from the scenario's client port.
			srcPort := netip.MustParseAddrPort(in.Src).Port()
			rewritten := func(f lab.Frame) bool {
				if f.Outgoing || len(f.Data) < 14+20+4 || f.Data[12] != 0x08 || f.Data[13] != 0x00 {
					return false
				}
				ip := f.Data[14:]
				hl := int(ip[0]&0xf) * 4
				if netip.AddrFrom4([4]byte(ip[16:20])) != rs.Addr || len(ip) < hl+2 {
					return false
				}
				return uint16(ip[hl])<<8|uint16(ip[hl+1]) == srcPort
			}

			before, heldBefore := uint64(0), held()
			if s.Verdict == "drop" {
				before = drops(s.Drop)
			}
			capture := l.Capture(rs.NS, lab.GuestLink)
			if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6, Addr: [8]byte(append(frame[0:6:6], 0, 0))}); err != nil {
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
					if rewritten(f) {
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
					t.Fatalf("no rewritten frame on %s's link", rs.Name)
				}
				if got[0].Len > len(got[0].Data) {
					t.Fatalf("frame of %d bytes cut at %d", got[0].Len, len(got[0].Data))
				}
				want.CheckExpect(t, got[0].Data)
			case "drop", "held":
				if len(got) != 0 {
					t.Errorf("verdict %s, but %d frames reached %s rewritten: % x", s.Verdict, len(got), rs.Name, got[0].Data)
				}
				// On a TAP the kernel's filter (TUNSETTXFILTER) keeps a
				// frame for another host's MAC from lvsd: the bridge floods
				// it, but only the wire shows that it is not forwarded.
				if h := held(); s.Verdict == "held" && h != heldBefore+1 {
					t.Errorf("fragments held %d -> %d, want one more", heldBefore, h)
				}
				if s.Verdict == "drop" && s.Drop != "other-host" {
					if after := drops(s.Drop); after != before+1 {
						t.Errorf("drops %q %d -> %d, want one more", s.Drop, before, after)
					}
				}
			default:
				t.Fatalf("verdict %q not replayed", s.Verdict)
			}
		})
	}
	if replayed == 0 {
		t.Fatal("no scenario replayed")
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
