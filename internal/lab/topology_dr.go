package lab

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Direct-return labs (DR and TUN): the real servers answer the client
// themselves, so they sit on the client's subnet and the director never sees
// a reply. One lab may mix methods, real server by real server.
//
//	client lvt-P-N-cli        real servers lvt-P-N-rs1 .. rsN, by method:
//	lvteth0 198.18.1.10/24      dr        lvteth0 198.18.1.<20+i>/24, VIP on lo,
//	default via 198.18.1.1                arp_ignore=1, arp_announce=2, no default route
//	     |                      tun-lvsd  the same, plus `lvsd realserver -tun lvttunrs`
//	     |                                (StartRealservers), rp_filter=0
//	     |                      tun-ipip  the same, with the VIP on the kernel's tunl0
//	     |                                (only where the ipip module is loaded)
//	     |                      nat       lvteth0 198.18.2.<10+i>/24, default via 198.18.2.1
//	     |                                 |      |      |
//	+----+---------------------------------+------+------+------- lvt-P-N-dir -+
//	|  lvtcli               lvtrs1 lvtrs2 lvtrs3     (veth ends)               |
//	|     \________________ lvtbr0 (bridge, no address) _____/                 |
//	|                          |                                               |
//	|                  lvttap0 (TAP, bridge port, no address)                  |
//	+--------------------------|-----------------------------------------------+
//	                         lvsd: DIPs 198.18.1.1/24 198.18.2.1/24, VIP 198.18.1.100
//
// A DR real server gets the client's frames with only the destination MAC
// changed; a TUN real server gets them inside IPIP from 198.18.1.1 (the
// director's first IPv4 address, its tunnel source) to its own address. Both
// answer from the VIP straight to the client's MAC on the bridge. The VIP on
// their lo (or tunl0) must not be announced: arp_ignore=1 keeps them from
// answering the client's ARP for it, arp_announce=2 from using it as the
// source of their own ARP requests. A TUN real server also accepts packets
// from the client arriving on its tunnel device (rp_filter=0), although its
// route to the client leaves by lvteth0.

// RealMethod is how a real server of a DirectLab is set up.
type RealMethod string

// Real-server set-ups of a DirectLab.
const (
	RealDR        RealMethod = "dr"       // direct routing: VIP on lo
	RealTUNLvsd   RealMethod = "tun-lvsd" // IPIP decapsulated by `lvsd realserver` into lvttunrs
	RealTUNKernel RealMethod = "tun-ipip" // IPIP decapsulated by the kernel's tunl0
	RealNAT       RealMethod = "nat"      // NAT, as in NATLab
)

// ConfigMethod returns the method's name in lvsd's configuration.
func (m RealMethod) ConfigMethod() string {
	switch m {
	case RealTUNLvsd, RealTUNKernel:
		return "tun"
	}
	return string(m)
}

// RealserverTUN is the TUN device `lvsd realserver` writes into on a
// tun-lvsd real server.
const RealserverTUN = "lvttunrs"

// DirectTopology is a DirectLab: a Topology whose real servers each have a
// method.
type DirectTopology struct {
	*Topology
	// Methods has the method of each real server, rs1 first.
	Methods []RealMethod
}

// KernelIPIP reports whether the kernel's ipip module is loaded, which a
// tun-ipip real server needs. A lab never loads a module: that would create
// tunl0 in every namespace of the host, the root one included.
func KernelIPIP() bool {
	_, err := os.Stat("/sys/module/ipip")
	return err == nil
}

// DirectLab builds a lab for DR and TUN (and NAT) real servers on a TAP, one
// real server per method, rs1 first (see the diagram above). A tun-ipip real
// server needs the ipip module (KernelIPIP): without it the test is skipped.
// A tun-lvsd real server is ready once StartRealservers has run. The only
// link not named lvt* is tunl0, which the ipip module itself gives every
// namespace (as lo): the lab brings it up but neither creates nor deletes
// it.
func (l *Lab) DirectLab(methods ...RealMethod) *DirectTopology {
	l.t.Helper()
	return l.directLab(false, methods)
}

