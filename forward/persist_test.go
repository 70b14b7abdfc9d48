package forward_test

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
	"github.com/lvsd/lvsd/sched"
)

// Persistence, services over several ports and one-packet scheduling, in
// memory. Real servers are 192.0.2.21-23, each with its own MAC (the last
// octet of its address), so that DR frames tell them apart.

// realServers returns n available destinations with method m and port.
func realServers(n int, port uint16, m lvs.Method) []*lvs.Dest {
	ds := make([]*lvs.Dest, n)
	for i := range ds {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(21 + i)})
		ds[i] = lvs.NewDest(a, port, m, 1)
		ds[i].Neigh = new(lvs.Neighbor)
		ds[i].Neigh.Store(lvs.MAC{0x02, 0, 0x5e, 0, 0, byte(21 + i)})
	}
	return ds
}

// persistSpec is one service of a persistEnv.
type persistSpec struct {
	proto     lvs.Proto
	ports     []uint16 // the service's ports; [0] alone: all ports
	dests     []*lvs.Dest
	timeout   time.Duration // 0: not persistent
	maskBits  int
	onePacket bool
}

// persistEnv is an env whose services have rr schedulers and may be
// persistent, with one template table on the env's clock.
type persistEnv struct {
	*env
	ptab *persist.Table
	svcs []*forward.Service
}

func newPersistEnv(tb testing.TB, specs ...persistSpec) *persistEnv {
	tb.Helper()
	e := newEnv(tb, envOpts{})
	pe := &persistEnv{env: e, ptab: persist.New(persist.Options{Clock: e.clk.now})}
	cfg := &forward.Config{Services: map[lvs.ServiceKey]*forward.Service{}}
	for _, sp := range specs {
		s, err := sched.New("rr", sp.dests, sched.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		key := lvs.ServiceKey{Addr: lvs.AddrFromNetip(vip4), Port: sp.ports[0], Proto: sp.proto}
		svc := &forward.Service{Key: key, Dests: sp.dests, Sched: s, OnePacket: sp.onePacket}
		if len(sp.ports) > 1 {
			svc.Key.Port = 0
			svc.Ports = sp.ports
		}
		if sp.timeout > 0 {
			svc.Persist = &persist.Policy{Table: pe.ptab, Timeout: int64(sp.timeout),
				Mask: persist.Mask(sp.maskBits, true), Port: svc.Key.Port}
		}
		for _, p := range sp.ports {
			key.Port = p
			cfg.Services[key] = svc
		}
		pe.svcs = append(pe.svcs, svc)
	}
	e.f.SetConfig(cfg)
	e.cfg = cfg
	return pe
}

// connect sends a SYN (TCP) or a datagram (UDP) from src to VIP:port and
// returns the destination address and port of the forwarded frame (NAT), or
// the real server whose MAC the frame was sent to (DR, port 0).
func (pe *persistEnv) connect(tb testing.TB, proto lvs.Proto, src netip.AddrPort, port uint16) (netip.Addr, uint16) {
	tb.Helper()
	var flags uint8
	if proto == lvs.TCP {
		flags = syn
	}
	v, p := pe.process(pkt{src: src, dst: ap(vip4, port), proto: proto, flags: flags, payload: "x"}.build(tb), forward.VNetHdr{})
	if v != forward.Transmit {
		tb.Fatalf("%v from %v to port %d: verdict %v", proto, src, port, v)
	}
	ip := ipOf(forward.Ethernet, p.Frame())
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	if dst == vip4 { // DR: the real server is in the MAC
		mac := p.Frame()[0:6]
		return netip.AddrFrom4([4]byte{192, 0, 2, mac[5]}), 0
	}
	return dst, binary.BigEndian.Uint16(l4Of(ip)[2:4])
}

func TestPersistentNAT(t *testing.T) {
	ds := realServers(3, 8080, lvs.NAT)
	pe := newPersistEnv(t, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds, timeout: 300 * time.Second, maskBits: 32})
	first, _ := pe.connect(t, lvs.TCP, ap(cli4, 40000), 80)
	for sport := uint16(40001); sport < 40020; sport++ {
		if got, port := pe.connect(t, lvs.TCP, ap(cli4, sport), 80); got != first || port != 8080 {
			t.Fatalf("connection from port %d went to %v:%d, want %v:8080", sport, got, port, first)
		}
	}
	// Without persistence rr would now give the next server; other clients
	// do get the others.
	second, _ := pe.connect(t, lvs.TCP, ap(netip.MustParseAddr("192.0.2.11"), 1), 80)
	third, _ := pe.connect(t, lvs.TCP, ap(netip.MustParseAddr("192.0.2.12"), 1), 80)
	if second == first || third == first || second == third {
		t.Errorf("three clients on %v, %v, %v; want three servers", first, second, third)
	}
	if pe.ptab.Len() != 3 || pe.tab.Len() != 22 {
		t.Errorf("%d templates and %d connections, want 3 and 22", pe.ptab.Len(), pe.tab.Len())
	}
	var controlled int
	pe.ptab.Range(func(in persist.Info) bool { controlled += in.Controlled; return true })
	if controlled != 22 {
		t.Errorf("templates control %d connections, want 22", controlled)
	}

	// The connections expire (SYN_RECV: 60 s); the templates then control
	// none and expire at their timeout after the last connection.
	pe.clk.advance(61 * time.Second)
	pe.tab.Expire(pe.clk.now())
	controlled = 0
	pe.ptab.Range(func(in persist.Info) bool { controlled += in.Controlled; return true })
	if pe.tab.Len() != 0 || controlled != 0 {
		t.Fatalf("after expiry: %d connections, templates control %d; want 0, 0", pe.tab.Len(), controlled)
	}
	pe.clk.advance(238 * time.Second)
	pe.ptab.Expire(pe.clk.now())
	if got, _ := pe.connect(t, lvs.TCP, ap(cli4, 50000), 80); got != first || pe.ptab.Len() != 3 {
		t.Fatalf("299 s after the last connection: %v (templates %d), want %v (3)", got, pe.ptab.Len(), first)
	}
	pe.clk.advance(time.Hour)
	pe.tab.Expire(pe.clk.now())
	pe.ptab.Expire(pe.clk.now())
	if pe.ptab.Len() != 0 {
		t.Errorf("%d templates left an hour after the last connection", pe.ptab.Len())
	}
}

