package stack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	tcpipstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ProbeConn is a TCP connection of the netstack for one health check: what
// DialTCPReset returns. It is a net.Conn (crypto/tls runs over it) built
// for a thousand checks a second rather than for general use:
//   - it is bound to the context it was dialled with: a Read or Write
//     blocked when that context ends returns its error, so a probe needs no
//     deadline timer of its own (deadlines work too, each with a timer made
//     when set);
//   - its waits use one waiter entry, registered at the dial for every
//     event, and one channel, both in the ProbeConn (gonet's TCPConn makes
//     a channel per blocked call and two deadline timers per connection);
//   - Close ends the connection with a RST (SO_LINGER 0), so that probes
//     leave no TIME_WAIT endpoints behind.
//
// Read, Write and Close may be called from different goroutines, as for
// any net.Conn, but a probe uses it from one.
type ProbeConn struct {
	ep  tcpip.Endpoint
	ctx context.Context
	wq  waiter.Queue
	// entry is registered in wq from the dial to Close; its listener
	// (the ProbeConn) posts to ev.
	entry waiter.Entry
	// ev holds one token when an event came since the last wait.
	ev chan struct{}

	closeOnce sync.Once

	// rd and wd are the read and write deadlines in Unix nanoseconds (0:
	// none); mu guards the timers that wake a wait at a deadline.
	rd, wd atomic.Int64
	mu     sync.Mutex
	rt, wt *time.Timer // guarded by mu
}

var _ net.Conn = (*ProbeConn)(nil)

// NotifyEvent implements waiter.EventListener: it wakes the waiting call,
// if any, without blocking the netstack.
func (c *ProbeConn) NotifyEvent(waiter.EventMask) {
	select {
	case c.ev <- struct{}{}:
	default:
	}
}

// DialTCPReset opens a probe's TCP connection to dst from the netstack
// (source: the director's address on the route). The connection is bound
// to ctx (see ProbeConn). A RST answering the SYN is ErrRefused.
func (st *Stack) DialTCPReset(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	c, err := dialProbe(ctx, st.s, nil, tcpip.FullAddress{Addr: tcpipAddr(dst.Addr()), Port: dst.Port()}, protoOf(dst.Addr()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", dst, err)
	}
	return c, nil
}

// dialProbe connects a ProbeConn bound to ctx from s to dst, from bind
// when not nil. Its errors are ctx's, ErrRefused, or the netstack's.
func dialProbe(ctx context.Context, s *tcpipstack.Stack, bind *tcpip.FullAddress, dst tcpip.FullAddress, proto tcpip.NetworkProtocolNumber) (*ProbeConn, error) {
	c := &ProbeConn{ctx: ctx, ev: make(chan struct{}, 1)}
	ep, terr := s.NewEndpoint(tcp.ProtocolNumber, proto, &c.wq)
	if terr != nil {
		return nil, convErr(terr)
	}
	c.ep = ep
	ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
	c.entry.Init(c, waiter.ReadableEvents|waiter.WritableEvents|waiter.EventErr|waiter.EventHUp)
	c.wq.EventRegister(&c.entry)
	if bind != nil {
		if terr := ep.Bind(*bind); terr != nil {
			c.Close()
			return nil, fmt.Errorf("bind %s port %d: %w", bind.Addr, bind.Port, convErr(terr))
		}
	}
	terr = ep.Connect(dst)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		// Connected (writable) or failed (error, hang-up): nothing else
		// ends a connect.
		for ep.Readiness(waiter.WritableEvents|waiter.EventErr|waiter.EventHUp) == 0 {
			select {
			case <-ctx.Done():
				c.Close()
				return nil, ctx.Err()
			case <-c.ev:
			}
		}
		terr = ep.LastError()
	}
	if terr != nil {
		c.Close()
		if _, ok := terr.(*tcpip.ErrConnectionRefused); ok {
			return nil, ErrRefused
		}
		return nil, convErr(terr)
	}
	return c, nil
}

// wait blocks until an event, the end of the context, or the deadline dl
// (Unix nanoseconds, 0: none). op names the call in errors.
func (c *ProbeConn) wait(op string, dl *atomic.Int64) error {
	if d := dl.Load(); d != 0 && time.Now().UnixNano() >= d {
		return &net.OpError{Op: op, Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	select {
	case <-c.ctx.Done():
		return &net.OpError{Op: op, Net: "tcp", Err: c.ctx.Err()}
	case <-c.ev:
		return nil
	}
}

// Read implements net.Conn.
func (c *ProbeConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		w := tcpip.SliceWriter(b)
		res, terr := c.ep.Read(&w, tcpip.ReadOptions{})
		switch terr.(type) {
		case nil:
			return res.Count, nil
		case *tcpip.ErrWouldBlock:
			if err := c.wait("read", &c.rd); err != nil {
				return 0, err
			}
		case *tcpip.ErrClosedForReceive:
			return 0, io.EOF
		default:
			return 0, &net.OpError{Op: "read", Net: "tcp", Err: convErr(terr)}
		}
	}
}

// Write implements net.Conn: it returns when all of b is queued in the
// netstack, or with the error that stopped it.
func (c *ProbeConn) Write(b []byte) (int, error) {
	var r bytesReader
	n := 0
	for n < len(b) {
		r = bytesReader{b: b[n:]}
		m, terr := c.ep.Write(&r, tcpip.WriteOptions{})
		n += int(m)
		switch terr.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			if err := c.wait("write", &c.wd); err != nil {
				return n, err
			}
		default:
			return n, &net.OpError{Op: "write", Net: "tcp", Err: convErr(terr)}
		}
	}
	return n, nil
}

// Close implements net.Conn: the connection ends with a RST, and a Read or
// Write blocked in another goroutine returns. Only the first call does
// anything.
func (c *ProbeConn) Close() error {
	c.closeOnce.Do(func() {
		c.ep.Close()
		// A Read or Write blocked in another goroutine wakes, finds the
		// endpoint closed and returns.
		c.NotifyEvent(0)
		c.wq.EventUnregister(&c.entry)
		c.mu.Lock()
		for _, t := range []*time.Timer{c.rt, c.wt} {
			if t != nil {
				t.Stop()
			}
		}
		c.mu.Unlock()
	})
	return nil
}

// LocalAddr implements net.Conn.
func (c *ProbeConn) LocalAddr() net.Addr {
	a, _ := c.ep.GetLocalAddress()
	return tcpAddr(a)
}

// RemoteAddr implements net.Conn.
func (c *ProbeConn) RemoteAddr() net.Addr {
	a, _ := c.ep.GetRemoteAddress()
	return tcpAddr(a)
}

func tcpAddr(a tcpip.FullAddress) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IP(a.Addr.AsSlice()), Port: int(a.Port)}
}

// SetDeadline implements net.Conn.
func (c *ProbeConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	c.SetWriteDeadline(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *ProbeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rt = c.setDeadline(&c.rd, c.rt, t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *ProbeConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wt = c.setDeadline(&c.wd, c.wt, t)
	return nil
}

// setDeadline stores t in dl and returns the timer that wakes a wait at t
// (nil for no deadline), after stopping old.
//
// Preconditions: c.mu is held.
func (c *ProbeConn) setDeadline(dl *atomic.Int64, old *time.Timer, t time.Time) *time.Timer {
	if old != nil {
		old.Stop()
	}
	if t.IsZero() {
		dl.Store(0)
		return nil
	}
	dl.Store(t.UnixNano())
	// A wait checks the deadline when it wakes; this wakes it.
	return time.AfterFunc(time.Until(t), func() { c.NotifyEvent(0) })
}
