package sched

import (
	"encoding/binary"
	"math/bits"
)

// SipHash-1-3: one compression round per 8-byte word and three finalisation
// rounds. On 64-bit Linux, hsiphash() is this function truncated to 32 bits,
// so mh, with the kernel's fixed keys, fills its table as the kernel does.
// maglev uses it with keys of its own. Neither needs a secret: the keys are
// fixed so that every lvsd instance, and every restart, sends a flow to the
// same destination.

// sipKey is a 128-bit SipHash key as two little-endian words.
type sipKey struct{ k0, k1 uint64 }

// SipHash's initialisation constants ("somepseudorandomlygeneratedbytes").
const (
	sipInit0 = 0x736f6d6570736575
	sipInit1 = 0x646f72616e646f6d
	sipInit2 = 0x6c7967656e657261
	sipInit3 = 0x7465646279746573
)

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13) ^ v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16) ^ v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21) ^ v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17) ^ v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// sip13 returns SipHash-1-3 of msg under k. It does not retain msg, so a
// caller's stack array stays on the stack.
func sip13(k sipKey, msg []byte) uint64 {
	v0, v1, v2, v3 := k.k0^sipInit0, k.k1^sipInit1, k.k0^sipInit2, k.k1^sipInit3
	b := uint64(len(msg)) << 56
	for ; len(msg) >= 8; msg = msg[8:] {
		m := binary.LittleEndian.Uint64(msg)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
	}
	for i, c := range msg {
		b |= uint64(c) << (8 * i)
	}
	return sipFinal(v0, v1, v2, v3, b)
}

// sip13Uint32 is sip13 of the 4 little-endian bytes of x (the kernel's
// hsiphash of a u32 on a little-endian machine).
func sip13Uint32(k sipKey, x uint32) uint64 {
	return sipFinal(k.k0^sipInit0, k.k1^sipInit1, k.k0^sipInit2, k.k1^sipInit3, 4<<56|uint64(x))
}

// sipFinal absorbs the last block b (the tail bytes and the length) and runs
// the finalisation.
func sipFinal(v0, v1, v2, v3, b uint64) uint64 {
	v3 ^= b
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= b
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}
