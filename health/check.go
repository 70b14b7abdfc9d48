package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/lvsd/lvsd/config"
)

// Net is the way out for probes: the director's netstack. Declared here,
// by its consumer; package director adapts *stack.Stack to it.
type Net interface {
	// DialTCP connects to dst. The returned connection is bound to ctx:
	// its reads and writes fail once ctx ends (so that a probe needs no
	// deadline of its own); Close ends it with a RST, so that probes leave
	// no TIME_WAIT behind.
	DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// ExchangeUDP sends msg to dst from a fresh UDP endpoint, then reads
	// one datagram into buf (up to len(buf) bytes) until ctx ends, skipping
	// those for which keep returns false. An ICMP port unreachable is an
	// error.
	ExchangeUDP(ctx context.Context, dst netip.AddrPort, msg, buf []byte, keep func([]byte) bool) (int, error)
	// Ping sends one ICMP or ICMPv6 echo request and waits for its reply.
	Ping(ctx context.Context, dst netip.Addr, payload []byte) (time.Duration, error)
}

// Target is what a check probes: the real server and its virtual service.
type Target struct {
	Real    netip.AddrPort // the real server (port 0 in a multi-port service)
	Virtual netip.AddrPort // the virtual service
	// Tunnel is true for a TUN real server: a through_vip probe goes
	// inside IPIP rather than to its MAC.
	Tunnel bool
}

// ThroughNet is a Net that also probes a virtual service through the
// forwarding path (check.through_vip): package director's adapter of the
// netstack implements it.
type ThroughNet interface {
	// ProbeThrough sends a TCP SYN to vip as the fast path would forward
	// it to the DR (tunnel false) or TUN real server rip, and returns nil
	// for a SYN-ACK, an error for a RST or when ctx ends first.
	ProbeThrough(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) error
}

// Result is the outcome of one probe.
type Result struct {
	// Err is nil when the server passed.
	Err error
	// Weight is the weight an exec check with dynamic set asks for, or -1.
	Weight int32
}

// Checker probes one real server. Check returns when ctx ends at the
// latest; a Checker is used by one goroutine at a time.
type Checker interface {
	Check(ctx context.Context) Result
}

// Read limits: a probe never reads more than this from a server, whatever
// it sends.
const (
	// MaxBody is the most of an HTTP body read for a digest, a substring
	// or a regular expression; a longer body fails such a check.
	MaxBody = 1 << 20
	// maxDatagram is the buffer of UDP, DNS and ping replies.
	maxDatagram = 4096
)

// ErrConfig is returned by NewChecker for a check that cannot work.
var ErrConfig = errors.New("bad check")

// NewChecker returns the checker of c against t, probing through n.
func NewChecker(c *config.Check, t Target, n Net) (Checker, error) {
	dst := t.Real
	if c.Addr.IsValid() {
		dst = netip.AddrPortFrom(c.Addr, dst.Port())
	}
	if c.Port != 0 {
		dst = netip.AddrPortFrom(dst.Addr(), c.Port)
	}
	needsPort := c.Type != "exec" && c.Type != "ping"
	if needsPort && dst.Port() == 0 {
		return nil, fmt.Errorf("%w: %s check of %s has no port", ErrConfig, c.Type, t.Real)
	}
	switch c.Type {
	case "tcp":
		if c.ThroughVIP {
			tn, ok := n.(ThroughNet)
			if !ok {
				return nil, fmt.Errorf("%w: through_vip needs a probe path through the fast path", ErrConfig)
			}
			vip, err := throughVIP(c, t)
			if err != nil {
				return nil, err
			}
			return &throughChecker{net: tn, rip: t.Real.Addr(), vip: vip, tunnel: t.Tunnel, timeout: c.Timeout}, nil
		}
		return &tcpChecker{net: n, dst: dst, timeout: c.Timeout}, nil
	case "http", "https":
		if c.ThroughVIP {
			return newHTTPThroughChecker(c, t, n)
		}
		h, err := newHTTPChecker(c, dst, n)
		if err != nil || !c.ReuseConnection {
			return h, err
		}
		return newKeptHTTP(h), nil
	case "udp":
		return &udpChecker{net: n, dst: dst, timeout: c.Timeout, payload: c.Payload, expect: c.Expect,
			requireReply: c.RequireReply || len(c.Expect) > 0}, nil
	case "dns":
		return newDNSChecker(c, dst, n)
	case "exec":
		return newExecChecker(c, t)
	case "ping":
		return &pingChecker{net: n, dst: dst.Addr(), timeout: c.Timeout}, nil
	}
	return nil, fmt.Errorf("%w: unknown type %q", ErrConfig, c.Type)
}

// withTimeout bounds one probe by the check's timeout.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = config.DefaultCheckTimeout
	}
	return context.WithTimeout(ctx, d)
}

func fail(format string, args ...any) Result {
	return Result{Err: fmt.Errorf(format, args...), Weight: -1}
}

var pass = Result{Weight: -1}

// tcpChecker is TCP_CHECK: the server passes when it accepts a connection.
type tcpChecker struct {
	net     Net
	dst     netip.AddrPort
	timeout time.Duration
}

func (c *tcpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.net.DialTCP(ctx, c.dst)
	if err != nil {
		return fail("tcp: %w", err)
	}
	conn.Close()
	return pass
}

// pingChecker is PING_CHECK: an echo reply within the timeout.
type pingChecker struct {
	net     Net
	dst     netip.Addr
	timeout time.Duration
}

func (c *pingChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.net.Ping(ctx, c.dst, []byte("lvsd health check")); err != nil {
		return fail("ping: %w", err)
	}
	return pass
}

// throughChecker is a tcp check through the forwarding path: the real
// server passes when it accepts a connection to the VIP forwarded to it.
type throughChecker struct {
	net     ThroughNet
	rip     netip.Addr
	vip     netip.AddrPort
	tunnel  bool
	timeout time.Duration
}

func (c *throughChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.net.ProbeThrough(ctx, c.rip, c.vip, c.tunnel); err != nil {
		return fail("tcp through vip: %w", err)
	}
	return pass
}
