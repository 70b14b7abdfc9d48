package director

import (
	"net/netip"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// tunnelSourceFor returns the outer source address of tunnelled packets
// from interface ic to the real server rip, by the rule of IPVS's route
// lookup (IP_VS_RT_MODE_CONNECT: the route's preferred source): the DIP
// whose prefix holds rip, the address the director has on the real
// server's subnet; else (a real server behind a router) the interface's
// first DIP of rip's family. It returns the zero Addr when ic has no
// address of that family.
func tunnelSourceFor(ic config.Interface, rip netip.Addr) lvs.Addr {
	rip = rip.Unmap()
	var first netip.Addr
	for _, p := range ic.Addresses {
		a := p.Addr().Unmap()
		if a.Is4() != rip.Is4() {
			continue
		}
		if p.Contains(rip) {
			return lvs.AddrFromNetip(a)
		}
		if !first.IsValid() {
			first = a
		}
	}
	if !first.IsValid() {
		return lvs.Addr{}
	}
	return lvs.AddrFromNetip(first)
}

// tunnelSource6 returns the outer source of the IPv6 tunnels of service sc
// on interface ic (forward.Service.TunSrc6): tunnelSourceFor its first
// IPv6 TUN real server, or ic's first IPv6 DIP when it has none. The fast
// path keeps one IPv6 tunnel source per service: real servers of one
// service on different subnets all get the first one's.
func tunnelSource6(ic config.Interface, sc config.Service) lvs.Addr {
	for _, r := range sc.Reals {
		if r.Method == lvs.TUN && r.Addr.Is6() && !r.Addr.Is4In6() {
			return tunnelSourceFor(ic, r.Addr)
		}
	}
	return tunnelSourceFor(ic, netip.IPv6Unspecified())
}
