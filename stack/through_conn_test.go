package stack

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/leakcheck"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// TestDialThrough opens whole connections to a VIP through the DR path: b
// plays the real server, with a line-echo server on the VIP's port. Without
// the VIP, b drops the SYN and the dial ends with its context although b's
// own address answers; with it, a request and its answer cross (a second
// netstack in a, the through stack, speaks TCP; the prober hands it the
// answers); a closed port is refused. Closed, the connections give their
// probe ports back, and Close stops the through stack's goroutines.
func TestDialThrough(t *testing.T) {
	leakcheck.Check(t)
	a, b := stackPair(t)
	for _, tc := range []struct {
		rip, vip string
		proto    tcpip.NetworkProtocolNumber
		port     uint16
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
					go func() {
						defer c.Close()
						line, err := bufio.NewReader(c).ReadString('\n')
						if err != nil {
							return
						}
						// An answer larger than a segment: the through
						// stack must reassemble and acknowledge it.
						io.WriteString(c, c.LocalAddr().String()+" "+strings.Repeat("x", 5000)+" "+line)
					}()
				}
			}()
			waitNeighbor(t, a, rip)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()

			short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel2()
			if c, err := a.DialThrough(short, rip, netip.AddrPortFrom(vip, tc.port), false); !errors.Is(err, context.DeadlineExceeded) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("dial through a real server without the VIP: %v, want deadline exceeded", err)
			}

			if err := b.AddVIP(1, vip); err != nil {
				t.Fatal(err)
			}
			defer b.RemoveVIP(1, vip)
			for i := range 3 {
				c, err := a.DialThrough(ctx, rip, netip.AddrPortFrom(vip, tc.port), false)
				if err != nil {
					t.Fatalf("dial %d through a real server with the VIP: %v", i, err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "hello\n")
				got, err := io.ReadAll(c)
				c.Close()
				want := netip.AddrPortFrom(vip, tc.port).String() + " " + strings.Repeat("x", 5000) + " hello\n"
				if err != nil || string(got) != want {
					t.Fatalf("answer %d: %d bytes %.60q..., err %v; want %d bytes from the VIP", i, len(got), got, err, len(want))
				}
			}
			if _, err := a.DialThrough(ctx, rip, netip.AddrPortFrom(vip, tc.port+1), false); !errors.Is(err, ErrRefused) {
				t.Fatalf("dial of a closed port: %v, want ErrRefused", err)
			}
			a.probes.mu.Lock()
			n, m := len(a.probes.wait), len(a.probes.conns)
			a.probes.mu.Unlock()
			if n != 0 || m != 0 {
				t.Errorf("%d probe ports and %d connections still reserved", n, m)
			}
		})
	}
}

// BenchmarkDialThroughHTTP is BenchmarkProbeHTTP through the DR path (an
// http check with through_vip): the connection comes from a's through
// stack, to the VIP held by the server's netstack.
func BenchmarkDialThroughHTTP(b *testing.B) {
	a, srv := stackPairB(b)
	rip, vip := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.100")
	if err := srv.AddVIP(1, vip); err != nil {
		b.Fatal(err)
	}
	l, err := gonet.ListenTCP(srv.s, tcpip.FullAddress{Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				http.ReadRequest(br)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
				c.Close()
			}()
		}
	}()
	n := a.Neighbor(1, rip)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, ok := n.Load(); ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not resolved", rip)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dst := netip.AddrPortFrom(vip, 80)
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		c, err := a.DialThrough(context.Background(), rip, dst, false)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		c.Close()
	}
}
