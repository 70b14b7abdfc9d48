package device

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strings"
)

// checkPacketHost checks what the kernel must not do with a packet
// interface, since it receives every frame lvsd receives there, addressed
// to the same MAC: hold an address on it (it would answer ARP, ping and
// TCP for that address beside lvsd's netstack, or source its own traffic
// there), or forward in its namespace (it would route the clients' packets
// to the real servers itself, beside lvsd, and answer with redirects). An
// IPv6 link-local address is allowed: the kernel makes one on every link
// that has IPv6, and it answers only for that address.
//
// addrs are the interface's addresses; readFile reads a file of /proc
// (os.ReadFile; a missing file, as on a kernel without IPv6, is no
// forwarding).
func checkPacketHost(name string, addrs []net.Addr, readFile func(string) ([]byte, error)) error {
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			continue
		}
		return fmt.Errorf("interface %q holds the address %s: the kernel would answer for it beside lvsd's netstack, which holds the director's addresses (run `ip addr flush dev %s`)", name, p, name)
	}
	for _, f := range []struct{ path, sysctl string }{
		{"/proc/sys/net/ipv4/conf/" + name + "/forwarding", "net.ipv4.conf." + name + ".forwarding"},
		{"/proc/sys/net/ipv6/conf/" + name + "/forwarding", "net.ipv6.conf." + name + ".forwarding"},
	} {
		b, err := readFile(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("interface %q: read %s: %w", name, f.sysctl, err)
		}
		if strings.TrimSpace(string(b)) != "0" {
			return fmt.Errorf("interface %q: %s is %s: the kernel would route the clients' packets beside lvsd; set it to 0 in lvsd's namespace (net.ipv4.ip_forward = 0)", name, f.sysctl, strings.TrimSpace(string(b)))
		}
	}
	return nil
}
