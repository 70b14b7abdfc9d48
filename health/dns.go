package health

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/lvsd/lvsd/config"
)

// dnsChecker is DNS_CHECK: a query of one type and name over UDP; the
// server passes when it answers the query with RCODE NOERROR and at least
// one record in the answer section.
type dnsChecker struct {
	net     Net
	dst     netip.AddrPort
	timeout time.Duration
	qtype   uint16
	qname   string
}

func newDNSChecker(c *config.Check, dst netip.AddrPort, n Net) (*dnsChecker, error) {
	qt := c.QueryType
	if qt == "" {
		qt = config.DefaultDNSQueryType
	}
	t, ok := dns.StringToType[qt]
	if !ok {
		return nil, fmt.Errorf("%w: query type %q", ErrConfig, qt)
	}
	name := c.QueryName
	if name == "" {
		name = config.DefaultDNSQueryName
	}
	return &dnsChecker{net: n, dst: dst, timeout: c.Timeout, qtype: t, qname: dns.Fqdn(name)}, nil
}

func (c *dnsChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion(c.qname, c.qtype)
	q.RecursionDesired = false
	msg, err := q.Pack()
	if err != nil {
		return fail("dns: %w", err)
	}
	buf := make([]byte, maxDatagram)
	// Only a reply to this query ends the wait: same ID, a response.
	keep := func(b []byte) bool {
		return len(b) >= 12 && uint16(b[0])<<8|uint16(b[1]) == q.Id && b[2]&0x80 != 0
	}
	n, err := c.net.ExchangeUDP(ctx, c.dst, msg, buf, keep)
	if err != nil {
		return fail("dns: %w", err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		return fail("dns: bad reply: %w", err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return fail("dns: rcode %s", dns.RcodeToString[r.Rcode])
	}
	if len(r.Answer) == 0 {
		return fail("dns: no answer for %s %s", dns.TypeToString[c.qtype], c.qname)
	}
	return pass
}
