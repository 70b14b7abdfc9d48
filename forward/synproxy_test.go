package forward_test

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/internal/pkttest"
	"github.com/lvsd/lvsd/lvs"
)

// seg describes a TCP segment for the SYN proxy's tests: unlike pkt, it
// sets the acknowledgment number, the window and options.
type seg struct {
	srcMAC   lvs.MAC // default cliMAC
	src, dst netip.AddrPort
	flags    uint8
	seq, ack uint32
	win      uint16
	opts     []layers.TCPOption
	payload  string
}

func (s seg) build(tb testing.TB) []byte {
	tb.Helper()
	if s.srcMAC == (lvs.MAC{}) {
		s.srcMAC = cliMAC
	}
	v6 := s.dst.Addr().Is6()
	et := layers.EthernetTypeIPv4
	if v6 {
		et = layers.EthernetTypeIPv6
	}
	var nl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice()}
		nl, ipl = ip, ip
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice()}
		nl, ipl = ip, ip
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.src.Port()), DstPort: layers.TCPPort(s.dst.Port()), Seq: s.seq, Ack: s.ack,
		Window: s.win, Options: s.opts,
		FIN: s.flags&fin != 0, SYN: s.flags&syn != 0, RST: s.flags&rst != 0, ACK: s.flags&ack != 0}
	tcp.SetNetworkLayerForChecksum(nl)
	return pkttest.Serialize(tb, &layers.Ethernet{DstMAC: hw(dirMAC), SrcMAC: hw(s.srcMAC), EthernetType: et}, ipl, tcp, gopacket.Payload(s.payload))
}

// decoded is what the tests read of a frame the SYN proxy wrote or
// forwarded.
type decoded struct {
	dstMAC   lvs.MAC
	src, dst netip.AddrPort
	flags    uint8
	seq, ack uint32
	win      uint16
	mss      uint16
	sack     bool // SACK-permitted
	ws, ts   bool
	blocks   []uint32 // SACK block edges
	payload  string
}

func decode(tb testing.TB, frame []byte) decoded {
	tb.Helper()
	pkttest.CheckSums(tb, ipOf(forward.Ethernet, frame))
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var d decoded
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if eth == nil || tcp == nil || p.NetworkLayer() == nil {
		tb.Fatalf("not a TCP frame: %v", p)
	}
	copy(d.dstMAC[:], eth.DstMAC)
	src, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Src().Raw())
	dst, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Dst().Raw())
	d.src, d.dst = netip.AddrPortFrom(src, uint16(tcp.SrcPort)), netip.AddrPortFrom(dst, uint16(tcp.DstPort))
	d.flags = tcp.Contents[13]
	d.seq, d.ack, d.win = tcp.Seq, tcp.Ack, tcp.Window
	for _, o := range tcp.Options {
		switch o.OptionType {
		case layers.TCPOptionKindMSS:
			d.mss = binary.BigEndian.Uint16(o.OptionData)
		case layers.TCPOptionKindSACKPermitted:
			d.sack = true
		case layers.TCPOptionKindWindowScale:
			d.ws = true
		case layers.TCPOptionKindTimestamps:
			d.ts = true
		case layers.TCPOptionKindSACK:
			for i := 0; i+4 <= len(o.OptionData); i += 4 {
				d.blocks = append(d.blocks, binary.BigEndian.Uint32(o.OptionData[i:]))
			}
		}
	}
	d.payload = string(tcp.Payload)
	return d
}

