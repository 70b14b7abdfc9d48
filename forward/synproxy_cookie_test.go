package forward

import (
	"encoding/binary"
	"math/bits"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/lvs"
)

// sipRef is a plain SipHash-2-4 over bytes, the reference of siphash.
func sipRef(k0, k1 uint64, msg []byte) uint64 {
	v := [4]uint64{k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573}
	round := func() {
		v[0] += v[1]
		v[1] = bits.RotateLeft64(v[1], 13) ^ v[0]
		v[0] = bits.RotateLeft64(v[0], 32)
		v[2] += v[3]
		v[3] = bits.RotateLeft64(v[3], 16) ^ v[2]
		v[0] += v[3]
		v[3] = bits.RotateLeft64(v[3], 21) ^ v[0]
		v[2] += v[1]
		v[1] = bits.RotateLeft64(v[1], 17) ^ v[2]
		v[2] = bits.RotateLeft64(v[2], 32)
	}
	n := len(msg)
	for len(msg) >= 8 {
		m := binary.LittleEndian.Uint64(msg)
		v[3] ^= m
		round()
		round()
		v[0] ^= m
		msg = msg[8:]
	}
	var tail [8]byte
	copy(tail[:], msg)
	tail[7] = byte(n)
	m := binary.LittleEndian.Uint64(tail[:])
	v[3] ^= m
	round()
	round()
	v[0] ^= m
	v[2] ^= 0xff
	for range 4 {
		round()
	}
	return v[0] ^ v[1] ^ v[2] ^ v[3]
}

// TestSipHash checks the reference against the SipHash paper's test vector
// (key 00..0f, message 00..0e) and siphash against the reference.
func TestSipHash(t *testing.T) {
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	msg := make([]byte, 48)
	for i := range msg {
		msg[i] = byte(i)
	}
	if got := sipRef(k0, k1, msg[:15]); got != 0xa129ca6149be45e5 {
		t.Fatalf("reference: %#x, want 0xa129ca6149be45e5", got)
	}
	for seed := range uint64(50) {
		var m [5]uint64
		for i := range m {
			m[i] = seed*0x9e3779b97f4a7c15 + uint64(i)*0x632be59bd9b4e019
			binary.LittleEndian.PutUint64(msg[8*i:], m[i])
		}
		last := seed ^ 0xdeadbeef
		binary.LittleEndian.PutUint64(msg[40:], last)
		if got, want := siphash(k0+seed, k1, &m, last), sipRef(k0+seed, k1, msg); got != want {
			t.Fatalf("seed %d: %#x, want %#x", seed, got, want)
		}
	}
}

func cookieTuple(v6 bool) lvs.Tuple {
	t := lvs.Tuple{SPort: 40000, DPort: 80, Proto: lvs.TCP}
	if v6 {
		t.Src = lvs.AddrFrom16([]byte{0x20, 0x01, 0x0d, 0xb8, 15: 10})
		t.Dst = lvs.AddrFrom16([]byte{0x20, 0x01, 0x0d, 0xb8, 15: 100})
	} else {
		t.Src = lvs.AddrFrom4([]byte{192, 0, 2, 10})
		t.Dst = lvs.AddrFrom4([]byte{192, 0, 2, 100})
	}
	return t
}

