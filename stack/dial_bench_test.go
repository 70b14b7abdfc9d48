package stack

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// BenchmarkProbeHTTP is one http health check's work in the netstack: a
// connection from a to an HTTP server on another netstack, one request
// and response, a RST close. Both netstacks run in this process, so the
// CPU per op is both sides'.
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
	b.ReportAllocs()
	for b.Loop() {
		c, err := a.DialTCPReset(context.Background(), dst)
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