// linuxSYNOptions are the options of a Linux client's SYN.
func linuxSYNOptions() []layers.TCPOption {
	return []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
		{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
}

func sackOption(edges ...uint32) layers.TCPOption {
	data := make([]byte, 4*len(edges))
	for i, x := range edges {
		binary.BigEndian.PutUint32(data[4*i:], x)
	}
	return layers.TCPOption{OptionType: layers.TCPOptionKindSACK, OptionLength: uint8(2 + len(data)), OptionData: data}
}

// spEnv is a NAT service with the SYN proxy on, in one family.
type spEnv struct {
	*env
	cli, vip, rip netip.AddrPort
}

func newSPEnv(t testing.TB, v6 bool) *spEnv {
	cli, vip, rip := cli4, vip4, rip4
	if v6 {
		cli, vip, rip = cli6, vip6, rip6
	}
	e := newEnv(t, envOpts{}, svcSpec{vip: vip, port: 80, proto: lvs.TCP, dest: rs(rip, 8080, lvs.NAT)})
	e.svc(vip, 80, lvs.TCP).Synproxy = true
	return &spEnv{env: e, cli: ap(cli, 40000), vip: ap(vip, 80), rip: ap(rip, 8080)}
}

// one processes frame and returns the verdict and the frames written (the
// emitted ones first).
func (e *spEnv) one(t testing.TB, frame []byte, vnet forward.VNetHdr, want forward.Verdict) [][]byte {
	t.Helper()
	v, out := e.processAll(frame, vnet)
	if v != want {
		t.Fatalf("verdict %v, want %v (drop reason %v)", v, want, e.w.LastDrop())
	}
	return out
}

func (e *spEnv) state(t *testing.T) conntrack.State {
	t.Helper()
	in := lvs.Tuple{Src: lvs.AddrFromNetip(e.cli.Addr()), Dst: lvs.AddrFromNetip(e.vip.Addr()), SPort: e.cli.Port(), DPort: e.vip.Port(), Proto: lvs.TCP}
	ent, _ := e.tab.Lookup(&in)
	if ent == nil {
		return conntrack.StateNone
	}
	return ent.State()
}

// handshake runs the SYN proxy's handshake (client ISN 5000, real server
// ISN 90000) and returns the cookie.
func (e *spEnv) handshake(t testing.TB) uint32 {
	t.Helper()
	out := e.one(t, seg{src: e.cli, dst: e.vip, flags: syn, seq: 5000, win: 64240, opts: linuxSYNOptions()}.build(t), forward.VNetHdr{}, forward.Transmit)
	sa := decode(t, out[0])
	cookie := sa.seq
	out = e.one(t, seg{src: e.cli, dst: e.vip, flags: ack, seq: 5001, ack: cookie + 1, win: 502}.build(t), forward.VNetHdr{}, forward.Transmit)
	if d := decode(t, out[0]); d.flags != syn || d.dst != e.rip {
		t.Fatalf("SYN to the real server: %+v", d)
	}
	out = e.one(t, seg{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: syn | ack, seq: 90000, ack: 5001, win: 28960,
		opts: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}}.build(t), forward.VNetHdr{}, forward.Transmit)
	if len(out) != 2 {
		t.Fatalf("after the real server's SYN-ACK: %d frames, want the window update and the ACK", len(out))
	}
	return cookie
}

