package config

import (
	"net/netip"
)

// Metrics configures lvsd's metrics listener ([metrics]): Prometheus's
// /metrics and the status page. Off unless Listen is set. A reload does not
// move the listener: a changed address takes a restart.
type Metrics struct {
	// Listen is the TCP address to serve on, an IP address (IPv6 in
	// brackets) and a non-zero port, as netip.AddrPort.String writes it;
	// "" means no listener.
	Listen string
}

type rawMetrics struct {
	Listen any `toml:"listen"`
}

// metrics reads [metrics].
func (c *checker) metrics(raw *rawMetrics) Metrics {
	var m Metrics
	s, ok := c.str("metrics.listen", raw.Listen)
	if !ok {
		return m
	}
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		c.errorf("metrics.listen", "%q is not ADDR:PORT (an IP address and a port, \"[::1]:9100\" for IPv6)", s)
	case ap.Port() == 0:
		c.errorf("metrics.listen", "%q: port 0 is not a port to serve on", s)
	case ap.Addr().Zone() != "":
		c.errorf("metrics.listen", "%q: an address with a zone is not supported", s)
	default:
		m.Listen = ap.String()
	}
	return m
}
