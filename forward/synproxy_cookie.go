package forward

// SYN cookies of the SYN proxy (synproxy.go), and the TCP options it reads
// and rewrites.
//
// A cookie is the director's initial sequence number toward a client:
//
//	bits 31-5  the top 27 bits of SipHash-2-4(key; client and VIP addresses,
//	           ports, the client's ISN, the time counter, bits 4-0)
//	bit  4     the time counter's low bit
//	bit  3     the client offered SACK
//	bits 2-0   the index of its MSS in mssTable
//
// The time counter is the table clock in cookiePeriod units. A cookie is
// valid in its own period and the next (64 to 128 s; a client that does
// not answer the SYN-ACK within a minute has given up), and checks against
// the counter that has its low bit. Hashing the counter under the key is
// rotating the secret every period: a cookie of two periods ago, or of any
// other tuple or ISN, matches with probability 2^-27. The key is random,
// made when the Forwarder is.

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/lvs"
)

// cookiePeriod is the time counter's unit.
const cookiePeriod = 64 * time.Second

// synproxyMSS is the largest MSS the SYN proxy announces: DPVS's default
// (its synproxy init_mss).
const synproxyMSS = 1452

// mssTable lists the MSS values a cookie can carry (3 bits), ascending: a
// client's MSS is rounded down to one of them. 536 is IPv4's default, 1220
// IPv6's minimum, 1440 and 1452 the usual Ethernet values behind IPv6 and
// behind PPPoE or a tunnel.
var mssTable = [8]uint16{536, 1024, 1220, 1280, 1360, 1400, 1440, synproxyMSS}

// mssIndex returns the index of the largest entry of mssTable not above
// mss (the first for smaller ones).
func mssIndex(mss uint16) uint8 {
	i := len(mssTable) - 1
	for i > 0 && mssTable[i] > mss {
		i--
	}
	return uint8(i)
}

// cookieKey is a SipHash key.
type cookieKey struct{ k0, k1 uint64 }

func newCookieKey() cookieKey { return cookieKey{rand.Uint64(), rand.Uint64()} }

// hash returns the keyed hash of a cookie's inputs.
func (k *cookieKey) hash(t *lvs.Tuple, cisn uint32, epoch uint64, data uint32) uint64 {
	var m [5]uint64
	m[0] = binary.BigEndian.Uint64(t.Src[0:8])
	m[1] = binary.BigEndian.Uint64(t.Src[8:16])
	m[2] = binary.BigEndian.Uint64(t.Dst[0:8])
	m[3] = binary.BigEndian.Uint64(t.Dst[8:16])
	m[4] = uint64(t.SPort)<<48 | uint64(t.DPort)<<32 | uint64(cisn)
	return siphash(k.k0, k.k1, &m, epoch<<8|uint64(data))
}

// make returns the cookie of a SYN with tuple t (client to VIP) and ISN
// cisn, in time period epoch, carrying MSS index idx and SACK.
func (k *cookieKey) make(t *lvs.Tuple, cisn uint32, epoch uint64, idx uint8, sack bool) uint32 {
	data := uint32(idx&7) | uint32(epoch&1)<<4
	if sack {
		data |= 1 << 3
	}
	return uint32(k.hash(t, cisn, epoch, data)>>32)&^0x1f | data
}

// check reports whether cookie is valid for tuple t and ISN cisn in period
// epoch (made in it or in the one before), and returns what it carries.
func (k *cookieKey) check(t *lvs.Tuple, cisn, cookie uint32, epoch uint64) (idx uint8, sack, ok bool) {
	data := cookie & 0x1f
	e := epoch
	if uint32(e&1) != data>>4 {
		if e == 0 {
			return 0, false, false
		}
		e--
	}
	if uint32(k.hash(t, cisn, e, data)>>32)&^0x1f != cookie&^0x1f {
		return 0, false, false
	}
	return uint8(data & 7), data&(1<<3) != 0, true
}

// siphash is SipHash-2-4 (Aumasson and Bernstein) of the 48-byte message
// m[0..4], last, as little-endian words: the five words, then last, then
// the length block.
func siphash(k0, k1 uint64, m *[5]uint64, last uint64) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	compress := func(x uint64) {
		v3 ^= x
		round()
		round()
		v0 ^= x
	}
	for _, x := range m {
		compress(x)
	}
	compress(last)
	compress(48 << 56) // the length (48 bytes) in the top byte, no tail
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

// parseSynOptions returns the MSS (0: none) and whether SACK is permitted
// in the options of a SYN. Like the kernel, it stops at the end-of-list
// option or at the first malformed one and keeps what it read before.
func parseSynOptions(opts []byte) (mss uint16, sack bool) {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return mss, sack
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return mss, sack
		}
		n := int(opts[i+1])
		if n < 2 || i+n > len(opts) {
			return mss, sack
		}
		switch {
		case opts[i] == header.TCPOptionMSS && n == 4:
			mss = binary.BigEndian.Uint16(opts[i+2:])
		case opts[i] == header.TCPOptionSACKPermitted && n == 2:
			sack = true
		}
		i += n
	}
	return mss, sack
}

// shiftSACK adds d to both edges of every block of the SACK options of
// tcp, updating the checksum unless it is partial. It returns true when an
// edge lay at an odd offset, where an incremental update does not apply:
// the caller then computes the checksum anew (unless partial). The
// options are read as parseSynOptions reads them.
func shiftSACK(tcp header.TCP, d uint32, partial bool) (odd bool) {
	end := int(tcp.DataOffset())
	for i := header.TCPMinimumSize; i < end; {
		switch tcp[i] {
		case header.TCPOptionEOL:
			return odd
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= end {
			return odd
		}
		n := int(tcp[i+1])
		if n < 2 || i+n > end {
			return odd
		}
		if tcp[i] == header.TCPOptionSACK && (n-2)%8 == 0 {
			for j := i + 2; j < i+n; j += 4 {
				if j&1 != 0 {
					odd = true
					v := binary.BigEndian.Uint32(tcp[j:]) + d
					binary.BigEndian.PutUint32(tcp[j:], v)
					continue
				}
				addSeq(tcp, j, d, partial || odd)
			}
		}
		i += n
	}
	return odd && !partial
}