// TestSynproxyHandshake: the director answers the client's SYN with a
// cookie SYN-ACK (zero window, the client's MSS clamped to 1452 and SACK;
// no window scale or timestamps) and keeps no entry; the client's ACK opens
// the connection and becomes the SYN to the real server with the client's
// ISN and options; the real server's SYN-ACK is answered with the ACK that
// completes its handshake, and the client gets a window update; then data
// in both directions is translated by the delta (sequence numbers toward
// the client, acknowledgments and SACK blocks toward the real server), with
// full and partial checksums.
func TestSynproxyHandshake(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			e := newSPEnv(t, v6)
			out := e.one(t, seg{src: e.cli, dst: e.vip, flags: syn, seq: 5000, win: 64240, opts: linuxSYNOptions()}.build(t), forward.VNetHdr{}, forward.Transmit)
			sa := decode(t, out[0])
			want := decoded{dstMAC: cliMAC, src: e.vip, dst: e.cli, flags: syn | ack, seq: sa.seq, ack: 5001, win: 0, mss: 1452, sack: true}
			if sa.dstMAC != want.dstMAC || sa.src != want.src || sa.dst != want.dst || sa.flags != want.flags || sa.ack != want.ack ||
				sa.win != 0 || sa.mss != 1452 || !sa.sack || sa.ws || sa.ts || sa.payload != "" {
				t.Fatalf("SYN-ACK: %+v\nwant %+v", sa, want)
			}
			cookie := sa.seq
			if n := e.tab.Len(); n != 0 {
				t.Fatalf("after the SYN: %d entries, want 0", n)
			}
			if c := e.f.Counters(); c.SynCookies != 1 || c.NewConns != 0 {
				t.Errorf("counters after the SYN: %+v", c)
			}

			out = e.one(t, seg{src: e.cli, dst: e.vip, flags: ack, seq: 5001, ack: cookie + 1, win: 502}.build(t), forward.VNetHdr{}, forward.Transmit)
			s := decode(t, out[0])
			if s.dstMAC != rsMAC || s.src != e.cli || s.dst != e.rip || s.flags != syn || s.seq != 5000 || s.ack != 0 ||
				s.mss != 1452 || !s.sack || s.ws || s.ts || s.win != 502 {
				t.Fatalf("SYN to the real server: %+v", s)
			}
			if st := e.state(t); st != conntrack.StateSynRecv {
				t.Errorf("state after the ACK: %v, want SYN_RECV", st)
			}
			if c := e.f.Counters(); c.SynproxyOpened != 1 || c.NewConns != 1 {
				t.Errorf("counters after the ACK: %+v", c)
			}

			out = e.one(t, seg{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: syn | ack, seq: 90000, ack: 5001, win: 28960}.build(t), forward.VNetHdr{}, forward.Transmit)
			if len(out) != 2 {
				t.Fatalf("%d frames, want the window update and the ACK", len(out))
			}
			wu, a := decode(t, out[0]), decode(t, out[1])
			if wu.dstMAC != cliMAC || wu.src != e.vip || wu.dst != e.cli || wu.flags != ack || wu.seq != cookie+1 || wu.ack != 5001 || wu.win != 28960 {
				t.Errorf("window update: %+v", wu)
			}
			if a.dstMAC != rsMAC || a.src != e.cli || a.dst != e.rip || a.flags != ack || a.seq != 5001 || a.ack != 90001 || a.win != 502 {
				t.Errorf("ACK to the real server: %+v", a)
			}
			if st := e.state(t); st != conntrack.StateEstablished {
				t.Errorf("state after the SYN-ACK: %v, want ESTABLISHED", st)
			}

			for _, partial := range []bool{false, true} {
				// Client data with a SACK block of the real server's data.
				in := seg{src: e.cli, dst: e.vip, flags: ack, seq: 5001, ack: cookie + 1, win: 502, payload: "GET / HTTP/1.0\r\n\r\n",
					opts: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop, OptionLength: 1}, {OptionType: layers.TCPOptionKindNop, OptionLength: 1},
						sackOption(cookie+101, cookie+201)}}.build(t)
				vnet := forward.VNetHdr{}
				if partial {
					vnet = makePartial(forward.Ethernet, in)
				}
				v, outs := e.processAll(in, vnet)
				if v != forward.Transmit || len(outs) != 1 {
					t.Fatalf("client data: %v, %d frames", v, len(outs))
				}
				if partial {
					completePartial(forward.Ethernet, outs[0], vnet)
				}
				d := decode(t, outs[0])
				if d.dst != e.rip || d.seq != 5001 || d.ack != 90001 || d.payload != "GET / HTTP/1.0\r\n\r\n" ||
					len(d.blocks) != 2 || d.blocks[0] != 90101 || d.blocks[1] != 90201 {
					t.Errorf("partial %v: client data to the real server: %+v", partial, d)
				}

				// The real server's reply.
				rep := seg{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: ack, seq: 90001, ack: 5019, win: 28960, payload: "HTTP/1.0 200 OK\r\n"}.build(t)
				vnet = forward.VNetHdr{}
				if partial {
					vnet = makePartial(forward.Ethernet, rep)
				}
				v, outs = e.processAll(rep, vnet)
				if v != forward.Transmit || len(outs) != 1 {
					t.Fatalf("reply: %v, %d frames", v, len(outs))
				}
				if partial {
					completePartial(forward.Ethernet, outs[0], vnet)
				}
				d = decode(t, outs[0])
				if d.dstMAC != cliMAC || d.src != e.vip || d.dst != e.cli || d.seq != cookie+1 || d.ack != 5019 || d.payload != "HTTP/1.0 200 OK\r\n" {
					t.Errorf("partial %v: reply to the client: %+v", partial, d)
				}
			}
			if n := e.tab.Len(); n != 1 {
				t.Errorf("%d entries, want 1", n)
			}
		})
	}
}

