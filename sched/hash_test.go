package sched

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// refFold is the kernel's address fold, written from netip.
func refFold(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return binary.BigEndian.Uint32(b[:])
	}
	b := a.As16()
	var f uint32
	for i := 0; i < 16; i += 4 {
		f ^= binary.BigEndian.Uint32(b[i:])
	}
	return f
}

// refBucket is the current kernel's ip_vs_sh_hashkey (and dh's with port 0
// and offset 0): hash_32 of the 32-bit sum to 8 bits (the top 8 bits of the
// 32-bit product with GOLDEN_RATIO_32), plus the offset, masked.
func refBucket(a netip.Addr, port uint16, offset uint32) int {
	sum := uint32(port) + refFold(a)
	h := (sum * 0x61C88647) >> (32 - 8)
	return int((offset + h) & 255)
}

// refSourceLayout is the kernel's sh bucket fill: destinations in list order,
// each for as many buckets as its weight, at least one.
func refSourceLayout(weights []int32) []int {
	var out []int
	for len(out) < 256 {
		for i, w := range weights {
			for k := 0; k == 0 || int32(k) < w; k++ {
				out = append(out, i)
			}
		}
	}
	return out[:256]
}

func TestAddrFold(t *testing.T) {
	tests := []struct {
		name string
		addr string
		want uint32
	}{
		{name: "IPv4 in host order", addr: "192.0.2.1", want: 0xc0000201},
		{name: "IPv4 other", addr: "192.0.2.200", want: 0xc00002c8},
		{name: "IPv6 words xored", addr: "2001:db8::1", want: 0x20010db8 ^ 1},
		{name: "IPv6 all words", addr: "2001:db8:1:2:3:4:5:6", want: 0x20010db8 ^ 0x00010002 ^ 0x00030004 ^ 0x00050006},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := lvs.AddrFromNetip(netip.MustParseAddr(tt.addr))
			if diff := cmp.Diff(tt.want, addrFold(&a)); diff != "" {
				t.Errorf("addrFold(%s) (-want +got):\n%s", tt.addr, diff)
			}
			if diff := cmp.Diff(tt.want, refFold(netip.MustParseAddr(tt.addr))); diff != "" {
				t.Errorf("refFold(%s) (-want +got):\n%s", tt.addr, diff)
			}
		})
	}
}

