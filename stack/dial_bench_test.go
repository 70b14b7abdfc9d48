package stack

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// BenchmarkProbeHTTP is one http health check's work in the netstack, as
// health's checker does it for a check of the status alone: a ProbeConn
// from a to an HTTP server on another netstack, bound to a context with a
// timeout, one request, the status line read, a RST close. Both netstacks
// run in this process, so the CPU per op is both sides'.
func BenchmarkProbeHTTP(b *testing.B) {
	a, srv := stackPairB(b)
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
	dst := netip.MustParseAddrPort("192.0.2.10:80")
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	line := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := a.DialTCPReset(ctx, dst)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(req)
		n := 0
		for !bytes.Contains(line[:n], []byte("\n")) {
			m, err := c.Read(line[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
		if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
			b.Fatalf("response %q", line[:n])
		}
		c.Close()
		cancel()
	}
}