func TestPersistentNetmask(t *testing.T) {
	ds := realServers(3, 8080, lvs.NAT)
	pe := newPersistEnv(t, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds, timeout: time.Minute, maskBits: 24})
	first, _ := pe.connect(t, lvs.TCP, ap(cli4, 1), 80)
	for i := range 20 {
		c := netip.AddrFrom4([4]byte{192, 0, 2, byte(30 + i)})
		if got, _ := pe.connect(t, lvs.TCP, ap(c, 1), 80); got != first {
			t.Fatalf("client %v of the same /24 went to %v, want %v", c, got, first)
		}
	}
	if pe.ptab.Len() != 1 {
		t.Errorf("%d templates for one /24, want 1", pe.ptab.Len())
	}
}

// TestPersistentServerDown: a client whose server goes down is scheduled
// again at its next connection, and stays on the new server.
func TestPersistentServerDown(t *testing.T) {
	ds := realServers(3, 8080, lvs.NAT)
	pe := newPersistEnv(t, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds, timeout: time.Minute, maskBits: 32})
	first, _ := pe.connect(t, lvs.TCP, ap(cli4, 1), 80)
	for _, d := range ds {
		if d.Addr.Netip() == first {
			d.SetAvailable(false, pe.clk.now())
		}
	}
	moved, _ := pe.connect(t, lvs.TCP, ap(cli4, 2), 80)
	if moved == first {
		t.Fatalf("scheduled to its unavailable server %v", first)
	}
	if again, _ := pe.connect(t, lvs.TCP, ap(cli4, 3), 80); again != moved {
		t.Errorf("after moving to %v the client went to %v", moved, again)
	}
}

// TestAllPortsService: a port-zero service takes every port of the VIP that
// has no service of its own; a client keeps its server across ports, the
// real server sees the port the client addressed, and replies are
// translated back.
func TestAllPortsService(t *testing.T) {
	ds := realServers(3, 0, lvs.NAT)
	other := realServers(1, 5353, lvs.NAT)
	pe := newPersistEnv(t,
		persistSpec{proto: lvs.TCP, ports: []uint16{0}, dests: ds, timeout: time.Minute, maskBits: 32},
		persistSpec{proto: lvs.TCP, ports: []uint16{53}, dests: other},
	)
	first, port := pe.connect(t, lvs.TCP, ap(cli4, 1000), 80)
	if port != 80 {
		t.Errorf("port 80 forwarded to port %d", port)
	}
	for i, vport := range []uint16{443, 8443, 22, 65535} {
		got, port := pe.connect(t, lvs.TCP, ap(cli4, uint16(1001+i)), vport)
		if got != first || port != vport {
			t.Errorf("port %d went to %v:%d, want %v:%d", vport, got, port, first, vport)
		}
	}
	// A port with its own service is not the all-ports service's.
	if got, port := pe.connect(t, lvs.TCP, ap(cli4, 2000), 53); got != other[0].Addr.Netip() || port != 5353 {
		t.Errorf("port 53 went to %v:%d, want its own service's %v:5353", got, port, other[0])
	}
	// The reply from the real server's port 8443 goes back as VIP:8443.
	reply := pkt{srcMAC: rsMAC, src: ap(first, 8443), dst: ap(cli4, 1002), flags: ack}.build(t)
	v, p := pe.process(reply, forward.VNetHdr{})
	if v != forward.Transmit {
		t.Fatalf("reply verdict %v", v)
	}
	ip := ipOf(forward.Ethernet, p.Frame())
	if src, sport := netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(l4Of(ip)[0:2]); src != vip4 || sport != 8443 {
		t.Errorf("reply from %v:%d, want %v:8443", src, sport, vip4)
	}
	checkSums(t, ip)
}