// TestSynproxyBadSegments: segments to a SYN-proxy service without a
// connection that neither open nor complete one are dropped and counted
// by reason, and create no entry; an RST goes to the netstack as without
// the proxy.
func TestSynproxyBadSegments(t *testing.T) {
	e := newSPEnv(t, false)
	out := e.one(t, seg{src: e.cli, dst: e.vip, flags: syn, seq: 5000, opts: linuxSYNOptions()}.build(t), forward.VNetHdr{}, forward.Transmit)
	cookie := decode(t, out[0]).seq
	for _, tc := range []struct {
		name string
		s    seg
		want forward.DropReason
	}{
		{"forged cookie", seg{src: e.cli, dst: e.vip, flags: ack, seq: 5001, ack: cookie + 1 + 32}, forward.DropSynproxyCookie},
		{"other ISN", seg{src: e.cli, dst: e.vip, flags: ack, seq: 7001, ack: cookie + 1}, forward.DropSynproxyCookie},
		{"other port", seg{src: ap(e.cli.Addr(), 40001), dst: e.vip, flags: ack, seq: 5001, ack: cookie + 1}, forward.DropSynproxyCookie},
		{"data with a forged cookie", seg{src: e.cli, dst: e.vip, flags: ack, seq: 5001, ack: 12345, payload: "x"}, forward.DropSynproxyCookie},
		{"syn fin", seg{src: e.cli, dst: e.vip, flags: syn | fin, seq: 5000}, forward.DropSynproxyFlags},
		{"syn ack", seg{src: e.cli, dst: e.vip, flags: syn | ack, seq: 5000, ack: 1}, forward.DropSynproxyFlags},
		{"no flags", seg{src: e.cli, dst: e.vip, seq: 5000}, forward.DropSynproxyFlags},
	} {
		before := e.f.Counters()
		if v, _ := e.process(tc.s.build(t), forward.VNetHdr{}); v != forward.Drop {
			t.Errorf("%s: %v, want Drop", tc.name, v)
		}
		if r := e.dropReason(before); r != tc.want {
			t.Errorf("%s: drop reason %v, want %v", tc.name, r, tc.want)
		}
	}
	if v, _ := e.process(seg{src: e.cli, dst: e.vip, flags: rst, seq: 5001}.build(t), forward.VNetHdr{}); v != forward.ToStack {
		t.Errorf("RST: %v, want ToStack", v)
	}
	if n := e.tab.Len(); n != 0 {
		t.Errorf("%d entries, want 0", n)
	}
}

// TestSynproxyCookieExpiry: an ACK with a cookie older than two cookie
// periods (128 s) opens nothing.
func TestSynproxyCookieExpiry(t *testing.T) {
	e := newSPEnv(t, false)
	out := e.one(t, seg{src: e.cli, dst: e.vip, flags: syn, seq: 5000, opts: linuxSYNOptions()}.build(t), forward.VNetHdr{}, forward.Transmit)
	cookie := decode(t, out[0]).seq
	e.clk.advance(129 * time.Second)
	before := e.f.Counters()
	if v, _ := e.process(seg{src: e.cli, dst: e.vip, flags: ack, seq: 5001, ack: cookie + 1}.build(t), forward.VNetHdr{}); v != forward.Drop {
		t.Fatalf("expired cookie: %v, want Drop", v)
	}
	if r := e.dropReason(before); r != forward.DropSynproxyCookie {
		t.Errorf("drop reason %v", r)
	}
}

