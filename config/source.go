package config

import "net/netip"

// Source returns the address the director sends from, through this
// interface, to dst: the preferred source of the kernel's route to dst,
// which IPVS uses as the outer source of its tunnels (IP_VS_RT_MODE_CONNECT)
// and the kernel as the source of the ICMP errors it sends toward dst.
// Among the interface's addresses of dst's family:
//
//   - dst on-link: the address whose prefix holds dst, the longest such
//     prefix, the first in the file on a tie (the kernel's primary address of
//     the connected route);
//   - else through the longest of Routes that holds dst: with a gateway, the
//     address whose prefix holds the gateway (as above); on-link, the first
//     address;
//   - else the first address, and routed is false: the kernel has no route to
//     dst; except on a tun interface without routes, which routes
//     everything through itself (the netstack's default routes).
//
// src is the zero Addr when the interface has no address of dst's family.
// It is the one rule for every family: callers pass IPv4 and IPv6 alike.
func (ic *Interface) Source(dst netip.Addr) (src netip.Addr, routed bool) {
	dst = dst.Unmap()
	if a, ok := ic.onLink(dst); ok {
		return a, true
	}
	var via *Route
	for i := range ic.Routes {
		r := &ic.Routes[i]
		if r.Destination.Contains(dst) && (via == nil || r.Destination.Bits() > via.Destination.Bits()) {
			via = r
		}
	}
	if via != nil && via.Gateway.IsValid() {
		if a, ok := ic.onLink(via.Gateway); ok {
			return a, true
		}
	}
	routed = via != nil || ic.Type == TUN && len(ic.Routes) == 0
	for _, p := range ic.Addresses {
		if p.Addr().Is4() == dst.Is4() {
			return p.Addr(), routed
		}
	}
	return netip.Addr{}, false
}

// OnLink reports whether dst is on the interface's link: inside one of its
// prefixes or of a route without gateway. DR needs its real servers there.
func (ic *Interface) OnLink(dst netip.Addr) bool {
	dst = dst.Unmap()
	if _, ok := ic.onLink(dst); ok {
		return true
	}
	for _, r := range ic.Routes {
		if !r.Gateway.IsValid() && r.Destination.Contains(dst) {
			return true
		}
	}
	return false
}

// onLink returns the address whose prefix holds a (the longest prefix, the
// first on a tie).
func (ic *Interface) onLink(a netip.Addr) (netip.Addr, bool) {
	best := -1
	var src netip.Addr
	for _, p := range ic.Addresses {
		if p.Contains(a) && p.Bits() > best {
			best, src = p.Bits(), p.Addr()
		}
	}
	return src, best >= 0
}
