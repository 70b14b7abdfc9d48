package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/lvsd/lvsd/config"
)

// Checks through the forwarding path (check.through_vip) for DR and TUN
// real servers: the tcp check's half-open probe is ThroughNet.ProbeThrough;
// http and https checks run their usual request over a whole connection
// that ThroughDialer opens to the VIP along the same path. Only the target
// and the way to it change: the HTTP exchange is httpChecker's own.

// ThroughDialer is a Net that also opens whole TCP connections to a
// virtual service through the forwarding path (http and https checks with
// through_vip): package director's adapter of the netstack implements it.
type ThroughDialer interface {
	// DialThrough connects to vip as the fast path would forward a client
	// to the DR (tunnel false) or TUN real server rip. A server that does
	// not hold the VIP does not answer: the dial ends with ctx.
	DialThrough(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) (net.Conn, error)
}

// throughVIP is the address a check through the forwarding path probes:
// the VIP with check.port, else the virtual port.
func throughVIP(c *config.Check, t Target) (netip.AddrPort, error) {
	vip := t.Virtual
	if c.Port != 0 {
		vip = netip.AddrPortFrom(vip.Addr(), c.Port)
	}
	if vip.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %s check through %s has no port", ErrConfig, c.Type, t.Virtual)
	}
	return vip, nil
}

// newHTTPThroughChecker is an http or https check of the VIP through the
// forwarding path to t's real server: httpChecker over a Net whose
// connections go that way. The Host header (unless check.host) is the
// VIP's, as a client's.
func newHTTPThroughChecker(c *config.Check, t Target, n Net) (Checker, error) {
	d, ok := n.(ThroughDialer)
	if !ok {
		return nil, fmt.Errorf("%w: through_vip needs a connection path through the fast path", ErrConfig)
	}
	vip, err := throughVIP(c, t)
	if err != nil {
		return nil, err
	}
	return newHTTPChecker(c, vip, throughDialNet{Net: n, d: d, rip: t.Real.Addr(), tunnel: t.Tunnel})
}

// throughDialNet is a Net whose TCP connections go to their destination
// (the VIP) through the forwarding path to one real server.
type throughDialNet struct {
	Net
	d      ThroughDialer
	rip    netip.Addr
	tunnel bool
}

func (n throughDialNet) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	c, err := n.d.DialThrough(ctx, n.rip, dst, n.tunnel)
	if err != nil {
		return nil, fmt.Errorf("through %s: %w", n.rip, err)
	}
	return c, nil
}
