package forward_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/internal/pkttest"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/persist"
)

// described builds the frame of a described packet on pe's link.
func (pe *persistEnv) described(t *testing.T, proto lvs.Proto, src, dst netip.AddrPort, flags uint8) []byte {
	t.Helper()
	b, err := pe.f.BuildFrame(&forward.Described{Proto: proto, Src: src, Dst: dst, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExplainChangesNothing explains a SYN to an rr NAT service twice: the
// explanation names the service, the scheduler's choice and the rewrite, and
// afterwards the table, the counters, the real servers' counters and the
// scheduler's position are as before (the next real SYN goes to the server
// the explanation named).
func TestExplainChangesNothing(t *testing.T) {
	ds := realServers(3, 8080, lvs.NAT)
	pe := newPersistEnv(t, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds})
	if got, _ := pe.connect(t, lvs.TCP, ap(cli4, 40000), 80); got != ds[0].Addr.Netip() {
		t.Fatalf("first connection to %v", got)
	}
	frame := pe.described(t, lvs.TCP, ap(cli4, 40001), ap(vip4, 80), syn)
	before := pe.f.Counters()
	for range 2 {
		x := pe.f.Explain(frame)
		if x.Verdict != forward.Transmit || x.Service != pe.svcs[0] || !x.Scheduled || x.Choice != ds[1] || !x.NewConn || x.Found {
			t.Fatalf("explanation: verdict %v service %v scheduled %v choice %v new %v found %v",
				x.Verdict, x.Service, x.Scheduled, x.Choice, x.NewConn, x.Found)
		}
		pkttest.Check(t, false, x.After, pkttest.Dst(ap(ds[1].Addr.Netip(), 8080)), pkttest.Src(ap(cli4, 40001)),
			pkttest.TTL(63), pkttest.ValidChecksums(), pkttest.DstMAC(lvs.MAC{0x02, 0, 0x5e, 0, 0, 22}))
		pkttest.Check(t, false, x.Before, pkttest.Dst(ap(vip4, 80)), pkttest.ValidChecksums())
	}
	if after := pe.f.Counters(); after != before {
		t.Errorf("counters moved: %+v, then %+v", before, after)
	}
	if n := pe.tab.Len(); n != 1 {
		t.Errorf("%d connections after the explanations, want 1", n)
	}
	if c := ds[1].Stats.Conns.Load(); c != 0 {
		t.Errorf("the chosen real server counts %d connections", c)
	}
	if got, _ := pe.connect(t, lvs.TCP, ap(cli4, 40002), 80); got != ds[1].Addr.Netip() {
		t.Errorf("next real connection to %v, want %v: the explanation moved rr", got, ds[1].Addr)
	}
}

// TestExplainConnection explains packets of an existing connection: the
// connection's state and time left, no scheduler, and nothing moves (an
// ACK would otherwise establish it). A SYN on a connection
// to a removed real server is explained as rescheduled, and the connection
// stays in the table.
func TestExplainConnection(t *testing.T) {
	ds := realServers(2, 8080, lvs.NAT)
	pe := newPersistEnv(t, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds})
	pe.connect(t, lvs.TCP, ap(cli4, 40000), 80)
	pe.clk.advance(10 * time.Second)
	x := pe.f.Explain(pe.described(t, lvs.TCP, ap(cli4, 40000), ap(vip4, 80), ack))
	if !x.Found || x.Reply || x.ConnState != conntrack.StateSynRecv || x.Scheduled || x.Verdict != forward.Transmit {
		t.Fatalf("explanation: found %v reply %v state %v scheduled %v verdict %v", x.Found, x.Reply, x.ConnState, x.Scheduled, x.Verdict)
	}
	if x.ConnLeft <= 0 || x.ConnLeft > 60*time.Second {
		t.Errorf("time left %v", x.ConnLeft)
	}
	e, _ := pe.tab.Lookup(&lvs.Tuple{Src: lvs.AddrFromNetip(cli4), Dst: lvs.AddrFromNetip(vip4), SPort: 40000, DPort: 80, Proto: lvs.TCP})
	if e == nil || e.State() != conntrack.StateSynRecv || e.Expires(pe.clk.now()) != x.ConnLeft {
		t.Fatalf("the connection after the explanation: %+v", e)
	}

	// The real server's reply: un-NATed to the VIP.
	x = pe.f.Explain(pe.described(t, lvs.TCP, ap(ds[0].Addr.Netip(), 8080), ap(cli4, 40000), syn|ack))
	if !x.Found || !x.Reply || x.Service != pe.svcs[0] || x.Verdict != forward.Transmit {
		t.Fatalf("reply: found %v reply %v service %v verdict %v", x.Found, x.Reply, x.Service, x.Verdict)
	}
	pkttest.Check(t, false, x.After, pkttest.Src(ap(vip4, 80)), pkttest.ValidChecksums())

	// The real server is removed (with expire_nodest_conn): a real packet
	// would remove the connection and be scheduled again; the explanation
	// says so and removes nothing.
	pe.tab.SetExpireNodestConn(true)
	ds[0].Removed.Store(true)
	ds[0].Available.Store(false)
	x = pe.f.Explain(pe.described(t, lvs.TCP, ap(cli4, 40000), ap(vip4, 80), syn))
	if !x.Found || x.Check != conntrack.Reschedule || !x.Scheduled || x.Choice != ds[1] || !x.NewConn {
		t.Fatalf("SYN on a connection to a removed server: found %v state %v check %v scheduled %v choice %v", x.Found, x.ConnState, x.Check, x.Scheduled, x.Choice)
	}
	if e, _ := pe.tab.Lookup(&x.Tuple); e == nil || e.Dest != ds[0] {
		t.Errorf("the closed connection left the table, or changed: %+v", e)
	}
}

// TestExplainPersistence: a client without a template is explained as
// scheduled into a new one, which is not created; a client with one follows
// it, whose timer and count do not move.
func TestExplainPersistence(t *testing.T) {
	ds := realServers(3, 0, lvs.DR)
	pe := newPersistEnv(t, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds, timeout: 300 * time.Second, maskBits: 32})
	x := pe.f.Explain(pe.described(t, lvs.TCP, ap(cli4, 40000), ap(vip4, 80), syn))
	if !x.Scheduled || !x.NewTemplate || x.Template != nil || x.Choice != ds[0] {
		t.Fatalf("no template yet: scheduled %v new %v template %v choice %v", x.Scheduled, x.NewTemplate, x.Template, x.Choice)
	}
	if pe.ptab.Len() != 0 {
		t.Fatalf("the explanation created %d templates", pe.ptab.Len())
	}
	pe.connect(t, lvs.TCP, ap(cli4, 40000), 80)
	var deadline int64
	pe.ptab.Range(func(i persist.Info) bool { deadline = i.Expires; return false })
	pe.clk.advance(time.Minute)
	x = pe.f.Explain(pe.described(t, lvs.TCP, ap(cli4, 40001), ap(vip4, 80), syn))
	if x.Template == nil || x.Template.Dest != ds[0] || x.Scheduled || x.Verdict != forward.Transmit {
		t.Fatalf("with a template: template %v scheduled %v verdict %v", x.Template, x.Scheduled, x.Verdict)
	}
	if n := x.Template.Controlled(); n != 1 {
		t.Errorf("the template controls %d connections after the explanation, want 1", n)
	}
	var now int64
	pe.ptab.Range(func(i persist.Info) bool { now = i.Expires; return false })
	if now != deadline-int64(time.Minute) {
		t.Errorf("template expiry moved: %v, then %v a minute later", time.Duration(deadline), time.Duration(now))
	}
	pkttest.Check(t, false, x.After, pkttest.Dst(ap(vip4, 80)), pkttest.DstMAC(lvs.MAC{0x02, 0, 0x5e, 0, 0, 21}))
}

