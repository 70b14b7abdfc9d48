package sched

import (
	"encoding/binary"

	"github.com/lvsd/lvsd/lvs"
)

// goldenRatio32 is the kernel's GOLDEN_RATIO_32, the multiplier of hash_32,
// which current kernels use for the address hashes of sh, dh, lblc and lblcr
// (older ones multiplied by 2654435761 and masked the low bits).
const goldenRatio32 = 0x61C88647

// hash32 is the kernel's hash_32: the top bits of val times goldenRatio32.
// bits is 1..32.
func hash32(val uint32, bits uint) uint32 {
	return (val * goldenRatio32) >> (32 - bits)
}

// addrFold reduces an address to the 32 bits the kernel hashes: an IPv4
// address as a host-order integer, an IPv6 address as the XOR of its four
// 32-bit words.
func addrFold(a *lvs.Addr) uint32 {
	w0 := binary.BigEndian.Uint32(a[0:4])
	w1 := binary.BigEndian.Uint32(a[4:8])
	w2 := binary.BigEndian.Uint32(a[8:12])
	w3 := binary.BigEndian.Uint32(a[12:16])
	if w0 == 0 && w1 == 0 && w2 == 0xffff { // IPv4-mapped
		return w3
	}
	return w0 ^ w1 ^ w2 ^ w3
}

// hasPorts reports whether the protocol's header starts with source and
// destination ports, which sh-port and mh-port hash.
func hasPorts(p lvs.Proto) bool {
	return p == lvs.TCP || p == lvs.UDP || p == lvs.SCTP
}

// The sh and dh tables have 2^8 buckets (CONFIG_IP_VS_SH_TAB_BITS and
// CONFIG_IP_VS_DH_TAB_BITS default).
const (
	hashTabBits = 8
	hashTabSize = 1 << hashTabBits
	hashTabMask = hashTabSize - 1
)

// sourceHash is ip_vs_sh: a client address (and with sh-port its port) hashes
// to one of 256 buckets, filled in list order with each destination repeated
// weight times (a destination of weight 0 or less still takes one bucket).
// A bucket whose destination is not usable gives no destination, unless
// sh-fallback is set: then the buckets are probed from that one on, in an
// order that depends only on the flow, so a flow still lands on the same
// destination every time.
type sourceHash struct{ rebuilt[shTable] }

var _ Scheduler = (*sourceHash)(nil)

// shTable is sourceHash's table over one list, immutable once built.
type shTable struct {
	// buckets is immutable after New; nil only when there are no
	// destinations.
	buckets  [hashTabSize]*lvs.Dest
	fallback bool // sh-fallback (flag-1)
	port     bool // sh-port (flag-2)
}

func newSHTable(dests []*lvs.Dest, c *config) (*shTable, error) {
	s := &shTable{
		fallback: c.flags&flagSched1 != 0,
		port:     c.flags&flagSched2 != 0,
	}
	if len(dests) == 0 {
		return s, nil
	}
	p, count := 0, int32(0)
	for i := range s.buckets {
		d := dests[p]
		s.buckets[i] = d
		// Move on once d holds as many buckets as its weight.
		if count++; count >= d.Weight.Load() {
			p = (p + 1) % len(dests)
			count = 0
		}
	}
	return s, nil
}

func (r *sourceHash) Schedule(t *lvs.Tuple) *lvs.Dest {
	s := &r.cur.Load().p // one load: the table is in the published state
	var port uint16
	if s.port && hasPorts(t.Proto) {
		port = t.SPort
	}
	// The kernel's key is (offset + hash_32(port + addr)) & mask; the hash
	// does not depend on the offset.
	base := hash32(uint32(port)+addrFold(&t.Src), hashTabBits)
	first := base
	d := s.buckets[first]
	if d == nil || d.Usable() {
		return d
	}
	if !s.fallback {
		return nil
	}
	for off := range uint32(hashTabSize) {
		roff := (off + first) % hashTabSize
		d = s.buckets[(roff+base)&hashTabMask]
		if d.Usable() {
			return d
		}
	}
	return nil
}

// destinationHash is ip_vs_dh: the flow's destination address (the virtual
// address, or in a cache cluster the origin server) hashes to one of 256
// buckets, filled with the destinations in list order, one bucket each in
// turn; weights other than 0 do not matter. An unusable destination gives no
// destination.
type destinationHash struct{ rebuilt[dhTable] }

var _ Scheduler = (*destinationHash)(nil)

// dhTable is destinationHash's table over one list, immutable once built.
type dhTable struct {
	// buckets is immutable after New; nil only when there are no
	// destinations.
	buckets [hashTabSize]*lvs.Dest
}

func newDHTable(dests []*lvs.Dest, _ *config) (*dhTable, error) {
	s := &dhTable{}
	if len(dests) == 0 {
		return s, nil
	}
	for i := range s.buckets {
		s.buckets[i] = dests[i%len(dests)]
	}
	return s, nil
}

func (r *destinationHash) Schedule(t *lvs.Tuple) *lvs.Dest {
	s := &r.cur.Load().p // one load: the table is in the published state
	d := s.buckets[hash32(addrFold(&t.Dst), hashTabBits)]
	if d == nil || !d.Usable() {
		return nil
	}
	return d
}
