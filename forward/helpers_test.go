package forward_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/internal/pkttest"
	"github.com/lvsd/lvsd/lvs"
)

// Addresses: the packet kit's (documentation ranges only).
var (
	dirMAC   = lvs.MAC(pkttest.DirMAC)   // the director (lvsd's TAP)
	cliMAC   = lvs.MAC(pkttest.CliMAC)   // the client or its router
	rsMAC    = lvs.MAC(pkttest.RSMAC)    // real servers
	otherMAC = lvs.MAC(pkttest.OtherMAC) // another host on the bridge
	bcastMAC = lvs.MAC(pkttest.BcastMAC)

	cli4 = pkttest.Cli4
	vip4 = pkttest.VIP4
	rip4 = pkttest.RIP4
	dip4 = pkttest.DIP4
	cli6 = pkttest.Cli6
	vip6 = pkttest.VIP6
	rip6 = pkttest.RIP6
	dip6 = netip.MustParseAddr("2001:db8:1::1")
)

// TCP flags.
const (
	fin = conntrack.FlagFIN
	syn = conntrack.FlagSYN
	rst = conntrack.FlagRST
	ack = conntrack.FlagACK
)

// fakeSched always picks one destination (nil: none usable).
type fakeSched struct{ d *lvs.Dest }

func (s fakeSched) Schedule(*lvs.Tuple) *lvs.Dest { return s.d }

// fakeClock is the connection table's clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// rs returns a real server whose MAC is known.
func rs(addr netip.Addr, port uint16, m lvs.Method) *lvs.Dest {
	d := lvs.NewDest(addr, port, m, 1)
	d.Neigh = new(lvs.Neighbor)
	d.Neigh.Store(rsMAC)
	return d
}

// svcSpec describes one virtual service with one destination.
type svcSpec struct {
	vip    netip.Addr
	port   uint16
	proto  lvs.Proto
	dest   *lvs.Dest // nil: the scheduler finds none
	tunSrc netip.Addr
}

type env struct {
	tb   testing.TB
	clk  *fakeClock
	tab  *conntrack.Table
	f    *forward.Forwarder
	w    *forward.Worker
	cfg  *forward.Config
	link forward.Framing
}

type envOpts struct {
	link forward.Framing
	max  int
	mtu  int
}

func newEnv(tb testing.TB, o envOpts, specs ...svcSpec) *env {
	tb.Helper()
	clk := &fakeClock{}
	clk.ns.Store(int64(time.Hour))
	tab := conntrack.New(conntrack.Options{Max: o.max, Clock: clk.now})
	f := forward.New(forward.Options{Link: o.link, MAC: dirMAC, Table: tab, MTU: o.mtu})
	cfg := &forward.Config{Services: map[lvs.ServiceKey]*forward.Service{}}
	// The director's source toward any real server: the tunSrc of the
	// specs, one per family (a source of the other family is none).
	var src4, src6 netip.Addr
	for _, s := range specs {
		k := lvs.ServiceKey{Addr: lvs.AddrFromNetip(s.vip), Port: s.port, Proto: s.proto}
		svc := &forward.Service{Key: k, Sched: fakeSched{s.dest}}
		if s.dest != nil {
			svc.Dests = []*lvs.Dest{s.dest}
		}
		if s.tunSrc.Is4() {
			src4 = s.tunSrc
		} else if s.tunSrc.Is6() {
			src6 = s.tunSrc
		}
		cfg.Services[k] = svc
	}
	if src4.IsValid() || src6.IsValid() {
		cfg.Source = func(dst netip.Addr) netip.Addr {
			if dst.Unmap().Is4() {
				if src4.IsValid() {
					return src4
				}
				return src6 // the wrong family: no source for dst
			}
			if src6.IsValid() {
				return src6
			}
			return src4
		}
	}
	f.SetConfig(cfg)
	return &env{tb: tb, clk: clk, tab: tab, f: f, w: f.NewWorker(), cfg: cfg, link: o.link}
}

func (e *env) svc(vip netip.Addr, port uint16, proto lvs.Proto) *forward.Service {
	return e.cfg.Services[lvs.ServiceKey{Addr: lvs.AddrFromNetip(vip), Port: port, Proto: proto}]
}

// headroom is the space in front of a test frame: as much as stack.Headroom, the
// links' (the deepest tunnel needs TunnelHeadroomMax, a link header and
// EmitHeadroom).
const headroom = 128

// process runs a copy of frame, with headroom in front, through the worker.
func (e *env) process(frame []byte, vnet forward.VNetHdr) (forward.Verdict, *forward.Packet) {
	buf := make([]byte, headroom+len(frame)+16)
	copy(buf[headroom:], frame)
	p := &forward.Packet{Buf: buf, Off: headroom, Len: len(frame), VNet: vnet}
	return e.w.Process(p), p
}

// dropReason returns the only drop counter that grew since before.
func (e *env) dropReason(before forward.Counters) forward.DropReason {
	after := e.f.Counters()
	r := forward.DropNone
	for i := range after.Drops {
		if after.Drops[i] != before.Drops[i] {
			if r != forward.DropNone {
				e.tb.Errorf("several drop counters changed: %v and %v", r, forward.DropReason(i))
			}
			r = forward.DropReason(i)
		}
	}
	return r
}