// TestSynproxyRetransmit: a client segment while the real server has not
// answered (the SYN was lost) sends the SYN again, including a zero-window
// probe whose sequence number is the ISN; a real server's segment other
// than its SYN-ACK is dropped; a SYN-ACK the director answered already is
// answered again, not forwarded; and the real server's RST before its
// SYN-ACK reaches the client at the sequence number the client expects.
func TestSynproxyRetransmit(t *testing.T) {
	e := newSPEnv(t, false)
	out := e.one(t, seg{src: e.cli, dst: e.vip, flags: syn, seq: 5000, opts: linuxSYNOptions()}.build(t), forward.VNetHdr{}, forward.Transmit)
	cookie := decode(t, out[0]).seq
	// The ACK is lost; the client's zero-window probe opens the connection.
	out = e.one(t, seg{src: e.cli, dst: e.vip, flags: ack, seq: 5000, ack: cookie + 1, win: 502}.build(t), forward.VNetHdr{}, forward.Transmit)
	if d := decode(t, out[0]); d.flags != syn || d.seq != 5000 || d.dst != e.rip {
		t.Fatalf("SYN: %+v", d)
	}
	// The SYN is lost: the next probe sends it again.
	out = e.one(t, seg{src: e.cli, dst: e.vip, flags: ack, seq: 5000, ack: cookie + 1, win: 502}.build(t), forward.VNetHdr{}, forward.Transmit)
	if d := decode(t, out[0]); d.flags != syn || d.seq != 5000 || d.dst != e.rip || d.mss != 1452 {
		t.Fatalf("SYN again: %+v", d)
	}
	before := e.f.Counters()
	if v, _ := e.process(seg{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: ack, seq: 90001, ack: 5001}.build(t), forward.VNetHdr{}); v != forward.Drop {
		t.Errorf("a real server's ACK before its SYN-ACK: %v", v)
	}
	if r := e.dropReason(before); r != forward.DropSynproxyState {
		t.Errorf("drop reason %v", r)
	}
	// The real server refuses.
	out = e.one(t, seg{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: rst | ack, seq: 0, ack: 5001}.build(t), forward.VNetHdr{}, forward.Transmit)
	if d := decode(t, out[0]); d.flags != rst|ack || d.seq != cookie+1 || d.src != e.vip || d.dst != e.cli {
		t.Errorf("RST to the client: %+v", d)
	}
	if st := e.state(t); st != conntrack.StateClose {
		t.Errorf("state %v, want CLOSE", st)
	}

	// A second connection whose ACK to the real server is lost.
	e2 := newSPEnv(t, false)
	e2.handshake(t)
	out = e2.one(t, seg{srcMAC: rsMAC, src: e2.rip, dst: e2.cli, flags: syn | ack, seq: 90000, ack: 5001, win: 28960}.build(t), forward.VNetHdr{}, forward.Transmit)
	if len(out) != 1 {
		t.Fatalf("%d frames, want the ACK only", len(out))
	}
	if d := decode(t, out[0]); d.flags != ack || d.dst != e2.rip || d.seq != 5001 || d.ack != 90001 {
		t.Errorf("ACK again: %+v", d)
	}
}

// TestSynproxyRSTWindow: the RST checks of the connection table work on a
// SYN-proxy connection, each side in its own sequence space: a blind RST
// from either side is dropped (rst-window), an RST at the real server's
// sequence number reaches the client translated.
func TestSynproxyRSTWindow(t *testing.T) {
	e := newSPEnv(t, false)
	e.tab.SetCheckRST(true)
	cookie := e.handshake(t)
	for _, s := range []seg{
		{src: e.cli, dst: e.vip, flags: rst, seq: 5001 + 1<<30},
		{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: rst | ack, seq: cookie + 1, ack: 5001}, // the cookie's space is not the real server's
	} {
		before := e.f.Counters()
		if v, _ := e.process(s.build(t), forward.VNetHdr{}); v != forward.Drop {
			t.Errorf("blind RST %+v: %v", s, v)
		}
		if r := e.dropReason(before); r != forward.DropRSTWindow {
			t.Errorf("drop reason %v", r)
		}
	}
	if st := e.state(t); st != conntrack.StateEstablished {
		t.Fatalf("state %v", st)
	}
	out := e.one(t, seg{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: rst | ack, seq: 90001, ack: 5001}.build(t), forward.VNetHdr{}, forward.Transmit)
	if d := decode(t, out[0]); d.flags != rst|ack || d.seq != cookie+1 || d.dst != e.cli {
		t.Errorf("RST to the client: %+v", d)
	}
	if st := e.state(t); st != conntrack.StateClose {
		t.Errorf("state %v, want CLOSE", st)
	}
}

