package stack

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// waitNeighbor resolves rip from st's NIC 1, as the director does for a
// real server before forwarding to it.
func waitNeighbor(t *testing.T, st *Stack, rip netip.Addr) {
	t.Helper()
	n := st.Neighbor(1, rip)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, ok := n.Load(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not resolved", rip)
		}
		st.resolve(neighKey{1, rip})
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProbeThrough probes a VIP through the DR path: b plays the real
// server. With the VIP and a listener it passes; a closed port is refused
// (its RST reaches the probe, not a's netstack); without the VIP, b drops
// the SYN and the probe ends with its context, although b's own address
// answers on the same port.
func TestProbeThrough(t *testing.T) {
	a, b := stackPair(t)
	for _, tc := range []struct {
		rip, vip string
		proto    tcpip.NetworkProtocolNumber
		port     uint16 // one per family: a closed listener may hold its port a while
	}{
		{"192.0.2.10", "192.0.2.100", ipv4.ProtocolNumber, 80},
		{"2001:db8::10", "2001:db8::100", ipv6.ProtocolNumber, 90},
	} {
		rip, vip := netip.MustParseAddr(tc.rip), netip.MustParseAddr(tc.vip)
		t.Run(tc.vip, func(t *testing.T) {
			l, err := gonet.ListenTCP(b.s, tcpip.FullAddress{Port: tc.port}, tc.proto)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			waitNeighbor(t, a, rip)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()

			short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel2()
			if err := a.ProbeThrough(short, rip, netip.AddrPortFrom(vip, tc.port), false); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("probe of a real server without the VIP: %v, want deadline exceeded", err)
			}
			if c, err := a.DialTCPReset(ctx, netip.AddrPortFrom(rip, tc.port)); err != nil {
				t.Fatalf("its RIP does not answer: %v", err)
			} else {
				c.Close()
			}

			if err := b.AddVIP(1, vip); err != nil {
				t.Fatal(err)
			}
			defer b.RemoveVIP(1, vip)
			if err := a.ProbeThrough(ctx, rip, netip.AddrPortFrom(vip, tc.port), false); err != nil {
				t.Fatalf("probe of a real server with the VIP: %v", err)
			}
			if err := a.ProbeThrough(ctx, rip, netip.AddrPortFrom(vip, tc.port+1), false); !errors.Is(err, ErrRefused) {
				t.Fatalf("probe of a closed port: %v, want ErrRefused", err)
			}
			if n := len(a.probes.wait); n != 0 {
				t.Errorf("%d probe ports still reserved", n)
			}
		})
	}
	if _, hi := a.s.PortRange(); hi >= ProbePortFirst {
		t.Errorf("netstack's ephemeral ports reach %d, into the probe ports from %d", hi, ProbePortFirst)
	}
}

// TestProberTake: only TCP to a probe port is the prober's.
func TestProberTake(t *testing.T) {
	var p prober
	port, ch, err := p.open()
	if err != nil {
		t.Fatal(err)
	}
	f := probeFrame{link: NewLink(LinkOptions{Ethernet: true}), ethernet: true,
		src: netip.MustParseAddrPort("192.0.2.100:80"), dst: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port)}
	frame := f.build(0x12, 7, 42)
	if !p.take(frame, true) {
		t.Fatal("answer to a probe port not taken")
	}
	select {
	case r := <-ch:
		if r.src != f.src || r.ack != 42 || r.seq != 7 || r.flags != 0x12 {
			t.Errorf("reply %+v", r)
		}
	default:
		t.Fatal("no reply handed over")
	}
	other := f
	other.dst = netip.MustParseAddrPort("192.0.2.1:8080")
	if p.take(other.build(0x12, 7, 42), true) {
		t.Error("a frame to another port was taken")
	}
	for n := range len(frame) {
		p.take(frame[:n], true) // truncated frames: no panic
	}
}

// FuzzProberTake feeds arbitrary frames to the prober: never a panic, and
// what reaches a waiting probe is the answer of its own port.
func FuzzProberTake(f *testing.F) {
	pf := probeFrame{link: NewLink(LinkOptions{Ethernet: true}), ethernet: true,
		src: netip.MustParseAddrPort("192.0.2.100:80"), dst: netip.MustParseAddrPort("192.0.2.1:64512")}
	f.Add(pf.build(0x12, 1, 2), true)
	pf6 := pf
	pf6.src, pf6.dst = netip.MustParseAddrPort("[2001:db8::100]:80"), netip.MustParseAddrPort("[2001:db8::1]:64512")
	f.Add(pf6.build(0x04, 1, 2), true)
	f.Add(pf6.build(0x04, 1, 2)[14:], false)
	f.Fuzz(func(t *testing.T, frame []byte, ethernet bool) {
		var p prober
		_, ch, _ := p.open() // port 64512
		taken := p.take(frame, ethernet)
		select {
		case <-ch:
			if !taken {
				t.Fatal("a reply handed over from a frame not taken")
			}
		default:
		}
	})
}
