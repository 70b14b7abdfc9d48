package forward_test

import (
	"testing"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// discard is an Emitter that only counts frames, for allocation tests and
// benchmarks.
type discard struct{ frames int }

func (d *discard) Emit(buf []byte, off, n int) error {
	d.frames++
	return nil
}

// runnerEmit is runner (perf_test.go) with an Emitter: it processes frame
// once from a reused buffer and fails the test if the verdict is not want or
// the number of frames written is not frames.
func runnerEmit(tb testing.TB, w *forward.Worker, frame []byte, vnet forward.VNetHdr, want forward.Verdict, frames int) func() {
	buf := make([]byte, headroom+len(frame))
	p := new(forward.Packet)
	em := new(discard)
	return func() {
		copy(buf[headroom:], frame)
		em.frames = 0
		*p = forward.Packet{Buf: buf, Off: headroom, Len: len(frame), VNet: vnet, Emit: em}
		if v := w.Process(p); v != want {
			tb.Fatalf("verdict %v, want %v", v, want)
		}
		if v := want; v == forward.Transmit {
			em.frames++
		}
		if em.frames != frames {
			tb.Fatalf("%d frames, want %d", em.frames, frames)
		}
	}
}

// tunCase is an established TUN flow and one frame of it.
type tunCase struct {
	e      *env
	frame  []byte
	vnet   forward.VNetHdr
	frames int // frames written per Process
}

// tunGSOCase is a 64 KiB TCP super-frame (45 segments of 1448 bytes) of an
// established IPv4 TUN flow, with timestamps (52 bytes of headers), as a
// Linux client's TSO sends it once its path MTU is 1480.
func tunGSOCase(tb testing.TB) tunCase {
	tb.Helper()
	const mss = 1428 // fits 1480 bytes of inner packet
	e := newEnv(tb, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 80, lvs.TUN), tunSrc: dip4})
	g := gsoFrame{flags: "AP", mss: mss, ipID: 1}
	if v, _ := e.processAll(cat(ethHdr(dirMAC, cliMAC, 0x0800), g.packet(tb, 1, 4999, "S", nil)), forward.VNetHdr{}); v != forward.Transmit {
		tb.Fatalf("SYN: %v", v)
	}
	payload := make([]byte, 45*mss)
	frame := cat(ethHdr(dirMAC, cliMAC, 0x0800), g.packet(tb, 2, 5000, "AP", payload))
	vnet := makePartial(forward.Ethernet, frame)
	vnet.GSOType, vnet.GSOSize, vnet.HdrLen = forward.VirtioNetHdrGSOTCPv4, mss, 14+52
	return tunCase{e: e, frame: frame, vnet: vnet, frames: 45}
}

// tunTooBigCase is a 1500-byte TCP packet with DF to a TUN service over a
// 1500-byte link: answered with ICMP fragmentation-needed.
func tunTooBigCase(tb testing.TB) tunCase {
	tb.Helper()
	f := newFlow(tb, lvs.TUN, forward.Ethernet, 1460)
	in := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, df: true, payload: string(make([]byte, 1460))}.build(tb)
	return tunCase{e: f.e, frame: in, frames: 1}
}

// tunFragCase is a 3000-byte UDP datagram without DF to a TUN service:
// three fragments of the outer packet.
func tunFragCase(tb testing.TB) tunCase {
	tb.Helper()
	e := newEnv(tb, envOpts{}, svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: rs(rip4, 53, lvs.TUN), tunSrc: dip4})
	in := pkt{proto: lvs.UDP, src: ap(cli4, 40000), dst: ap(vip4, 53), payload: string(make([]byte, 3000))}.build(tb)
	if v, _ := e.processAll(in, forward.VNetHdr{}); v != forward.Transmit {
		tb.Fatalf("first datagram: %v", v)
	}
	return tunCase{e: e, frame: in, frames: 3}
}

func (c tunCase) run(tb testing.TB) func() {
	return runnerEmit(tb, c.e.w, c.frame, c.vnet, forward.Transmit, c.frames)
}

func benchTUNCase(b *testing.B, c tunCase) {
	run := c.run(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(c.frame)))
	for b.Loop() {
		run()
	}
}

// BenchmarkTUNGSO segments and encapsulates one 64 KiB super-frame (45
// segments, each with its IP and TCP checksums computed in full) per
// operation, without the writes.
func BenchmarkTUNGSO(b *testing.B) { benchTUNCase(b, tunGSOCase(b)) }

// BenchmarkTUNTooBig answers one oversized DF packet with an ICMP error.
func BenchmarkTUNTooBig(b *testing.B) { benchTUNCase(b, tunTooBigCase(b)) }

// BenchmarkTUNFragments sends one 3000-byte datagram as three fragments.
func BenchmarkTUNFragments(b *testing.B) { benchTUNCase(b, tunFragCase(b)) }