// TestCookie: a cookie is valid for its tuple and ISN in its period and
// the next, carries its MSS index and SACK bit, and is refused two periods
// later, before it was made, with another tuple, ISN or key, and with any
// one of its bits flipped.
func TestCookie(t *testing.T) {
	k := newCookieKey()
	for _, v6 := range []bool{false, true} {
		tu := cookieTuple(v6)
		for epoch := uint64(1000); epoch < 1002; epoch++ {
			for idx := range uint8(8) {
				for _, sack := range []bool{false, true} {
					isn := uint32(epoch)*7919 + uint32(idx)
					c := k.make(&tu, isn, epoch, idx, sack)
					for _, e := range []uint64{epoch, epoch + 1} {
						gi, gs, ok := k.check(&tu, isn, c, e)
						if !ok || gi != idx || gs != sack {
							t.Fatalf("v6 %v epoch %d idx %d sack %v, checked in %d: %d %v %v", v6, epoch, idx, sack, e, gi, gs, ok)
						}
					}
					for _, e := range []uint64{epoch + 2, epoch + 3, epoch - 1} {
						if _, _, ok := k.check(&tu, isn, c, e); ok {
							t.Errorf("valid in period %d, made in %d", e, epoch)
						}
					}
					if _, _, ok := k.check(&tu, isn+1, c, epoch); ok {
						t.Error("valid for another ISN")
					}
					other := tu
					other.SPort++
					if _, _, ok := k.check(&other, isn, c, epoch); ok {
						t.Error("valid for another port")
					}
					other = tu
					other.Src[15]++
					if _, _, ok := k.check(&other, isn, c, epoch); ok {
						t.Error("valid for another address")
					}
					k2 := newCookieKey()
					if _, _, ok := k2.check(&tu, isn, c, epoch); ok {
						t.Error("valid under another key")
					}
					for bit := range 32 {
						if _, _, ok := k.check(&tu, isn, c^1<<bit, epoch); ok {
							t.Errorf("valid with bit %d flipped", bit)
						}
					}
				}
			}
		}
	}
	if _, _, ok := k.check(&lvs.Tuple{}, 0, 1<<4, 0); ok {
		t.Error("a cookie of the period before 0 is valid")
	}
}

// TestCookieForgery: random cookies for one tuple are accepted about once
// in 2^26 (27 bits of hash, two periods): none in 200,000 tries.
func TestCookieForgery(t *testing.T) {
	k := newCookieKey()
	tu := cookieTuple(false)
	x := uint32(12345)
	for i := range 200000 {
		x = x*1664525 + 1013904223
		if _, _, ok := k.check(&tu, uint32(i), x, 77); ok {
			t.Fatalf("random cookie %#x accepted", x)
		}
	}
}

func TestMSSIndex(t *testing.T) {
	for _, tc := range []struct {
		mss  uint16
		want uint16
	}{{0, 536}, {100, 536}, {536, 536}, {1000, 536}, {1220, 1220}, {1400, 1400}, {1459, 1452}, {1460, 1452}, {9000, 1452}} {
		if got := mssTable[mssIndex(tc.mss)]; got != tc.want {
			t.Errorf("mss %d: %d, want %d", tc.mss, got, tc.want)
		}
	}
}

func TestParseSynOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []byte
		mss  uint16
		sack bool
	}{
		{"linux", []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7}, 1460, true},
		{"none", nil, 0, false},
		{"nops", []byte{1, 1, 1, 1}, 0, false},
		{"eol first", []byte{0, 2, 4, 5, 0xb4}, 0, false},
		{"mss bad length", []byte{2, 3, 5, 4, 2}, 0, true},
		{"zero length stops", []byte{4, 2, 9, 0, 2, 4, 5, 0xb4}, 0, true},
		{"truncated", []byte{2, 4, 5}, 0, false},
		{"odd sack", []byte{1, 4, 2, 2, 4, 1, 0xf4}, 500, true},
	} {
		mss, sack := parseSynOptions(tc.opts)
		if mss != tc.mss || sack != tc.sack {
			t.Errorf("%s: %d %v, want %d %v", tc.name, mss, sack, tc.mss, tc.sack)
		}
	}
}

// tcpWithOpts returns a TCP header (no payload) with opts and a valid
// checksum for the pseudo-header sum ps.
func tcpWithOpts(opts []byte, ps uint16) header.TCP {
	n := header.TCPMinimumSize + (len(opts)+3)/4*4
	tcp := header.TCP(make([]byte, n))
	copy(tcp[header.TCPMinimumSize:], opts)
	tcp.Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, SeqNum: 3, AckNum: 4, DataOffset: uint8(n), Flags: header.TCPFlagAck, WindowSize: 5})
	tcp.SetChecksum(^tcp.CalculateChecksum(ps))
	return tcp
}

