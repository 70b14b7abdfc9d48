//go:build linux

package realserver

import (
	"log/slog"
	"math"
	"net/netip"
	"os"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// TestReceiveBatch runs the receive path on a datagram socket pair (what a
// raw socket returns, without the privilege): one recvmmsg takes the 45
// IPIP segments of a super-frame queued on the socket and two packets the
// filter refuses, decapsulation and coalescing turn the segments into one
// frame, and none of it allocates.
func TestReceiveBatch(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	rx := os.NewFile(uintptr(fds[0]), "rx")
	defer rx.Close()
	defer unix.Close(fds[1])
	if err := unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20); err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	for i := range 45 {
		pkts = append(pkts, outer(t, dip, layers.IPProtocolIPv4, seg{seq: uint32(i * 1440), n: 1440, flags: "A"}.build(t)))
	}
	pkts = append(pkts, outer(t, cli, layers.IPProtocolIPv4, inner4(t, vip)), outer(t, dip, layers.IPProtocolIPv4, inner4(t, rip)))
	s := &Server{f: filter{vips: []netip.Addr{vip}, directors: []netip.Addr{dip}}, log: slog.New(slog.DiscardHandler)}
	s.lastLog.Store(math.MaxInt64) // no drop report (rate-limited, and slog allocates) in the measured runs
	sock := rawSocket{File: rx, proto: protoIPIP}
	rc, err := rx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	b := newRxBatch(false)
	c := newCoalescer(rxBatchSize)
	var frames, segs int
	write := func(f []byte, n int) { frames, segs = frames+1, segs+n }
	runs := 0
	allocs := testing.AllocsPerRun(20, func() {
		runs++
		for _, p := range pkts {
			if _, err := unix.Write(fds[1], p); err != nil {
				t.Fatal(err)
			}
		}
		n, err := b.recv(rc)
		if err != nil || n != len(pkts) {
			t.Fatalf("recv: %d packets, %v; want %d", n, err, len(pkts))
		}
		s.decapBatch(b, n, sock, c)
		c.flush(write)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
	if frames != runs || segs != 45*runs {
		t.Errorf("%d frames of %d segments in %d batches, want one frame of 45 per batch", frames, segs, runs)
	}
	cn := s.Counters()
	if cn[NotDirector] != uint64(runs) || cn[NotVIP] != uint64(runs) {
		t.Errorf("counters %v, want %d not-director and %d not-vip", cn, runs, runs)
	}
}
