package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lvsd/lvsd/config"
)

// replyNet is a Net whose servers answer with fixed bytes: a TCP
// connection gets reply (then EOF) whatever it sent; a UDP exchange gets
// reply as its datagram.
type replyNet struct{ reply []byte }

func (n replyNet) DialTCP(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
	c, s := net.Pipe()
	bindConn(ctx, c)
	go func() {
		defer s.Close()
		s.SetDeadline(time.Now().Add(time.Second))
		go func() { // drain the request
			buf := make([]byte, 4096)
			for {
				if _, err := s.Read(buf); err != nil {
					return
				}
			}
		}()
		s.Write(n.reply)
	}()
	return c, nil
}

func (n replyNet) ExchangeUDP(ctx context.Context, _ netip.AddrPort, _, buf []byte, keep func([]byte) bool) (int, error) {
	b := n.reply[:min(len(n.reply), len(buf))]
	copy(buf, b)
	if keep != nil && !keep(buf[:len(b)]) {
		return 0, errors.New("no matching reply")
	}
	return len(b), nil
}

func (replyNet) Ping(context.Context, netip.Addr, []byte) (time.Duration, error) { return 0, nil }

// FuzzHTTPCheck feeds the http checker arbitrary responses: it must never
// panic, must end within its timeout, and passes only a response whose
// status line is in the expected range.
func FuzzHTTPCheck(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 503 Unavailable\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nok"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, reply []byte) {
		c := &config.Check{Type: "http", Timeout: 2 * time.Second, Contains: "ok"}
		ch, err := NewChecker(c, Target{Real: netip.MustParseAddrPort("192.0.2.11:80")}, replyNet{reply})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := ch.Check(context.Background())
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("check took %v", d)
		}
		if r.Err == nil && (len(reply) < 12 || string(reply[9:10]) != "2") {
			t.Fatalf("passed with %q", reply)
		}
	})
}

// FuzzDNSCheck feeds the dns checker arbitrary reply datagrams (with the
// query's ID): no panic, and a pass only for a reply that unpacks with an
// answer.
func FuzzDNSCheck(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("lvsd.test.", dns.TypeA)
	m.Response = true
	rr, _ := dns.NewRR("lvsd.test. 60 IN A 192.0.2.53")
	m.Answer = append(m.Answer, rr)
	good, _ := m.Pack()
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte{0, 0, 0x80})
	f.Fuzz(func(t *testing.T, reply []byte) {
		c := &config.Check{Type: "dns", Timeout: time.Second, QueryType: "A", QueryName: "lvsd.test"}
		n := &idNet{reply: reply}
		ch, err := NewChecker(c, Target{Real: netip.MustParseAddrPort("192.0.2.11:53")}, n)
		if err != nil {
			t.Fatal(err)
		}
		r := ch.Check(context.Background())
		if r.Err == nil {
			var got dns.Msg
			if err := got.Unpack(n.sent); err != nil || len(got.Answer) == 0 {
				t.Fatalf("passed with a reply without answer: %x", n.sent)
			}
		}
	})
}

// idNet answers a DNS query with reply, its ID set to the query's.
type idNet struct {
	replyNet
	reply, sent []byte
}

func (n *idNet) ExchangeUDP(ctx context.Context, _ netip.AddrPort, msg, buf []byte, keep func([]byte) bool) (int, error) {
	b := append([]byte(nil), n.reply...)
	if len(b) >= 2 && len(msg) >= 2 {
		b[0], b[1] = msg[0], msg[1]
	}
	b = b[:min(len(b), len(buf))]
	copy(buf, b)
	n.sent = b
	if keep != nil && !keep(b) {
		return 0, errors.New("no matching reply")
	}
	return len(b), nil
}

// FuzzKeptHTTPCheck feeds an http check with reuse_connection arbitrary
// responses, twice on the same checker (the second on the kept connection
// or, when the first ended it, on a new one): it must never panic, must
// end within its timeout, and passes only a response whose status line is
// in the expected range, and that a check on a connection of its own
// passes too.
func FuzzKeptHTTPCheck(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"), false)
	f.Add([]byte("HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nok"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nok"), false)
	f.Add([]byte("garbage"), false)
	f.Fuzz(func(t *testing.T, reply []byte, body bool) {
		c := &config.Check{Type: "http", Timeout: 2 * time.Second, ReuseConnection: true}
		if body {
			c.Contains = "ok"
		}
		target := Target{Real: netip.MustParseAddrPort("192.0.2.11:80")}
		ch, err := NewChecker(c, target, replyNet{reply})
		if err != nil {
			t.Fatal(err)
		}
		defer ch.(*keptHTTP).Close()
		plain := *c
		plain.ReuseConnection = false
		pch, err := NewChecker(&plain, target, replyNet{reply})
		if err != nil {
			t.Fatal(err)
		}
		pr := pch.Check(context.Background())
		for i := range 2 {
			start := time.Now()
			r := ch.Check(context.Background())
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("check %d took %v", i, d)
			}
			if r.Err == nil && (len(reply) < 12 || string(reply[9:10]) != "2") {
				t.Fatalf("check %d passed with %q", i, reply)
			}
			if r.Err == nil && pr.Err != nil {
				t.Fatalf("check %d passed with %q, which fails a check without reuse: %v", i, reply, pr.Err)
			}
		}
	})
}
