package health

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"time"
)

// udpChecker is UDP_CHECK: it sends the payload; with requireReply a reply
// (starting with expect, when set) must come back within the timeout.
// Without it, silence passes and only an ICMP port unreachable fails, as
// keepalived's UDP_CHECK without require_reply.
type udpChecker struct {
	net          Net
	dst          netip.AddrPort
	timeout      time.Duration
	payload      []byte
	expect       []byte
	requireReply bool
}

func (c *udpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	buf := make([]byte, maxDatagram)
	n, err := c.net.ExchangeUDP(ctx, c.dst, c.payload, buf, nil)
	switch {
	case err != nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)) && !c.requireReply:
		// The timeout ended the wait and no reply was required: no port
		// unreachable came back, which is all this check asks.
		return pass
	case err != nil:
		return fail("udp: %w", err)
	case !bytes.HasPrefix(buf[:n], c.expect):
		return fail("udp: reply %q does not start with %q", clip(buf[:n]), clip(c.expect))
	}
	return pass
}

// clip shortens what a server sent for an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