// DirectLab6 builds a DirectLab with IPv6 as well: the client has
// 2001:2:0:1::10/64 (default via 2001:2:0:1::1, a DIP), a DR or TUN real
// server 2001:2:0:1::<20+i>/64 with VIP6 on its lo (an address on lo
// answers no neighbour solicitation on lvteth0: IPv6's strict neighbour
// discovery does what arp_ignore does for IPv4), a NAT one
// 2001:2:0:2::<10+i>/64 via 2001:2:0:2::1; lvsd holds 2001:2:0:1::1/64 and
// 2001:2:0:2::1/64 too. A tun-lvsd real server's `lvsd realserver` then
// also takes VIP6 and the IPv6 DIP (StartRealservers).
func (l *Lab) DirectLab6(methods ...RealMethod) *DirectTopology {
	l.t.Helper()
	return l.directLab(true, methods)
}

func (l *Lab) directLab(v6 bool, methods []RealMethod) *DirectTopology {
	l.t.Helper()
	if len(methods) < 1 || len(methods) > 9 {
		l.t.Fatalf("lab: DirectLab: %d real servers, want 1 to 9", len(methods))
	}
	for _, m := range methods {
		if m == RealTUNKernel && !KernelIPIP() {
			if s, ok := l.t.(interface{ Skip(...any) }); ok {
				s.Skip("lab: the kernel's ipip module is not loaded (a lab never loads one; `modprobe ipip` to run this)")
			}
			l.t.Fatalf("lab: the kernel's ipip module is not loaded")
		}
	}
	o := Options{Reals: len(methods), MAC: DefaultMAC, IPv6: v6}
	tp := &Topology{Lab: l, Type: "tap", Device: TAPName, MAC: o.MAC, Options: o,
		Addresses: []string{DIP.String() + "/24", RealGateway.String() + "/24"}}
	if v6 {
		tp.Addresses = append(tp.Addresses, DIP6.String()+"/64", RealGateway6.String()+"/64")
	}
	dt := &DirectTopology{Topology: tp, Methods: methods}

	tp.Director = l.Namespace("dir")
	l.noIPv6(tp.Director)
	l.Bridge(tp.Director, BridgeName)
	l.TunTap(tp.Director, TAPName, "tap", o.Owner, false)
	l.Enslave(tp.Director, TAPName, BridgeName)

	tp.Client = l.guest("cli", ClientLink, tp.Director, v6)
	l.Enslave(tp.Director, ClientLink, BridgeName)
	l.Addr(tp.Client, GuestLink, ClientIP.String()+"/24")
	l.Route(tp.Client, "default", "via", DIP.String())
	if v6 {
		l.Addr(tp.Client, GuestLink, ClientIP6.String()+"/64")
		l.Route(tp.Client, "default", "via", DIP6.String())
	}

	for i, m := range methods {
		n := i + 1
		r := Real{Name: fmt.Sprintf("rs%d", n)}
		r.NS = l.guest(r.Name, fmt.Sprintf("lvtrs%d", n), tp.Director, v6)
		l.Enslave(tp.Director, fmt.Sprintf("lvtrs%d", n), BridgeName)
		switch m {
		case RealNAT:
			r.Addr = netip.AddrFrom4([4]byte{198, 18, 2, byte(10 + n)})
			l.Addr(r.NS, GuestLink, r.Addr.String()+"/24")
			l.Route(r.NS, "default", "via", RealGateway.String())
			if v6 {
				r.Addr6 = netip.MustParseAddr(fmt.Sprintf("2001:2:0:2::%d", 10+n))
				l.Addr(r.NS, GuestLink, r.Addr6.String()+"/64")
				l.Route(r.NS, "default", "via", RealGateway6.String())
			}
		case RealDR, RealTUNLvsd, RealTUNKernel:
			r.Addr = netip.AddrFrom4([4]byte{198, 18, 1, byte(20 + n)})
			l.Addr(r.NS, GuestLink, r.Addr.String()+"/24")
			l.hideVIP(r.NS)
			if m == RealTUNKernel {
				l.IP(r.NS, "link", "set", "tunl0", "up")
				l.Addr(r.NS, "tunl0", VIP.String()+"/32")
				l.Sysctl(r.NS, "net.ipv4.conf.tunl0.rp_filter", "0")
			} else {
				l.Addr(r.NS, "lo", VIP.String()+"/32")
			}
			if v6 {
				r.Addr6 = netip.MustParseAddr(fmt.Sprintf("2001:2:0:1::%d", 20+n))
				l.Addr(r.NS, GuestLink, r.Addr6.String()+"/64")
				l.Addr(r.NS, "lo", VIP6.String()+"/128")
			}
		default:
			l.t.Fatalf("lab: DirectLab: unknown method %q", m)
		}
		tp.Reals = append(tp.Reals, r)
	}
	tp.waitUp()
	return dt
}

