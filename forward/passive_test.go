package forward_test

import (
	"testing"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// TestPassiveFailures: the packet path counts, for passive health
// detection, an RST answering a forwarded SYN and an ICMP destination
// unreachable from the real server's side about a client's packet; not a
// fragmentation needed, nor a SYN-ACK. It allocates nothing doing so.
func TestPassiveFailures(t *testing.T) {
	d := rs(rip4, 8080, lvs.NAT)
	e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d})
	failures := func() uint64 {
		var n uint64
		e.tab.Failures(func(x *lvs.Dest, f uint64) {
			if x == d {
				n = f
			}
		})
		return n
	}
	// Answered: SYN, SYN-ACK.
	e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{})
	e.process(pkt{dstMAC: dirMAC, srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: syn | ack}.build(t), forward.VNetHdr{})
	// Refused: SYN, RST-ACK.
	e.process(pkt{src: ap(cli4, 40001), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{})
	if v, _ := e.process(pkt{dstMAC: dirMAC, srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40001), flags: rst | ack}.build(t), forward.VNetHdr{}); v != forward.Transmit {
		t.Fatalf("RST verdict %v", v)
	}
	if got := failures(); got != 1 {
		t.Fatalf("failures after a refused SYN: %d, want 1", got)
	}
	// Unreachable: SYN, then port unreachable (and a fragmentation needed,
	// which is no failure).
	e.process(pkt{src: ap(cli4, 40002), dst: ap(vip4, 80), flags: syn}.build(t), forward.VNetHdr{})
	quote := quoteOf(t, pkt{src: ap(cli4, 40002), dst: ap(rip4, 8080), flags: syn}, 28)
	frag := icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: rip4, dst: cli4, typ: 3, code: 4, rest: 1400, quote: quote}.build(t)
	if v, _ := e.process(frag, forward.VNetHdr{}); v != forward.Transmit {
		t.Fatalf("fragmentation needed verdict %v", v)
	}
	if got := failures(); got != 1 {
		t.Fatalf("failures after a fragmentation needed: %d, want 1", got)
	}
	unreach := icmpMsg{dstMAC: dirMAC, srcMAC: rsMAC, src: rip4, dst: cli4, typ: 3, code: 3, quote: quote}.build(t)
	if v, _ := e.process(unreach, forward.VNetHdr{}); v != forward.Transmit {
		t.Fatalf("port unreachable verdict %v", v)
	}
	if got := failures(); got != 2 {
		t.Fatalf("failures after a port unreachable: %d, want 2", got)
	}
	run := runner(t, e.w, unreach, forward.VNetHdr{}, forward.Transmit, nil)
	if n := testing.AllocsPerRun(1000, run); n > 0 {
		t.Errorf("%v allocations per counted unreachable, want 0", n)
	}
	if got := failures(); got != 2+1001 {
		t.Errorf("failures %d, want %d", got, 2+1001)
	}
}
