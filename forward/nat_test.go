package forward_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

type natCase struct {
	name         string
	link         forward.Framing
	proto        lvs.Proto
	cli, vip     netip.Addr
	rip          netip.Addr
	vport, rport uint16
	zeroUDPCsum  bool
	ipOptions    bool
	pad          int
	payload      string
}

var natCases = []natCase{
	{name: "tcp4", proto: lvs.TCP, cli: cli4, vip: vip4, rip: rip4, vport: 80, rport: 80},
	{name: "tcp4 port mapping", proto: lvs.TCP, cli: cli4, vip: vip4, rip: rip4, vport: 80, rport: 8080, payload: "GET / HTTP/1.0\r\n\r\n"},
	{name: "tcp4 odd payload", proto: lvs.TCP, cli: cli4, vip: vip4, rip: rip4, vport: 80, rport: 8081, payload: "odd"},
	{name: "tcp4 ip options", proto: lvs.TCP, cli: cli4, vip: vip4, rip: rip4, vport: 80, rport: 8080, ipOptions: true},
	{name: "tcp4 ethernet padding", proto: lvs.TCP, cli: cli4, vip: vip4, rip: rip4, vport: 80, rport: 8080, pad: 7},
	{name: "udp4 port mapping", proto: lvs.UDP, cli: cli4, vip: vip4, rip: rip4, vport: 53, rport: 5353, payload: "query"},
	{name: "udp4 checksum 0", proto: lvs.UDP, cli: cli4, vip: vip4, rip: rip4, vport: 53, rport: 5353, zeroUDPCsum: true, payload: "query"},
	{name: "tcp6 port mapping", proto: lvs.TCP, cli: cli6, vip: vip6, rip: rip6, vport: 443, rport: 8443, payload: "hello"},
	{name: "udp6", proto: lvs.UDP, cli: cli6, vip: vip6, rip: rip6, vport: 53, rport: 53, payload: "query"},
	{name: "tcp4 ip link", link: forward.IP, proto: lvs.TCP, cli: cli4, vip: vip4, rip: rip4, vport: 80, rport: 8080},
	{name: "udp6 ip link", link: forward.IP, proto: lvs.UDP, cli: cli6, vip: vip6, rip: rip6, vport: 53, rport: 5353, payload: "q"},
}