// TestSynproxyOff: without the key, a SYN to the same service creates an
// entry and goes to the real server, as IPVS does.
func TestSynproxyOff(t *testing.T) {
	e := newSPEnv(t, false)
	e.svc(vip4, 80, lvs.TCP).Synproxy = false
	out := e.one(t, seg{src: e.cli, dst: e.vip, flags: syn, seq: 5000, opts: linuxSYNOptions()}.build(t), forward.VNetHdr{}, forward.Transmit)
	if d := decode(t, out[0]); d.dst != e.rip || d.flags != syn || !d.ts || !d.ws {
		t.Errorf("SYN: %+v", d)
	}
	if n := e.tab.Len(); n != 1 {
		t.Errorf("%d entries", n)
	}
}

// TestSynproxyAllocs: the cookie SYN-ACK, the cookie check of an invalid
// ACK, and the translation of an established connection's segments in both
// directions allocate nothing.
// synproxyFrames returns a handshaken SYN-proxy service and the frames of
// its packet paths: a SYN of another client port, an ACK with an invalid
// cookie, a client segment with a SACK block, a real server's reply.
func synproxyFrames(t testing.TB) (e *spEnv, frames []spFrame) {
	e = newSPEnv(t, false)
	cookie := e.handshake(t)
	return e, []spFrame{
		{"syn", seg{src: ap(cli4, 41000), dst: e.vip, flags: syn, seq: 5000, opts: linuxSYNOptions()}.build(t), forward.Transmit},
		{"bad-ack", seg{src: ap(cli4, 41000), dst: e.vip, flags: ack, seq: 5001, ack: 777}.build(t), forward.Drop},
		{"in", seg{src: e.cli, dst: e.vip, flags: ack, seq: 5001, ack: cookie + 1, win: 502, payload: "data",
			opts: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop, OptionLength: 1}, {OptionType: layers.TCPOptionKindNop, OptionLength: 1}, sackOption(cookie+11, cookie+21)}}.build(t), forward.Transmit},
		{"reply", seg{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: ack, seq: 90001, ack: 5005, win: 28960, payload: "data"}.build(t), forward.Transmit},
	}
}

type spFrame struct {
	name  string
	frame []byte
	want  forward.Verdict
}

// TestSynproxyAllocs: the cookie SYN-ACK, the cookie check of an invalid
// ACK, and the translation of an established connection's segments in both
// directions allocate nothing.
func TestSynproxyAllocs(t *testing.T) {
	e, frames := synproxyFrames(t)
	for _, tc := range frames {
		run := runner(t, e.w, tc.frame, forward.VNetHdr{}, tc.want, nil)
		if n := testing.AllocsPerRun(1000, run); n != 0 {
			t.Errorf("%s: %v allocations per packet", tc.name, n)
		}
	}
}

