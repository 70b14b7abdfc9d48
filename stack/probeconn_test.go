package stack

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// silentServer accepts connections on port 80 of b and holds them open
// without sending anything until the test ends.
func silentServer(t *testing.T, b *Stack, proto tcpip.NetworkProtocolNumber) {
	t.Helper()
	l, err := gonet.ListenTCP(b.s, tcpip.FullAddress{Port: 80}, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
}

// A blocked Read ends when the dial's context ends: a probe needs no
// deadline of its own.
func TestProbeConnBoundToContext(t *testing.T) {
	a, b := stackPair(t)
	silentServer(t, b, ipv4.ProtocolNumber)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := a.DialTCPReset(ctx, netip.MustParseAddrPort("192.0.2.10:80"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read: %v, want context canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked 5 s after the context ended")
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("read returned after %v, before the context ended", d)
	}
}

// Deadlines work as net.Conn's: a read past its deadline fails with
// os.ErrDeadlineExceeded, and a cleared deadline waits again.
func TestProbeConnDeadline(t *testing.T) {
	a, b := stackPair(t)
	silentServer(t, b, ipv6.ProtocolNumber)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.DialTCPReset(ctx, netip.MustParseAddrPort("[2001:db8::10]:80"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "[2001:db8::10]:80" {
		t.Errorf("remote address %s", got)
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); !ok || !la.IP.Equal(net.ParseIP("2001:db8::1")) {
		t.Errorf("local address %v, want the DIP 2001:db8::1", c.LocalAddr())
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 3*time.Second {
		t.Fatalf("read returned after %v, want 100 ms", d)
	}
	// Cleared: the read waits again, here until the context ends.
	c.SetDeadline(time.Time{})
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	c2, err := a.DialTCPReset(short, netip.MustParseAddrPort("[2001:db8::10]:80"))
	if err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(time.Hour))
	c2.SetReadDeadline(time.Time{})
	if _, err := c2.Read(make([]byte, 10)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with a cleared deadline: %v, want the context's deadline", err)
	}
	c2.Close()
	c2.Close() // a second Close does nothing

	// Close unblocks a Read waiting in another goroutine.
	c3, err := a.DialTCPReset(ctx, netip.MustParseAddrPort("[2001:db8::10]:80"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c3.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c3.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read on a closed connection succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked 5 s after Close")
	}
}

// TLS runs over a ProbeConn, and data larger than one segment crosses it
// both ways (Write queues all of it; Read gets all of it).
func TestProbeConnTLSAndBulk(t *testing.T) {
	a, b := stackPair(t)
	l, err := gonet.ListenTCP(b.s, tcpip.FullAddress{Port: 443}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cert := selfSigned(t)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		buf := make([]byte, 100<<10)
		if _, err := io.ReadFull(tc, buf); err != nil {
			return
		}
		tc.Write(buf) // echo
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.DialTCPReset(ctx, netip.MustParseAddrPort("192.0.2.10:443"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("lvsd"), 25<<10)
	if _, err := tc.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(tc, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %v (equal %v)", err, bytes.Equal(got, msg))
	}
}

// selfSigned returns a throwaway certificate for a TLS server.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"probe.example.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Many probes at once, each a request and its response over a ProbeConn:
// every one gets its answer long before its context ends (a wakeup lost
// between a read that would block and the wait would hold a probe until
// then).
func TestProbeConnConcurrent(t *testing.T) {
	a, b := stackPair(t)
	l, err := gonet.ListenTCP(b.s, tcpip.FullAddress{Port: 80}, ipv4.ProtocolNumber)
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
				buf := make([]byte, 64)
				if _, err := io.ReadFull(c, buf[:4]); err != nil {
					return
				}
				c.Write(append([]byte("re:"), buf[:4]...))
			}()
		}
	}()
	const probes = 100
	errs := make(chan error, probes)
	for i := range probes {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			c, err := a.DialTCPReset(ctx, netip.MustParseAddrPort("192.0.2.10:80"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := []byte{'p', byte('0' + i/100), byte('0' + i/10%10), byte('0' + i%10)}
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			got := make([]byte, 7)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "re:"+string(msg) {
				errs <- errors.Join(err, errors.New("reply "+string(got)))
				return
			}
			if d := time.Since(start); d > 5*time.Second {
				errs <- errors.New("probe took " + d.String())
				return
			}
			errs <- nil
		}()
	}
	for range probes {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