// TestNAT sends a client's first packet and the real server's reply through
// a NAT service and compares the decoded output with what IPVS would send.
func TestNAT(t *testing.T) {
	for _, tc := range natCases {
		t.Run(tc.name, func(t *testing.T) {
			d := rs(tc.rip, tc.rport, lvs.NAT)
			e := newEnv(t, envOpts{link: tc.link}, svcSpec{vip: tc.vip, port: tc.vport, proto: tc.proto, dest: d})

			var flags uint8
			if tc.proto == lvs.TCP {
				flags = syn
			}
			in := pkt{link: tc.link, src: ap(tc.cli, 40000), dst: ap(tc.vip, tc.vport), proto: tc.proto, flags: flags,
				ttl: 50, tos: 0x10, df: true, ipOptions: tc.ipOptions, payload: tc.payload,
				zeroUDPCsum: tc.zeroUDPCsum, pad: tc.pad}.build(t)

			v, p := e.process(in, forward.VNetHdr{})
			if v != forward.Transmit {
				t.Fatalf("client packet: verdict %v (drop %v), want transmit", v, e.dropReason(forward.Counters{}))
			}
			out := p.Frame()
			want := summarize(t, tc.link, in)
			want.Dst = ap(tc.rip, tc.rport).String()
			want.TTL-- // decrement_ttl, as in every method
			if tc.link == forward.Ethernet {
				want.DstMAC, want.SrcMAC = macStr(rsMAC), macStr(dirMAC)
			}
			if diff := cmp.Diff(want, summarize(t, tc.link, out)); diff != "" {
				t.Errorf("client packet (-want +got):\n%s", diff)
			}
			if p.Off != headroom || p.Len != len(in) || p.VNet != (forward.VNetHdr{}) {
				t.Errorf("Off %d Len %d VNet %+v changed", p.Off, p.Len, p.VNet)
			}
			checkSums(t, ipOf(tc.link, out))
			if tc.zeroUDPCsum {
				if c := binary.BigEndian.Uint16(l4Of(ipOf(tc.link, out))[6:]); c != 0 {
					t.Errorf("UDP checksum %#04x, want 0 (none) kept", c)
				}
			}

			// The reply, from the real server to the client.
			var rflags uint8
			if tc.proto == lvs.TCP {
				rflags = syn | ack
			}
			reply := pkt{link: tc.link, srcMAC: rsMAC, src: ap(tc.rip, tc.rport), dst: ap(tc.cli, 40000), proto: tc.proto,
				flags: rflags, ttl: 64, payload: "reply " + tc.payload, zeroUDPCsum: tc.zeroUDPCsum, pad: tc.pad}.build(t)
			v, p = e.process(reply, forward.VNetHdr{})
			if v != forward.Transmit {
				t.Fatalf("reply: verdict %v, want transmit", v)
			}
			out = p.Frame()
			want = summarize(t, tc.link, reply)
			want.Src = ap(tc.vip, tc.vport).String()
			want.TTL = 63 // routed through the director
			if tc.link == forward.Ethernet {
				want.DstMAC, want.SrcMAC = macStr(cliMAC), macStr(dirMAC)
			}
			if diff := cmp.Diff(want, summarize(t, tc.link, out)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			checkSums(t, ipOf(tc.link, out))

			c := e.f.Counters()
			if c.ForwardedIn != 1 || c.ForwardedOut != 1 || c.NewConns != 1 || c.Dropped() != 0 {
				t.Errorf("counters %+v", c)
			}
			svc := e.svc(tc.vip, tc.vport, tc.proto)
			e.tab.Stats() // folds the workers' packet counters into lvs.Stats
			inLen, outLen := uint64(len(ipOf(tc.link, in))), uint64(len(ipOf(tc.link, reply)))
			for name, st := range map[string]*lvs.Stats{"dest": &d.Stats, "service": svc.Stats} {
				got := [5]uint64{st.Conns.Load(), st.InPkts.Load(), st.InBytes.Load(), st.OutPkts.Load(), st.OutBytes.Load()}
				if want := [5]uint64{1, 1, inLen, 1, outLen}; got != want {
					t.Errorf("%s stats conns/inpkts/inbytes/outpkts/outbytes = %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestNATPartialChecksum sends frames whose L4 checksum is partial
// (VIRTIO_NET_HDR_F_NEEDS_CSUM, as a TAP with offloads hands them over):
// after NAT the virtio header is unchanged and completing the checksum as
// the kernel does gives a valid packet.
func TestNATPartialChecksum(t *testing.T) {
	tests := []struct {
		natCase
		gso forward.VNetHdr // GSO fields added to the partial-checksum header
	}{
		{natCase: natCases[1]}, // tcp4 port mapping
		{natCase: natCases[5]}, // udp4
		{natCase: natCases[7]}, // tcp6
		{natCase: natCases[8]}, // udp6
		{natCase: natCases[9]}, // tcp4 ip link
		{natCase: natCase{name: "tcp4 gso", proto: lvs.TCP, cli: cli4, vip: vip4, rip: rip4, vport: 80, rport: 8080,
			payload: string(bytes.Repeat([]byte("x"), 3000))},
			gso: forward.VNetHdr{GSOType: forward.VirtioNetHdrGSOTCPv4, GSOSize: 1448, HdrLen: 54}},
		{natCase: natCase{name: "tcp6 gso ecn", proto: lvs.TCP, cli: cli6, vip: vip6, rip: rip6, vport: 443, rport: 8443,
			payload: string(bytes.Repeat([]byte("y"), 3001))},
			gso: forward.VNetHdr{GSOType: forward.VirtioNetHdrGSOTCPv6 | forward.VirtioNetHdrGSOECN, GSOSize: 1428, HdrLen: 74}},
		{natCase: natCase{name: "udp4 gso l4", proto: lvs.UDP, cli: cli4, vip: vip4, rip: rip4, vport: 443, rport: 4443,
			payload: string(bytes.Repeat([]byte("q"), 2000))},
			gso: forward.VNetHdr{GSOType: forward.VirtioNetHdrGSOUDPL4, GSOSize: 1200, HdrLen: 42}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := rs(tc.rip, tc.rport, lvs.NAT)
			e := newEnv(t, envOpts{link: tc.link}, svcSpec{vip: tc.vip, port: tc.vport, proto: tc.proto, dest: d})
			var flags, rflags uint8
			if tc.proto == lvs.TCP {
				flags, rflags = syn, syn|ack
			}
			for _, dir := range []struct {
				name  string
				p     pkt
				check func(summary) summary
			}{
				{"in", pkt{src: ap(tc.cli, 40000), dst: ap(tc.vip, tc.vport), flags: flags}, func(s summary) summary {
					s.Dst = ap(tc.rip, tc.rport).String()
					s.TTL-- // a super-frame too: its segments inherit the header
					return s
				}},
				{"out", pkt{srcMAC: rsMAC, src: ap(tc.rip, tc.rport), dst: ap(tc.cli, 40000), flags: rflags}, func(s summary) summary {
					s.Src = ap(tc.vip, tc.vport).String()
					s.TTL--
					return s
				}},
			} {
				dir.p.link, dir.p.proto, dir.p.payload = tc.link, tc.proto, tc.payload
				frame := dir.p.build(t)
				want := dir.check(summarize(t, tc.link, frame))
				vnet := makePartial(tc.link, frame)
				vnet.GSOType, vnet.GSOSize, vnet.HdrLen = tc.gso.GSOType, tc.gso.GSOSize, tc.gso.HdrLen
				v, p := e.process(frame, vnet)
				if v != forward.Transmit {
					t.Fatalf("%s: verdict %v (drop %v)", dir.name, v, e.dropReason(forward.Counters{}))
				}
				if p.VNet != vnet {
					t.Errorf("%s: virtio header %+v, want unchanged %+v", dir.name, p.VNet, vnet)
				}
				out := p.Frame()
				completePartial(tc.link, out, p.VNet)
				checkSums(t, ipOf(tc.link, out))
				got := summarize(t, tc.link, out)
				want.DstMAC, want.SrcMAC = got.DstMAC, got.SrcMAC // MACs checked by TestNAT
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s (-want +got):\n%s", dir.name, diff)
				}
			}
		})
	}
}

// TestNATChecksumReference checks the incremental updates against a
// recomputation from scratch over many addresses and ports, including the
// values where ones' complement arithmetic wraps.
func TestNATChecksumReference(t *testing.T) {
	addrs := []netip.Addr{
		netip.MustParseAddr("192.0.2.0"), netip.MustParseAddr("192.0.2.255"),
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.254"),
	}
	ports := []uint16{0, 1, 80, 0x7fff, 0x8000, 0xfffe, 0xffff}
	for _, proto := range []lvs.Proto{lvs.TCP, lvs.UDP} {
		for _, rip := range addrs {
			for _, rport := range ports {
				d := rs(rip, rport, lvs.NAT)
				e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 0xffff, proto: proto, dest: d})
				for _, payload := range []string{"", "\xff\xff", "\x00"} {
					for _, sport := range []uint16{1, 0x4000, 0x7fff, 0xfffe, 0xffff} {
						in := pkt{src: ap(cli4, sport), dst: ap(vip4, 0xffff), proto: proto, flags: syn, payload: payload}.build(t)
						v, p := e.process(in, forward.VNetHdr{})
						if v != forward.Transmit {
							t.Fatalf("verdict %v", v)
						}
						checkSums(t, ipOf(forward.Ethernet, p.Frame()))
						// A destination of port 0 keeps the client's port.
						from := rport
						if from == 0 {
							from = 0xffff
						}
						reply := pkt{srcMAC: rsMAC, src: ap(rip, from), dst: ap(cli4, sport), proto: proto, flags: ack, payload: payload}.build(t)
						if v, p = e.process(reply, forward.VNetHdr{}); v != forward.Transmit {
							t.Fatalf("reply verdict %v", v)
						}
						checkSums(t, ipOf(forward.Ethernet, p.Frame()))
					}
				}
				if t.Failed() {
					t.Fatalf("%v %v:%d", proto, rip, rport)
				}
			}
		}
	}
}

// TestTCPStateCounters follows a NAT connection through the handshake and
// close and checks the real server's active/inactive counts.
func TestTCPStateCounters(t *testing.T) {
	d := rs(rip4, 8080, lvs.NAT)
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d})
	cli := func(f uint8) []byte { return pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: f}.build(t) }
	srv := func(f uint8) []byte {
		return pkt{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: f}.build(t)
	}
	steps := []struct {
		frame          []byte
		active, inactv int32
		state          conntrack.State
	}{
		{cli(syn), 0, 1, conntrack.StateSynRecv},
		{srv(syn | ack), 0, 1, conntrack.StateSynRecv},
		{cli(ack), 1, 0, conntrack.StateEstablished},
		{srv(ack), 1, 0, conntrack.StateEstablished},
		{cli(fin | ack), 0, 1, conntrack.StateCloseWait}, // IPVS: the client closes first
		{srv(fin | ack), 0, 1, conntrack.StateTimeWait},
	}
	in := lvs.Tuple{Src: lvs.AddrFromNetip(cli4), Dst: lvs.AddrFromNetip(vip4), SPort: 40000, DPort: 80, Proto: lvs.TCP}
	for i, s := range steps {
		if v, _ := e.process(s.frame, forward.VNetHdr{}); v != forward.Transmit {
			t.Fatalf("step %d: verdict %v", i, v)
		}
		ent, _ := e.tab.Lookup(&in)
		if got := [2]int32{d.ActiveConns.Load(), d.InactiveConns.Load()}; got != [2]int32{s.active, s.inactv} || ent.State() != s.state {
			t.Errorf("step %d: active/inactive %v state %v, want %d/%d %v", i, got, ent.State(), s.active, s.inactv, s.state)
		}
	}
	e.clk.advance(conntrack.TCPTimeWaitTimeout + conntrack.ExpireInterval + 1) // one tick of the timer wheel
	if n := e.tab.Expire(e.clk.now()); n != 1 || d.InactiveConns.Load() != 0 {
		t.Errorf("Expire = %d, inactive %d", n, d.InactiveConns.Load())
	}
	// The connection is gone: an ACK goes to the netstack, which answers
	// RST.
	if v, _ := e.process(cli(ack), forward.VNetHdr{}); v != forward.ToStack {
		t.Errorf("ACK after expiry: %v, want to-stack", v)
	}
}

// TestConfigReload checks that a new snapshot applies to new connections
// while existing ones keep their real server.
func TestConfigReload(t *testing.T) {
	d := rs(rip4, 8080, lvs.NAT)
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d})
	first := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t)
	if v, _ := e.process(first, forward.VNetHdr{}); v != forward.Transmit {
		t.Fatalf("verdict %v", v)
	}
	e.f.SetConfig(nil)
	next := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack}.build(t)
	if v, _ := e.process(next, forward.VNetHdr{}); v != forward.Transmit {
		t.Errorf("established packet after reload: %v, want transmit", v)
	}
	other := pkt{src: ap(cli4, 40001), dst: ap(vip4, 80), flags: syn}.build(t)
	if v, _ := e.process(other, forward.VNetHdr{}); v != forward.ToStack {
		t.Errorf("new connection without service: %v, want to-stack", v)
	}
}