// hideVIP sets a real server's sysctls for a VIP it holds without owning it
// on the wire, and lets packets from clients in through a tunnel device.
func (l *Lab) hideVIP(ns NS) {
	l.t.Helper()
	for _, dev := range []string{"all", GuestLink} {
		l.Sysctl(ns, "net.ipv4.conf."+dev+".arp_ignore", "1")
		l.Sysctl(ns, "net.ipv4.conf."+dev+".arp_announce", "2")
	}
	// all and default before any tunnel device exists: the TUN that lvsd
	// realserver creates inherits default.
	l.Sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")
	l.Sysctl(ns, "net.ipv4.conf.default.rp_filter", "0")
}

// Service returns s with each real server's method set from the lab
// (Service.Methods), for a service over every real server of the lab.
func (dt *DirectTopology) Service(s Service) Service {
	s.Methods = nil
	for _, m := range dt.Methods {
		s.Methods = append(s.Methods, m.ConfigMethod())
	}
	return s
}

// StartRealservers runs `lvsd realserver -tun lvttunrs -vip VIP -director
// DIP` with args after them (such as -gue-port 6080) on every tun-lvsd real
// server and waits until each runs. It returns the processes by real server
// name.
func (dt *DirectTopology) StartRealservers(bin Binaries, args ...string) map[string]*Proc {
	l := dt.Lab
	l.t.Helper()
	procs := map[string]*Proc{}
	for i, m := range dt.Methods {
		if m != RealTUNLvsd {
			continue
		}
		r := dt.Reals[i]
		vips, dirs := VIP.String(), DIP.String()
		if dt.Options.IPv6 {
			vips, dirs = vips+","+VIP6.String(), dirs+","+DIP6.String()
		}
		procs[r.Name] = l.Start(r.NS, r.Name+"-realserver", append([]string{bin.Lvsd, "realserver",
			"-tun", RealserverTUN, "-vip", vips, "-director", dirs}, args...)...)
	}
	for _, p := range procs {
		if err := p.WaitOutput("realserver running", serverReadyTimeout); err != nil {
			l.t.Fatalf("lab: %v", err)
		}
		if strings.Contains(p.Output(), "level=WARN") {
			l.t.Errorf("lab: %s warns about its host:\n%s", p.Name, p.Output())
		}
	}
	return procs
}

// RealserverCounts stops the `lvsd realserver` p with SIGTERM, checks that it
// exited with status 0, and returns the counters it logged on its way out
// ("injected" -> 300, ...).
func RealserverCounts(t T, p *Proc) map[string]int {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if _, err := p.Exited(); err != nil {
		t.Errorf("lab: %s did not stop cleanly on SIGTERM: %v", p.Name, err)
	}
	out := p.Output()
	i := strings.LastIndex(out, `msg="realserver stopped"`)
	if i < 0 {
		t.Fatalf("lab: %s did not log its counters; output:\n%s", p.Name, tail(out, 4<<10))
	}
	line, _, _ := strings.Cut(out[i:], "\n")
	counts := map[string]int{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		var n int
		if _, err := fmt.Sscan(v, &n); ok && err == nil {
			counts[k] = n
		}
	}
	return counts
}

// MAC returns the link address of dev in ns (`ip link show`).
func (l *Lab) MAC(ns NS, dev string) string {
	l.t.Helper()
	f := strings.Fields(l.IP(ns, "-o", "link", "show", "dev", dev))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "link/ether" {
			return f[i+1]
		}
	}
	l.t.Fatalf("lab: no MAC for %s in %s", dev, ns)
	return ""
}