func BenchmarkSynproxy(b *testing.B) {
	e, frames := synproxyFrames(b)
	for _, tc := range frames {
		b.Run(tc.name, func(b *testing.B) {
			run := runner(b, e.w, tc.frame, forward.VNetHdr{}, tc.want, nil)
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}

// icmpAbout builds an ICMPv4 fragmentation-needed from src to dst quoting
// the IP and TCP headers of frame (an Ethernet frame).
func icmpAbout(t testing.TB, srcMAC lvs.MAC, src, dst netip.Addr, frame []byte) []byte {
	t.Helper()
	quote := frame[14 : 14+20+20]
	return pkttest.Serialize(t,
		&layers.Ethernet{DstMAC: hw(dirMAC), SrcMAC: hw(srcMAC), EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1400},
		gopacket.Payload(quote))
}

// TestSynproxyICMP: an ICMP error about a segment of a SYN-proxy
// connection reaches the other side with the quoted sequence numbers in
// that side's space: the real server's sequence number in an error about
// a segment the director sent the client (path-MTU discovery: the real
// server checks it against what it sent), the client's acknowledgment
// number in an error about the client's segment.
func TestSynproxyICMP(t *testing.T) {
	e := newSPEnv(t, false)
	cookie := e.handshake(t)
	router := netip.MustParseAddr("192.0.2.1")
	quotedSeq := func(frame []byte, off int) uint32 {
		ip := ipOf(forward.Ethernet, frame)
		if fold(onesSum(ip[:20], 0)) != 0xffff || fold(onesSum(ip[20:], 0)) != 0xffff {
			t.Errorf("IPv4 or ICMP checksum invalid")
		}
		q := ip[20+8:]
		if fold(onesSum(q[:20], 0)) != 0xffff {
			t.Errorf("quoted IPv4 checksum invalid")
		}
		// The quoted TCP checksum, over the quote's pseudo-header and
		// its 20 bytes (the segment had no payload).
		if fold(onesSum(q[20:40], pseudoSum(q[:40]))) != 0xffff {
			t.Errorf("quoted TCP checksum invalid")
		}
		return binary.BigEndian.Uint32(q[20+off:])
	}

	// About the director's segment to the client (VIP to client, seq in
	// the cookie's space), from a router on the client's side.
	toCli := seg{src: e.vip, dst: e.cli, flags: ack, seq: cookie + 1 + 1000, ack: 5001, win: 100}.build(t)
	out := e.one(t, icmpAbout(t, cliMAC, router, e.vip.Addr(), toCli), forward.VNetHdr{}, forward.Transmit)
	if got := quotedSeq(out[0], 4); got != 90001+1000 {
		t.Errorf("quoted sequence number to the real server: %d, want %d", got, 90001+1000)
	}

	// About the client's segment to the real server (ack in its space),
	// from a router on the real servers' side.
	toRS := seg{src: e.cli, dst: e.rip, flags: ack, seq: 5001, ack: 90001 + 7, win: 100}.build(t)
	out = e.one(t, icmpAbout(t, rsMAC, router, e.cli.Addr(), toRS), forward.VNetHdr{}, forward.Transmit)
	if got := quotedSeq(out[0], 8); got != cookie+1+7 {
		t.Errorf("quoted acknowledgment number to the client: %d, want %d", got, cookie+1+7)
	}
}

// TestSynproxyIPLink: the handshake and the translation on a link without
// Ethernet headers (TUN), in both families.
func TestSynproxyIPLink(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		cli, vip, rip := cli4, vip4, rip4
		et := []byte{0x08, 0x00}
		if v6 {
			cli, vip, rip, et = cli6, vip6, rip6, []byte{0x86, 0xdd}
		}
		e := newEnv(t, envOpts{link: forward.IP}, svcSpec{vip: vip, port: 80, proto: lvs.TCP, dest: rs(rip, 8080, lvs.NAT)})
		e.svc(vip, 80, lvs.TCP).Synproxy = true
		c, v, r := ap(cli, 40000), ap(vip, 80), ap(rip, 8080)
		// in strips the Ethernet header of a built frame; out puts one back
		// for decode.
		in := func(s seg) []byte { return s.build(t)[14:] }
		out := func(frames [][]byte, i int) decoded {
			t.Helper()
			if len(frames) <= i {
				t.Fatalf("%d frames", len(frames))
			}
			return decode(t, append(append(make([]byte, 12), et...), frames[i]...))
		}
		step := func(s seg) [][]byte {
			t.Helper()
			verdict, frames := e.processAll(in(s), forward.VNetHdr{})
			if verdict != forward.Transmit {
				t.Fatalf("v6 %v: %+v: %v (%v)", v6, s, verdict, e.w.LastDrop())
			}
			return frames
		}
		sa := out(step(seg{src: c, dst: v, flags: syn, seq: 5000, opts: linuxSYNOptions()}), 0)
		if sa.flags != syn|ack || sa.dst != c || sa.ack != 5001 || sa.win != 0 {
			t.Fatalf("v6 %v: SYN-ACK %+v", v6, sa)
		}
		if s := out(step(seg{src: c, dst: v, flags: ack, seq: 5001, ack: sa.seq + 1, win: 500}), 0); s.flags != syn || s.dst != r || s.seq != 5000 {
			t.Fatalf("v6 %v: SYN %+v", v6, s)
		}
		frames := step(seg{src: r, dst: c, flags: syn | ack, seq: 70000, ack: 5001, win: 1000})
		if wu, a := out(frames, 0), out(frames, 1); wu.dst != c || wu.win != 1000 || a.dst != r || a.ack != 70001 {
			t.Fatalf("v6 %v: window update %+v, ACK %+v", v6, wu, a)
		}
		if d := out(step(seg{src: r, dst: c, flags: ack, seq: 70001, ack: 5001, win: 1000, payload: "x"}), 0); d.src != v || d.seq != sa.seq+1 {
			t.Errorf("v6 %v: reply %+v", v6, d)
		}
		if d := out(step(seg{src: c, dst: v, flags: ack, seq: 5001, ack: sa.seq + 2, win: 500, payload: "y"}), 0); d.dst != r || d.ack != 70002 {
			t.Errorf("v6 %v: client segment %+v", v6, d)
		}
	}
}

// TestSynproxyExplain: a dry run (Forwarder.Explain) of a SYN-proxy
// service's segments rewrites them as Process would and records nothing:
// the SYN's SYN-ACK, the valid ACK's SYN to the real server (a new
// connection, not made), and a segment of an open connection translated
// without moving its state.
func TestSynproxyExplain(t *testing.T) {
	e := newSPEnv(t, false)
	svc := e.svc(vip4, 80, lvs.TCP)
	svc.Sched = previewSched{svc.Sched.(fakeSched)}
	synF := seg{src: e.cli, dst: e.vip, flags: syn, seq: 5000}.build(t)
	x := e.f.Explain(synF)
	if x.Verdict != forward.Transmit {
		t.Fatalf("SYN: %v %v", x.Verdict, x.Drop)
	}
	sa := decode(t, x.After)
	if sa.flags != syn|ack || sa.ack != 5001 || sa.mss != 536 {
		t.Errorf("SYN-ACK: %+v", sa)
	}
	x = e.f.Explain(seg{src: e.cli, dst: e.vip, flags: ack, seq: 5001, ack: sa.seq + 1, win: 500}.build(t))
	if x.Verdict != forward.Transmit || !x.NewConn {
		t.Fatalf("ACK: %v %v new %v", x.Verdict, x.Drop, x.NewConn)
	}
	if d := decode(t, x.After); d.flags != syn || d.dst != e.rip || d.seq != 5000 {
		t.Errorf("SYN to the real server: %+v", d)
	}
	if n := e.tab.Len(); n != 0 {
		t.Fatalf("%d entries after dry runs", n)
	}
	cookie := e.handshake(t)
	rep := seg{srcMAC: rsMAC, src: e.rip, dst: e.cli, flags: fin | ack, seq: 90001, ack: 5001, win: 100}.build(t)
	x = e.f.Explain(rep)
	if x.Verdict != forward.Transmit || !x.Found || !x.Reply {
		t.Fatalf("reply: %+v", x)
	}
	if d := decode(t, x.After); d.seq != cookie+1 || d.src != e.vip {
		t.Errorf("reply: %+v", d)
	}
	if st := e.state(t); st != conntrack.StateEstablished {
		t.Errorf("state after a dry run of a FIN: %v", st)
	}
}

// previewSched is fakeSched with a dry run (sched.Previewer).
type previewSched struct{ fakeSched }

func (s previewSched) Preview(*lvs.Tuple) *lvs.Dest { return s.d }
