package forward_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// TestAwaitNeighbor: a frame to a real server (NAT, DR) or tunnel endpoint
// (TUN) whose MAC is not known yet is rewritten exactly as with the MAC,
// but for a zero destination MAC, and waits for the MAC in the real
// server's slot (AwaitNeighbor) instead of being dropped: the kernel's
// neighbour layer queues it. Checked against the same frame forwarded to
// a real server whose MAC is known.
func TestAwaitNeighbor(t *testing.T) {
	tests := []struct {
		name   string
		method lvs.Method
		p      pkt
		gso    bool
		want   forward.Verdict // with the MAC unknown
	}{
		{name: "nat tcp syn", method: lvs.NAT, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}, want: forward.AwaitNeighbor},
		{name: "nat udp", method: lvs.NAT, p: pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 80), payload: "hello"}, want: forward.AwaitNeighbor},
		{name: "nat udp6", method: lvs.NAT, p: pkt{proto: lvs.UDP, src: ap(cli6, 40000), dst: ap(vip6, 80), payload: "hello"}, want: forward.AwaitNeighbor},
		{name: "nat tcp super-frame", method: lvs.NAT, gso: true,
			p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, payload: strings.Repeat("s", 3000)}, want: forward.AwaitNeighbor},
		{name: "dr tcp syn", method: lvs.DR, p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}, want: forward.AwaitNeighbor},
		{name: "tun udp", method: lvs.TUN, p: pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 80), payload: "hello"}, want: forward.AwaitNeighbor},
		{name: "tun tcp6 syn", method: lvs.TUN, p: pkt{src: ap(cli6, 40000), dst: ap(vip6, 80), flags: syn}, want: forward.AwaitNeighbor},
		// Several frames (the segments of a super-frame) cannot wait as one.
		{name: "tun tcp super-frame", method: lvs.TUN, gso: true,
			p: pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, payload: strings.Repeat("s", 3000)}, want: forward.Drop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proto := tc.p.proto
			if proto == 0 {
				proto = lvs.TCP
			}
			in := tc.p.build(t)
			var vnet forward.VNetHdr
			if tc.gso {
				vnet = makePartial(forward.Ethernet, in)
				vnet.GSOType, vnet.GSOSize, vnet.HdrLen = forward.VirtioNetHdrGSOTCPv4, 1000, 54
			}
			rip, src := rip4, dip4 // TUN carries IPv6 in IPv4 too
			if tc.method == lvs.NAT && tc.p.dst.Addr().Is6() {
				rip, src = rip6, netip.Addr{}
			}
			known := rs(rip, 80, tc.method)
			unknown := lvs.NewDest(rip, 80, tc.method, 1)
			unknown.Neigh = new(lvs.Neighbor)
			ek := newEnv(t, envOpts{}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: proto, dest: known, tunSrc: src})
			eu := newEnv(t, envOpts{}, svcSpec{vip: tc.p.dst.Addr(), port: 80, proto: proto, dest: unknown, tunSrc: src})
			before := eu.f.Counters()
			v, p := eu.process(in, vnet)
			if v != tc.want {
				t.Fatalf("verdict %v, want %v", v, tc.want)
			}
			if v == forward.Drop {
				if r := eu.dropReason(before); r != forward.DropNoNeighbor {
					t.Errorf("drop reason %v, want no-neighbor", r)
				}
				return
			}
			if p.Neigh != unknown.Neigh {
				t.Errorf("Packet.Neigh %p, want the real server's slot %p", p.Neigh, unknown.Neigh)
			}
			if c := eu.f.Counters(); c.Dropped() != before.Dropped() || c.ForwardedIn != before.ForwardedIn {
				t.Errorf("counters moved: %+v", c)
			}
			vk, pk := ek.process(in, vnet)
			if vk != forward.Transmit {
				t.Fatalf("with the MAC known: %v", vk)
			}
			got := bytes.Clone(p.Frame())
			if !bytes.Equal(got[0:6], make([]byte, 6)) {
				t.Errorf("destination MAC %x, want zero until resolved", got[0:6])
			}
			copy(got[0:6], rsMAC[:])
			if tc.method == lvs.TUN {
				// The outer IPv4 identification (and so its checksum) is
				// each worker's own.
				copy(got[18:20], pk.Frame()[18:20])
				copy(got[24:26], pk.Frame()[24:26])
			}
			if !bytes.Equal(got, pk.Frame()) || p.VNet != pk.VNet {
				t.Errorf("waiting frame with the MAC written in:\n%x %+v\nwant\n%x %+v", got, p.VNet, pk.Frame(), pk.VNet)
			}
		})
	}
}
