package lab

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Service is a virtual service of a lab's lvsd configuration. Its real
// servers are the lab's, in order.
type Service struct {
	// Protocol is "tcp" or "udp"; "" means "tcp".
	Protocol string
	// VIP is the virtual address; the zero Addr means VIP (198.18.1.100).
	// An IPv6 VIP uses the real servers' IPv6 addresses.
	VIP netip.Addr
	// Port is the virtual port.
	Port uint16
	// RealPort is the real servers' port; 0 means Port.
	RealPort uint16
	// Scheduler is an ipvsadm scheduler name ("wrr"); "" leaves the key out.
	Scheduler string
	// Method is "nat", "dr" or "tun"; "" means "nat".
	Method string
	// Weights has one weight per real server (rs1 first); nil gives each
	// weight 1.
	Weights []int
	// Extra holds more keys of the [[virtual_server]] table, one TOML line
	// each, such as `persistence_timeout = "3s"`.
	Extra []string
	// Methods, when not nil, has one method per real server (rs1 first),
	// written as each real server's own `method` (mixed methods).
	Methods []string
	// RealExtra, when not nil, has more keys of each real server's table
	// (rs1 first), one TOML line each, such as `tun_type = "gre"`.
	RealExtra [][]string
}

func (s Service) protocol() string {
	if s.Protocol == "" {
		return "tcp"
	}
	return s.Protocol
}

func (s Service) vip() netip.Addr {
	if !s.VIP.IsValid() {
		return VIP
	}
	return s.VIP
}

// Config returns the lvsd configuration (TOML) of the topology with these
// services: one [[interface]] for the lab's device with create = false, and
// one [[virtual_server]] per service.
func (tp *Topology) Config(services ...Service) string {
	tp.Lab.t.Helper()
	s, err := tp.config(services)
	if err != nil {
		tp.Lab.t.Fatalf("lab: config: %v", err)
	}
	return s
}

func (tp *Topology) config(services []Service) (string, error) {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "# lvsd configuration of a lab: %s lab, director namespace %s.\n\n", tp.Type, tp.Director)
	for _, g := range tp.Globals {
		b.WriteString(g + "\n")
	}
	b.WriteString("[[interface]]\n")
	fmt.Fprintf(&b, "name = %s\n", q(tp.Device))
	fmt.Fprintf(&b, "type = %s\n", q(tp.Type))
	b.WriteString("create = false\n")
	if tp.MAC != "" && tp.Type == "tap" {
		fmt.Fprintf(&b, "mac = %s\n", q(tp.MAC))
	}
	if tp.Options.Queues > 0 {
		fmt.Fprintf(&b, "queues = %d\n", tp.Options.Queues)
	}
	if tp.Options.Sender != "" {
		fmt.Fprintf(&b, "sender = %s\n", q(tp.Options.Sender))
	}
	fmt.Fprintf(&b, "addresses = [%s]\n", quoteList(tp.Addresses))
	for _, r := range tp.Routes {
		b.WriteString("\n  [[interface.route]]\n")
		fmt.Fprintf(&b, "  destination = %s\n", q(r))
	}
	for i, s := range services {
		if s.Port == 0 {
			return "", fmt.Errorf("service %d: no port", i)
		}
		if s.Weights != nil && len(s.Weights) != len(tp.Reals) {
			return "", fmt.Errorf("service %d: %d weights for %d real servers", i, len(s.Weights), len(tp.Reals))
		}
		if s.Methods != nil && len(s.Methods) != len(tp.Reals) {
			return "", fmt.Errorf("service %d: %d methods for %d real servers", i, len(s.Methods), len(tp.Reals))
		}
		vip := s.vip()
		if vip.Is6() && !tp.Options.IPv6 {
			return "", fmt.Errorf("service %d: IPv6 VIP %s in a lab without IPv6", i, vip)
		}
		method := s.Method
		if method == "" {
			method = "nat"
		}
		rport := s.RealPort
		if rport == 0 {
			rport = s.Port
		}
		b.WriteString("\n[[virtual_server]]\n")
		fmt.Fprintf(&b, "protocol = %s\n", q(s.protocol()))
		fmt.Fprintf(&b, "address = %s\n", q(vip.String()))
		fmt.Fprintf(&b, "port = %d\n", s.Port)
		if s.Scheduler != "" {
			fmt.Fprintf(&b, "scheduler = %s\n", q(s.Scheduler))
		}
		fmt.Fprintf(&b, "method = %s\n", q(method))
		fmt.Fprintf(&b, "interface = %s\n", q(tp.Device))
		for _, l := range s.Extra {
			b.WriteString(l + "\n")
		}
		for j, r := range tp.Reals {
			addr := r.Addr
			if vip.Is6() {
				addr = r.Addr6
			}
			w := 1
			if s.Weights != nil {
				w = s.Weights[j]
			}
			fmt.Fprintf(&b, "\n  [[virtual_server.real_server]]  # %s\n", r.Name)
			fmt.Fprintf(&b, "  address = %s\n", q(addr.String()))
			fmt.Fprintf(&b, "  port = %d\n", rport)
			fmt.Fprintf(&b, "  weight = %d\n", w)
			if s.Methods != nil {
				fmt.Fprintf(&b, "  method = %s\n", q(s.Methods[j]))
			}
			if j < len(s.RealExtra) {
				for _, l := range s.RealExtra[j] {
					b.WriteString("  " + l + "\n")
				}
			}
		}
	}
	return b.String(), nil
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