func TestSourceHashTable(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		want    string // the first 12 buckets
	}{
		{name: "weights are replicas", weights: []int32{2, 1, 3}, want: "AABCCCAABCCC"},
		{name: "weight 0 still takes a bucket", weights: []int32{2, 0, 1}, want: "AABCAABCAABC"},
		{name: "equal weights alternate", weights: []int32{1, 1}, want: "ABABABABABAB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(tt.weights...)
			s := table[shTable](mustNew(t, "sh", ds, Options{}))
			var got []byte
			for _, d := range s.buckets[:12] {
				got = append(got, label(ds, d)...)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("buckets (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSourceHashMapping checks sh against the plain reference of the kernel's
// hash and fill, for IPv4 and IPv6 clients, with and without sh-port.
func TestSourceHashMapping(t *testing.T) {
	weights := []int32{3, 1, 2, 5, 1}
	layout := refSourceLayout(weights)
	var srcs []netip.Addr
	for i := 2; i < 100; i++ {
		srcs = append(srcs, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	for i := range 200 {
		srcs = append(srcs, clientAddr(i))
	}
	tests := []struct {
		name     string
		flags    []string
		hashPort bool
	}{
		{name: "address only"},
		{name: "sh-port", flags: []string{"sh-port"}, hashPort: true},
		{name: "flag-2 is sh-port", flags: []string{"flag-2"}, hashPort: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := testDests(weights...)
			s := mustNew(t, "sh", ds, Options{Flags: tt.flags})
			for i, src := range srcs {
				sport := uint16(1024 + 7*i)
				var port uint16
				if tt.hashPort {
					port = sport
				}
				want := layout[refBucket(src, port, 0)]
				if got := index(ds, s.Schedule(flow(src, sport))); got != want {
					t.Fatalf("%s:%d: destination %d, want %d", src, sport, got, want)
				}
			}
		})
	}
}

// TestSourceHashPortOnlyWithPorts checks that sh-port ignores the port of a
// protocol without ports, as the kernel reads none.
func TestSourceHashPortOnlyWithPorts(t *testing.T) {
	ds := equalWeights(16)
	s := mustNew(t, "sh", ds, Options{Flags: []string{"sh-port"}})
	src := netip.MustParseAddr("192.0.2.7")
	want := refBucket(src, 0, 0) % 16 // one bucket each with equal weights
	for sport := range uint16(64) {
		tp := flow(src, sport)
		tp.Proto = 47 // GRE
		if got := index(ds, s.Schedule(tp)); got != want {
			t.Fatalf("sport %d: destination %d, want %d", sport, got, want)
		}
	}
}

// TestSourceHashFallback makes one destination unusable: without
// sh-fallback its flows get none, with it they follow the kernel's probe;
// other flows never move.
func TestSourceHashFallback(t *testing.T) {
	weights := []int32{1, 1, 1, 1}
	layout := refSourceLayout(weights)
	const down = 1
	for _, fallback := range []bool{false, true} {
		name := "no fallback"
		var flags []string
		if fallback {
			name, flags = "sh-fallback", []string{"sh-fallback"}
		}
		t.Run(name, func(t *testing.T) {
			ds := testDests(weights...)
			s := mustNew(t, "sh", ds, Options{Flags: flags})
			ds[down].Available.Store(false)
			moved := 0
			for i := range 300 {
				src := clientAddr(i)
				first := refBucket(src, 0, 0)
				want := layout[first]
				if want == down {
					want = -1
					if fallback {
						// The kernel's probe: offsets from the first bucket.
						for off := range 256 {
							roff := uint32((off + first) % 256)
							if c := layout[refBucket(src, 0, roff)]; c != down {
								want = c
								break
							}
						}
						moved++
					}
				}
				got := index(ds, s.Schedule(flow(src, 1)))
				if got != want {
					t.Fatalf("%s: destination %d, want %d", src, got, want)
				}
				if again := index(ds, s.Schedule(flow(src, 2))); again != got {
					t.Fatalf("%s: destination %d then %d", src, got, again)
				}
			}
			if fallback && moved == 0 {
				t.Errorf("no flow needed the fallback; the test proves nothing")
			}
		})
	}
}

func TestDestinationHash(t *testing.T) {
	ds := testDests(5, 1, 1) // weights do not matter
	s := mustNew(t, "dh", ds, Options{})
	var got []byte
	for _, d := range table[dhTable](s).buckets[:6] {
		got = append(got, label(ds, d)...)
	}
	if diff := cmp.Diff("ABCABC", string(got)); diff != "" {
		t.Errorf("buckets (-want +got):\n%s", diff)
	}
	for i := range 200 {
		dst := clientAddr(i) // any address; dh reads only the destination
		want := refBucket(dst, 0, 0) % 3
		for j := range 3 {
			tp := flow(clientAddr(1000+j), uint16(j))
			tp.Dst = lvs.AddrFromNetip(dst)
			if got := index(ds, s.Schedule(tp)); got != want {
				t.Fatalf("dst %s from client %d: destination %d, want %d", dst, j, got, want)
			}
		}
	}
	ds[0].Weight.Store(0)
	for i := range 200 {
		tp := flow(clientAddr(0), 1)
		dst := clientAddr(i)
		tp.Dst = lvs.AddrFromNetip(dst)
		want := refBucket(dst, 0, 0) % 3
		if want == 0 {
			want = -1 // quiescent: no destination, no fallback
		}
		if got := index(ds, s.Schedule(tp)); got != want {
			t.Fatalf("dst %s after quiescing A: destination %d, want %d", dst, got, want)
		}
	}
}