// TestPortListService: a service over ports 80 and 443 shares its
// scheduler and its templates between them; other ports are not its.
func TestPortListService(t *testing.T) {
	ds := realServers(3, 0, lvs.NAT)
	pe := newPersistEnv(t, persistSpec{proto: lvs.TCP, ports: []uint16{80, 443}, dests: ds, timeout: time.Minute, maskBits: 32})
	c2 := netip.MustParseAddr("192.0.2.11")
	a80, _ := pe.connect(t, lvs.TCP, ap(cli4, 1), 80)
	b443, _ := pe.connect(t, lvs.TCP, ap(c2, 1), 443)
	if a80 == b443 {
		t.Errorf("rr gave two clients the same server across the ports: one scheduler should serve both")
	}
	if got, port := pe.connect(t, lvs.TCP, ap(cli4, 2), 443); got != a80 || port != 443 {
		t.Errorf("client 1 on 443: %v:%d, want %v:443 (its template from port 80)", got, port, a80)
	}
	if got, _ := pe.connect(t, lvs.TCP, ap(c2, 2), 80); got != b443 {
		t.Errorf("client 2 on 80: %v, want %v", got, b443)
	}
	v, _ := pe.process(pkt{src: ap(cli4, 3), dst: ap(vip4, 8080), flags: syn}.build(t), forward.VNetHdr{})
	if v != forward.ToStack {
		t.Errorf("port 8080, outside the list: verdict %v, want to-stack", v)
	}
}

// TestOnePacket: every datagram of a one-packet UDP service is scheduled on
// its own (rr: the servers take turns even for one client port) and leaves no
// connection; with persistence they all follow the template, whose
// controlled count drops back to 0 after each.
func TestOnePacket(t *testing.T) {
	t.Run("scheduled per datagram", func(t *testing.T) {
		ds := realServers(3, 53, lvs.DR)
		pe := newPersistEnv(t, persistSpec{proto: lvs.UDP, ports: []uint16{53}, dests: ds, onePacket: true})
		seen := map[netip.Addr]int{}
		for range 9 {
			got, _ := pe.connect(t, lvs.UDP, ap(cli4, 5000), 53)
			seen[got]++
		}
		for _, d := range ds {
			if seen[d.Addr.Netip()] != 3 {
				t.Errorf("datagrams per server %v, want 3 each", seen)
				break
			}
		}
		if pe.tab.Len() != 0 {
			t.Errorf("%d connection entries, want none", pe.tab.Len())
		}
		if got := pe.svcs[0].Stats.Conns.Load(); got != 9 {
			t.Errorf("service counts %d connections, want 9 (one per datagram)", got)
		}
		if got := ds[0].Stats.InPkts.Load(); got != 3 {
			t.Errorf("first server counts %d packets, want 3", got)
		}
	})
	t.Run("persistent", func(t *testing.T) {
		ds := realServers(3, 53, lvs.DR)
		pe := newPersistEnv(t, persistSpec{proto: lvs.UDP, ports: []uint16{53}, dests: ds, onePacket: true, timeout: time.Minute, maskBits: 32})
		first, _ := pe.connect(t, lvs.UDP, ap(cli4, 5000), 53)
		for i := range 5 {
			pe.clk.advance(30 * time.Second)
			if got, _ := pe.connect(t, lvs.UDP, ap(cli4, uint16(5001+i)), 53); got != first {
				t.Fatalf("datagram %d went to %v, want %v", i, got, first)
			}
		}
		pe.ptab.Range(func(in persist.Info) bool {
			if in.Controlled != 0 || in.Expires != int64(time.Minute) {
				t.Errorf("template controls %d, expires in %v; want 0 and 1m (restarted by the last datagram)", in.Controlled, time.Duration(in.Expires))
			}
			return true
		})
		if pe.tab.Len() != 0 {
			t.Errorf("%d connection entries, want none", pe.tab.Len())
		}
	})
	t.Run("nat keeps entries", func(t *testing.T) {
		ds := realServers(2, 5353, lvs.NAT)
		pe := newPersistEnv(t, persistSpec{proto: lvs.UDP, ports: []uint16{53}, dests: ds, onePacket: true})
		pe.connect(t, lvs.UDP, ap(cli4, 5000), 53)
		if pe.tab.Len() != 1 {
			t.Errorf("a NAT one-packet datagram left %d entries, want 1 (its reply needs it)", pe.tab.Len())
		}
	})
}