// TestShiftSACK: every block edge moves by delta, at even and odd offsets,
// and the checksum stays valid (incrementally, or recomputed where the
// function says so).
func TestShiftSACK(t *testing.T) {
	const ps = 0x1234
	for _, tc := range []struct {
		name  string
		opts  []byte
		edges []int // offsets of the edges in the options
		odd   bool
	}{
		{"nop nop sack", []byte{1, 1, 5, 10, 0, 0, 0, 100, 0, 0, 0, 200}, []int{4, 8}, false},
		{"two blocks", []byte{1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4}, []int{4, 8, 12, 16}, false},
		{"odd", []byte{1, 5, 10, 0, 0, 0, 100, 0, 0, 0, 200}, []int{3, 7}, true},
		{"bad length", []byte{1, 1, 5, 9, 0, 0, 0, 100, 0, 0, 0}, nil, false},
	} {
		tcp := tcpWithOpts(tc.opts, ps)
		before := append(header.TCP(nil), tcp...)
		odd := shiftSACK(tcp, 0x10000001, false)
		if odd != tc.odd {
			t.Errorf("%s: odd %v, want %v", tc.name, odd, tc.odd)
		}
		for _, off := range tc.edges {
			o := header.TCPMinimumSize + off
			if got, want := binary.BigEndian.Uint32(tcp[o:]), binary.BigEndian.Uint32(before[o:])+0x10000001; got != want {
				t.Errorf("%s: edge at %d: %#x, want %#x", tc.name, off, got, want)
			}
		}
		if odd {
			tcp.SetChecksum(0)
			tcp.SetChecksum(^tcp.CalculateChecksum(ps))
		}
		if tcp.CalculateChecksum(ps) != 0xffff {
			t.Errorf("%s: checksum invalid", tc.name)
		}
	}
}

// FuzzSynproxyOptions feeds the SYN proxy's option parsers arbitrary
// options: parseSynOptions and shiftSACK never panic; shifting the SACK
// blocks by d and back by -d restores the header; the checksum stays valid
// (incrementally, or recomputed where shiftSACK says so); and a cookie made
// from the options' MSS and SACK for any tuple and ISN checks valid and
// carries them.
func FuzzSynproxyOptions(f *testing.F) {
	f.Add([]byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7}, uint32(1), uint32(5000))
	f.Add([]byte{1, 1, 5, 10, 0, 0, 0, 100, 0, 0, 0, 200}, uint32(0x80000000), uint32(0))
	f.Add([]byte{1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4}, uint32(7), uint32(1))
	f.Add([]byte{5, 2, 5, 255}, uint32(3), uint32(4))
	f.Fuzz(func(t *testing.T, opts []byte, d, isn uint32) {
		if len(opts) > 40 {
			opts = opts[:40]
		}
		mss, sack := parseSynOptions(opts)
		tcp := tcpWithOpts(opts, 0x4321)
		orig := append(header.TCP(nil), tcp...)
		odd := shiftSACK(tcp, d, false)
		if odd {
			tcp.SetChecksum(0)
			tcp.SetChecksum(^tcp.CalculateChecksum(0x4321))
		}
		if tcp.CalculateChecksum(0x4321) != 0xffff {
			t.Fatalf("checksum invalid after shifting %x by %d", opts, d)
		}
		shiftSACK(tcp, -d, true)
		if string(tcp[header.TCPMinimumSize:]) != string(orig[header.TCPMinimumSize:]) {
			t.Fatalf("shift by %d and back changed the options %x to %x", d, orig[header.TCPMinimumSize:], tcp[header.TCPMinimumSize:])
		}
		k := newCookieKey()
		tu := cookieTuple(isn&1 != 0)
		tu.SPort = uint16(d)
		idx := mssIndex(mss)
		c := k.make(&tu, isn, uint64(d), idx, sack)
		gi, gs, ok := k.check(&tu, isn, c, uint64(d)+1)
		if !ok || gi != idx || gs != sack {
			t.Fatalf("cookie of mss %d sack %v: %d %v %v", mss, sack, gi, gs, ok)
		}
	})
}
