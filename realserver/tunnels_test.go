package realserver

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/internal/pkttest"
)

// greOf returns a GRE packet (IPVS's gre tunnel type) around inner: with
// csum the C bit and the checksum over it all.
func greOf(inner []byte, csum bool) []byte {
	h := []byte{0, 0, 0x08, 0x00}
	if inner[0]>>4 == 6 {
		h[2], h[3] = 0x86, 0xdd
	}
	if csum {
		h[0] = 0x80
		h = append(h, 0, 0, 0, 0)
	}
	b := append(h, inner...)
	if csum {
		binary.BigEndian.PutUint16(b[4:], ^pkttest.Fold(pkttest.OnesSum(b, 0)))
	}
	return b
}

// gueOf returns the UDP payload of a GUE packet around inner; with rem the
// remote checksum option for the inner TCP checksum, which is then left as
// the pseudo-header sum, as the sender leaves it.
func gueOf(inner []byte, rem bool) []byte {
	proto := byte(4)
	if inner[0]>>4 == 6 {
		proto = 41
	}
	h := []byte{0, proto, 0, 0}
	in := append([]byte(nil), inner...)
	if rem {
		l4 := len(in) - len(pkttest.L4Of(in))
		off := pkttest.CsumOffset(in)
		binary.BigEndian.PutUint16(in[l4+off:], pkttest.Fold(pkttest.PseudoSum(in)))
		h = []byte{2, proto, 0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(h[8:], uint16(l4))
		binary.BigEndian.PutUint16(h[10:], uint16(l4+off))
	}
	return append(h, in...)
}

func TestDecapGRE(t *testing.T) {
	dip6 := netip.MustParseAddr("2001:db8:1::1")
	f := &filter{vips: []netip.Addr{vip, vip6}, directors: []netip.Addr{dip, dip6}}
	in4, in6 := inner4(t, vip), inner6(t, vip6)
	bad := greOf(in4, true)
	bad[len(bad)-1] ^= 1
	key := greOf(in4, false)
	key[0] = 0x20 // K bit
	ver := greOf(in4, false)
	ver[1] = 1 // version 1 (PPTP)
	eth := greOf(in4, false)
	eth[2], eth[3] = 0x65, 0x58 // transparent Ethernet bridging
	tests := []struct {
		name   string
		b      []byte
		src    netip.Addr
		want   []byte
		reason Reason
	}{
		{"ipv4 inside", greOf(in4, false), dip, in4, Injected},
		{"ipv6 inside, checksum", greOf(in6, true), dip6, in6, Injected},
		{"ipv4 inside, checksum", greOf(in4, true), dip, in4, Injected},
		{"bad checksum", bad, dip, nil, BadChecksum},
		{"key", key, dip, nil, Malformed},
		{"version 1", ver, dip, nil, Malformed},
		{"ethernet inside", eth, dip, nil, Malformed},
		{"short", []byte{0x80, 0, 0x08, 0}, dip, nil, Malformed},
		{"not the director", greOf(in4, false), cli, nil, NotDirector},
	}
	for _, tt := range tests {
		got, r := f.decapGRE(append([]byte(nil), tt.b...), tt.src)
		if r != tt.reason || !bytes.Equal(got, tt.want) {
			t.Errorf("%s: %v (%d bytes), want %v (%d bytes)", tt.name, r, len(got), tt.reason, len(tt.want))
		}
	}
	// From an IPv4 raw socket: the whole outer packet.
	b := outer(t, dip, layers.IPProtocolGRE, greOf(in4, true))
	if got, r := f.decap(b); r != Injected || !bytes.Equal(got, in4) {
		t.Errorf("outer IPv4 GRE packet: %v (%d bytes)", r, len(got))
	}
	if n := testing.AllocsPerRun(100, func() { f.decap(b) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

func TestDecapGUE(t *testing.T) {
	f := &filter{vips: []netip.Addr{vip, vip6}}
	in4, in6 := inner4(t, vip), inner6(t, vip6)
	ctl := gueOf(in4, false)
	ctl[0] |= 0x20
	v1 := gueOf(in4, false)
	v1[0] |= 0x40
	hlen := gueOf(in4, true)
	hlen[0] = 1 // says one word of options, the flags say two
	flag := gueOf(in4, false)
	flag[2] = 0x80 // an unknown flag
	pflag := gueOf(in4, true)
	pflag[7] = 1 // an unknown private flag
	far := gueOf(in4, true)
	binary.BigEndian.PutUint16(far[10:], uint16(len(in4)-1))
	tests := []struct {
		name   string
		b      []byte
		want   []byte
		reason Reason
	}{
		{"ipv4 inside", gueOf(in4, false), in4, Injected},
		{"ipv6 inside", gueOf(in6, false), in6, Injected},
		{"remote checksum, ipv4", gueOf(in4, true), in4, Injected},
		{"remote checksum, ipv6", gueOf(in6, true), in6, Injected},
		{"control message", ctl, nil, Malformed},
		{"version 1", v1, nil, Malformed},
		{"header length", hlen, nil, Malformed},
		{"unknown flag", flag, nil, Malformed},
		{"unknown private flag", pflag, nil, Malformed},
		{"checksum field past the end", far, nil, Malformed},
		{"short", []byte{0, 4, 0}, nil, Malformed},
	}
	for _, tt := range tests {
		got, r := f.decapGUE(append([]byte(nil), tt.b...), dip)
		if r != tt.reason || !bytes.Equal(got, tt.want) {
			t.Errorf("%s: %v (%d bytes), want %v (%d bytes)", tt.name, r, len(got), tt.reason, len(tt.want))
		}
		if r == Injected {
			pkttest.CheckSums(t, got)
		}
	}
	b := gueOf(in4, true)
	if n := testing.AllocsPerRun(100, func() { f.decapGUE(b, dip) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

// FuzzDecapTunnel feeds arbitrary GRE packets and GUE payloads: no panic,
// and an accepted inner packet lies inside them and is addressed to a VIP.
func FuzzDecapTunnel(f *testing.F) {
	f.Add(greOf(inner4(f, vip), true))
	f.Add(greOf(inner6(f, vip6), false))
	f.Add(gueOf(inner4(f, vip), true))
	f.Add(gueOf(inner6(f, vip6), false))
	flt := &filter{vips: []netip.Addr{vip, vip6}}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, decap := range []func([]byte, netip.Addr) ([]byte, Reason){flt.decapGRE, flt.decapGUE} {
			c := append([]byte(nil), b...)
			inner, r := decap(c, dip)
			if r != Injected {
				if inner != nil {
					t.Fatal("inner packet with a drop")
				}
				continue
			}
			// inner is c[start:start+len(inner)].
			start := cap(c) - cap(inner)
			if len(inner) < 20 || start < 0 || start+len(inner) > len(c) || &c[start] != &inner[0] {
				t.Fatalf("inner packet of %d bytes not inside the %d given", len(inner), len(c))
			}
		}
	})
}