// TestExplainDrops: no usable real server, and a source over its rate,
// which the explanation does not count in the rate.
func TestExplainDrops(t *testing.T) {
	ds := realServers(2, 8080, lvs.NAT)
	pe := newPersistEnv(t, persistSpec{proto: lvs.TCP, ports: []uint16{80}, dests: ds})
	for _, d := range ds {
		d.Weight.Store(0)
	}
	x := pe.f.Explain(pe.described(t, lvs.TCP, ap(cli4, 40000), ap(vip4, 80), syn))
	if x.Verdict != forward.Drop || x.Drop != forward.DropNoDest || !x.Scheduled || x.Choice != nil || x.Service != pe.svcs[0] {
		t.Fatalf("no usable server: verdict %v drop %v scheduled %v choice %v", x.Verdict, x.Drop, x.Scheduled, x.Choice)
	}
	for _, d := range ds {
		d.Weight.Store(1)
	}
	pe.tab.SetSourceLimits(conntrack.SourceLimits{NewPerSec: 1, PrefixV4: 32, PrefixV6: 128})
	for range 3 {
		x = pe.f.Explain(pe.described(t, lvs.TCP, ap(cli4, 40000), ap(vip4, 80), syn))
		if x.Verdict != forward.Transmit {
			t.Fatalf("first connection of the second explained as %v %v", x.Verdict, x.Drop)
		}
	}
	pe.connect(t, lvs.TCP, ap(cli4, 40000), 80)
	x = pe.f.Explain(pe.described(t, lvs.TCP, ap(cli4, 40001), ap(vip4, 80), syn))
	if x.Verdict != forward.Drop || x.Drop != forward.DropSourceRate {
		t.Errorf("second connection of the second: %v %v, want drop source-rate", x.Verdict, x.Drop)
	}
	// Not a SYN, no connection: the netstack's.
	x = pe.f.Explain(pe.described(t, lvs.TCP, ap(cli4, 40009), ap(vip4, 80), ack))
	if x.Verdict != forward.ToStack || x.Service != pe.svcs[0] {
		t.Errorf("stray ACK: %v, service %v", x.Verdict, x.Service)
	}
}