// TestPersistAllocs: a persistent service's new connection allocates only
// its connection entry when the client has a template, and a one-packet
// datagram allocates nothing.
func TestPersistAllocs(t *testing.T) {
	ds := realServers(3, 8080, lvs.NAT)
	pe := newPersistEnv(t,
		persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds, timeout: time.Hour, maskBits: 32},
		persistSpec{proto: lvs.UDP, ports: []uint16{53}, dests: realServers(3, 53, lvs.DR), onePacket: true, timeout: time.Hour, maskBits: 32},
	)
	pe.connect(t, lvs.TCP, ap(cli4, 1), 80)
	pe.connect(t, lvs.UDP, ap(cli4, 1), 53)
	sport := uint16(2)
	syn := runner(t, pe.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{}, forward.Transmit,
		func(b []byte) { binary.BigEndian.PutUint16(b[34:], sport); sport++ })
	if n := testing.AllocsPerRun(1000, syn); n > 1 {
		t.Errorf("persistent new connection: %v allocations, want at most 1 (the connection entry)", n)
	}
	dgram := runner(t, pe.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 53), proto: lvs.UDP, payload: "q"}.build(t), forward.VNetHdr{}, forward.Transmit, nil)
	if n := testing.AllocsPerRun(1000, dgram); n != 0 {
		t.Errorf("one-packet datagram: %v allocations, want 0", n)
	}
}

// BenchmarkNewConnPersistent is BenchmarkNewConn for a persistent service
// whose client has a template: template lookup, then the connection entry.
func BenchmarkNewConnPersistent(b *testing.B) {
	ds := realServers(3, 8080, lvs.NAT)
	pe := newPersistEnv(b, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds, timeout: 24 * time.Hour, maskBits: 32})
	pe.connect(b, lvs.TCP, ap(cli4, 1), 80)
	var n uint32
	run := runner(b, pe.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: syn}.build(b), forward.VNetHdr{}, forward.Transmit,
		func(buf []byte) {
			n++
			binary.BigEndian.PutUint16(buf[34:], uint16(n))
			if n&0xffff == 0 {
				pe.clk.advance(time.Hour)
				pe.tab.Expire(pe.clk.now())
			}
		})
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

// BenchmarkNewConnPersistentNewClient is a persistent service's new
// connection from a client without a template: lookup miss, scheduler, new
// template, connection entry.
func BenchmarkNewConnPersistentNewClient(b *testing.B) {
	ds := realServers(3, 8080, lvs.NAT)
	pe := newPersistEnv(b, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds, timeout: time.Second, maskBits: 32})
	var n uint32
	run := runner(b, pe.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 80), flags: syn}.build(b), forward.VNetHdr{}, forward.Transmit,
		func(buf []byte) {
			n++
			// A new client address (host part of 192.0.2.0/24 and the port).
			buf[14+15] = byte(n)
			binary.BigEndian.PutUint16(buf[34:], uint16(n>>8))
			fixIPv4(buf[14:])
			if n&0xff == 0 {
				pe.clk.advance(time.Hour)
				pe.tab.Expire(pe.clk.now())
				pe.ptab.Expire(pe.clk.now())
			}
		})
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

// BenchmarkOnePacket is a datagram of a one-packet DR service: scheduled,
// forwarded, no entry.
func BenchmarkOnePacket(b *testing.B) {
	pe := newPersistEnv(b, persistSpec{proto: lvs.UDP, ports: []uint16{53}, dests: realServers(3, 53, lvs.DR), onePacket: true})
	run := runner(b, pe.w, pkt{src: ap(cli4, 1), dst: ap(vip4, 53), proto: lvs.UDP, payload: "q"}.build(b), forward.VNetHdr{}, forward.Transmit, nil)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}
