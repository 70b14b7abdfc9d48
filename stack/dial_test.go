package stack

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/lvsd/lvsd/device"
)

// stackPair returns two netstacks on one in-memory Ethernet segment: a
// (192.0.2.1, 2001:db8::1) and b (192.0.2.10, 2001:db8::10).
func stackPair(t *testing.T) (a, b *Stack) { return stackPairB(t) }

func stackPairB(t testing.TB) (a, b *Stack) {
	t.Helper()
	mk := func(mac byte, addrs ...string) (*Stack, *device.Mem) {
		dev := device.NewMem(256)
		st := New(Options{})
		link := NewLink(LinkOptions{Devices: []device.Device{dev}, Ethernet: true, MTU: 1500, MAC: [6]byte{2, 0, 0x5e, 0, 0, mac}})
		var ps []netip.Prefix
		for _, s := range addrs {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		if _, err := st.AddNIC(NICOptions{Name: "lvt0", Link: link, Ethernet: true, Addresses: ps}); err != nil {
			t.Fatal(err)
		}
		return st, dev
	}
	a, da := mk(1, "192.0.2.1/24", "2001:db8::1/64")
	b, db := mk(2, "192.0.2.10/24", "2001:db8::10/64")
	ctx, cancel := context.WithCancel(context.Background())
	pipe := func(from, to *device.Mem) {
		for {
			f, err := from.Next(ctx)
			if err != nil {
				return
			}
			to.Inject(f)
		}
	}
	go pipe(da, db)
	go pipe(db, da)
	t.Cleanup(func() {
		cancel()
		a.Close()
		b.Close()
	})
	return a, b
}

func TestDialTCPReset(t *testing.T) {
	a, b := stackPair(t)
	l, err := gonet.ListenTCP(b.s, tcpip.FullAddress{Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("hello"))
		io.Copy(io.Discard, c)
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.DialTCPReset(ctx, netip.MustParseAddrPort("192.0.2.10:80"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v; want hello", buf, err)
	}
	c.Close()

	_, err = a.DialTCPReset(ctx, netip.MustParseAddrPort("192.0.2.10:81"))
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("dial a closed port: %v, want ErrRefused", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	// 192.0.2.99 does not exist: the dial ends with its context.
	if _, err := a.DialTCPReset(short, netip.MustParseAddrPort("192.0.2.99:80")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial a missing host: %v, want deadline exceeded", err)
	}
}

func TestDatagramUDP(t *testing.T) {
	a, b := stackPair(t)
	for _, tc := range []struct {
		name  string
		addr  string
		proto tcpip.NetworkProtocolNumber
	}{
		{"v4", "192.0.2.10", ipv4.ProtocolNumber},
		{"v6", "2001:db8::10", ipv6.ProtocolNumber},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := gonet.DialUDP(b.s, &tcpip.FullAddress{Port: 53}, nil, tc.proto)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			go func() {
				buf := make([]byte, 512)
				for {
					n, from, err := srv.ReadFrom(buf)
					if err != nil {
						return
					}
					srv.WriteTo(append([]byte("re:"), buf[:n]...), from)
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d, err := a.DialUDP(netip.AddrPortFrom(netip.MustParseAddr(tc.addr), 53))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			buf := make([]byte, 64)
			n, err := d.Exchange(ctx, []byte("ping"), buf, nil)
			if err != nil || string(buf[:n]) != "re:ping" {
				t.Fatalf("exchange: %q, %v; want re:ping", buf[:n], err)
			}

			closed, err := a.DialUDP(netip.AddrPortFrom(netip.MustParseAddr(tc.addr), 54))
			if err != nil {
				t.Fatal(err)
			}
			defer closed.Close()
			if _, err := closed.Exchange(ctx, []byte("ping"), buf, nil); !errors.Is(err, ErrRefused) {
				t.Fatalf("exchange with a closed port: %v, want ErrRefused", err)
			}
		})
	}
}

func TestPing(t *testing.T) {
	a, _ := stackPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, dst := range []string{"192.0.2.10", "2001:db8::10"} {
		if _, err := a.Ping(ctx, netip.MustParseAddr(dst), []byte("lvsd")); err != nil {
			t.Errorf("ping %s: %v", dst, err)
		}
	}
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := a.Ping(short, netip.MustParseAddr("192.0.2.99"), nil); err == nil {
		t.Error("ping of a missing host succeeded")
	}
}