// TestBuildFrame checks the described frames of both families and
// protocols against the packet kit's checks.
func TestBuildFrame(t *testing.T) {
	for _, link := range []forward.Framing{forward.Ethernet, forward.IP} {
		e := newEnv(t, envOpts{link: link})
		for _, c := range []struct {
			proto    lvs.Proto
			src, dst netip.AddrPort
		}{
			{lvs.TCP, ap(cli4, 1), ap(vip4, 80)},
			{lvs.UDP, ap(cli4, 2), ap(vip4, 53)},
			{lvs.TCP, ap(cli6, 3), ap(vip6, 443)},
			{lvs.UDP, ap(cli6, 4), ap(vip6, 53)},
		} {
			b, err := e.f.BuildFrame(&forward.Described{Proto: c.proto, Src: c.src, Dst: c.dst, Flags: syn})
			if err != nil {
				t.Fatal(err)
			}
			pkttest.Check(t, link == forward.IP, b, pkttest.Src(c.src), pkttest.Dst(c.dst), pkttest.TTL(64), pkttest.ValidChecksums())
			if link == forward.Ethernet {
				pkttest.Check(t, false, b, pkttest.DstMAC(dirMAC), pkttest.SrcMAC(forward.DescribedMAC))
			}
		}
		if _, err := e.f.BuildFrame(&forward.Described{Proto: lvs.TCP, Src: ap(cli4, 1), Dst: ap(vip6, 80)}); err == nil {
			t.Error("a frame from IPv4 to IPv6 was built")
		}
		if _, err := e.f.BuildFrame(&forward.Described{Proto: 1, Src: ap(cli4, 1), Dst: ap(vip4, 80)}); err == nil {
			t.Error("an ICMP frame was built")
		}
	}
}