// pkt describes a frame to build.
type pkt struct {
	link           forward.Framing
	dstMAC, srcMAC lvs.MAC // default dirMAC, cliMAC
	src, dst       netip.AddrPort
	proto          lvs.Proto // default TCP
	flags          uint8     // TCP flags
	seq            uint32    // TCP sequence number; 0 means 1000
	ttl            uint8     // default 64
	tos            uint8
	df             bool
	fragOff        uint16 // IPv4 fragment offset, 8-byte units
	mf             bool
	ipOptions      bool // IPv4: a 4-byte router-alert option (IHL 6)
	payload        string
	zeroUDPCsum    bool
	pad            int // trailer bytes after the IP packet (beyond gopacket's padding)
}

func hw(m lvs.MAC) net.HardwareAddr { return pkttest.HW(m) }

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	return pkttest.Serialize(tb, ls...)
}

// build builds the frame with the packet kit.
func (p pkt) build(tb testing.TB) []byte {
	tb.Helper()
	return pkttest.Frame{
		L3: p.link == forward.IP, DstMAC: p.dstMAC, SrcMAC: p.srcMAC, Src: p.src, Dst: p.dst,
		Proto: uint8(p.proto), Flags: p.flags, Seq: p.seq, TTL: p.ttl, TOS: p.tos, DF: p.df, FragOff: p.fragOff, MF: p.mf,
		IPOptions: p.ipOptions, Payload: p.payload, ZeroUDPCsum: p.zeroUDPCsum, Pad: p.pad,
	}.Build(tb)
}

// The packet kit's frame accessors and reference checksums, for this
// package's tests.

func ipOf(link forward.Framing, frame []byte) []byte { return pkttest.IPOf(link == forward.IP, frame) }
func l4Of(ip []byte) []byte                          { return pkttest.L4Of(ip) }
func onesSum(b []byte, s uint32) uint32              { return pkttest.OnesSum(b, s) }
func fold(s uint32) uint16                           { return pkttest.Fold(s) }
func pseudoSum(ip []byte) uint32                     { return pkttest.PseudoSum(ip) }
func csumOffset(ip []byte) int                       { return pkttest.CsumOffset(ip) }

func checkSums(tb testing.TB, ip []byte) {
	tb.Helper()
	pkttest.CheckSums(tb, ip)
}

// l3Off is the offset of the IP header in a frame.
func l3Off(link forward.Framing) int { return pkttest.L3Off(link == forward.IP) }

// makePartial turns the L4 checksum of frame into the partial checksum a
// kernel hands over with VIRTIO_NET_HDR_F_NEEDS_CSUM (the pseudo-header sum,
// not complemented) and returns the matching virtio header.
func makePartial(link forward.Framing, frame []byte) forward.VNetHdr {
	ip := ipOf(link, frame)
	l4 := l4Of(ip)
	binary.BigEndian.PutUint16(l4[csumOffset(ip):], fold(pseudoSum(ip)))
	return forward.VNetHdr{
		Flags:      forward.VirtioNetHdrFNeedsCsum,
		CsumStart:  uint16(l3Off(link) + len(ip) - len(l4)),
		CsumOffset: uint16(csumOffset(ip)),
	}
}

// completePartial does what the kernel does with a CHECKSUM_PARTIAL frame
// (skb_checksum_help): sum from CsumStart to the end of the IP packet and
// store the complement at CsumStart+CsumOffset (0 becomes 0xffff for UDP).
func completePartial(link forward.Framing, frame []byte, h forward.VNetHdr) {
	ip := ipOf(link, frame)
	seg := frame[h.CsumStart : l3Off(link)+len(ip)]
	c := ^fold(onesSum(seg, 0))
	if c == 0 && csumOffset(ip) == 6 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[h.CsumStart+h.CsumOffset:], c)
}

// summary is what the tests compare of a forwarded TCP/UDP frame.
type summary = pkttest.Summary

func summarize(tb testing.TB, link forward.Framing, frame []byte) summary {
	tb.Helper()
	return pkttest.Summarize(tb, link == forward.IP, frame)
}

func macStr(m lvs.MAC) string { return pkttest.HW(m).String() }

func ap(a netip.Addr, port uint16) netip.AddrPort { return pkttest.AP(a, port) }

// ttlDecremented returns a copy of frame (of a link of framing link) with
// its TTL or hop limit one lower and, for IPv4, the header checksum
// computed from scratch: the plain reference of the fast path's
// incremental update.
func ttlDecremented(tb testing.TB, link forward.Framing, frame []byte) []byte {
	tb.Helper()
	out := append([]byte(nil), frame...)
	ip := ipOf(link, out)
	if ip[0]>>4 == 6 {
		ip[7]--
		return out
	}
	ip[8]--
	ip[10], ip[11] = 0, 0
	hl := int(ip[0]&0xf) * 4
	binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip[:hl], 0))
	return out
}
