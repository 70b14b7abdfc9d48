package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// hostNet is a Net over the host's loopback, for checker unit tests (the
// lab tests probe through the netstack).
type hostNet struct{ pingErr error }

func (hostNet) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	bindConn(ctx, c)
	return c, nil
}

// bindConn makes c's reads and writes fail once ctx ends, as Net's
// DialTCP promises.
func bindConn(ctx context.Context, c net.Conn) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

func (hostNet) ExchangeUDP(ctx context.Context, dst netip.AddrPort, msg, buf []byte, keep func([]byte) bool) (int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", dst.String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	for {
		n, err := c.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, context.DeadlineExceeded
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				return 0, errRefused
			}
			return 0, err
		}
		if keep == nil || keep(buf[:n]) {
			return n, nil
		}
	}
}

var errRefused = errors.New("connection refused")

func (h hostNet) Ping(ctx context.Context, dst netip.Addr, payload []byte) (time.Duration, error) {
	return time.Millisecond, h.pingErr
}

type call struct {
	key     string
	up      bool
	inhibit bool
	weight  int32 // -1 for SetHealth calls
}

// fakeSink records the Sink calls.
type fakeSink struct {
	mu    sync.Mutex
	calls []call
	ch    chan call
}

func newFakeSink() *fakeSink { return &fakeSink{ch: make(chan call, 100)} }

func (s *fakeSink) SetHealth(k string, up, inhibit bool) {
	s.add(call{key: k, up: up, inhibit: inhibit, weight: -1})
}

func (s *fakeSink) SetWeight(k string, w int32) { s.add(call{key: k, weight: w}) }

func (s *fakeSink) add(c call) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	s.ch <- c
}

func (s *fakeSink) Calls() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call(nil), s.calls...)
}

// scripted is a Checker whose results a test sets.
type scripted struct {
	mu  sync.Mutex
	err error
	n   int
}

func (s *scripted) set(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *scripted) Check(context.Context) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return Result{Err: s.err, Weight: -1}
}

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
