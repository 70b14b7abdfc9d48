package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Marshal writes cfg as a TOML document that Parse accepts and turns back
// into a Config equal to cfg (File aside): every value is written out,
// defaults included, and each real server carries its resolved method and
// slow start. lvsd config dump prints the running table with it, and the
// state file of runtime changes stores tables with it.
func Marshal(cfg *Config) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("[timeouts]\ntcp = %d\ntcp_fin = %d\nudp = %d\ntcp_time_wait = %d\ntcp_close = %d\n\n",
		secs(cfg.Timeouts.TCP), secs(cfg.Timeouts.TCPFin), secs(cfg.Timeouts.UDP),
		secs(cfg.Timeouts.TCPTimeWait), secs(cfg.Timeouts.TCPClose))
	w("[sysctl]\nexpire_quiescent_template = %t\nexpire_nodest_conn = %t\nsecure_tcp = %t\n\n",
		cfg.Sysctl.ExpireQuiescentTemplate, cfg.Sysctl.ExpireNodestConn, cfg.Sysctl.SecureTCP)
	w("[connections]\nmax = %d\n", cfg.Connections.Max)
	for _, ic := range cfg.Interfaces {
		w("\n[[interface]]\nname = %s\ntype = %s\n", quote(ic.Name), quote(ic.Type.String()))
		if ic.Type != PACKET {
			w("create = %t\n", ic.Create)
		}
		if ic.Type == TAP {
			m := ic.MAC
			w("mac = \"%02x:%02x:%02x:%02x:%02x:%02x\"\n", m[0], m[1], m[2], m[3], m[4], m[5])
		}
		addrs := make([]string, len(ic.Addresses))
		for i, p := range ic.Addresses {
			addrs[i] = quote(p.String())
		}
		w("addresses = [%s]\nmtu = %d\nqueues = %d\noffload = %t\n", strings.Join(addrs, ", "), ic.MTU, ic.Queues, ic.Offload)
		for _, r := range ic.Routes {
			w("\n[[interface.route]]\ndestination = %s\n", quote(r.Destination.String()))
			if r.Gateway.IsValid() {
				w("gateway = %s\n", quote(r.Gateway.String()))
			}
		}
	}
	for i := range cfg.Services {
		writeService(&b, &cfg.Services[i])
	}
	return []byte(b.String())
}

func writeService(b *strings.Builder, s *Service) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n[[virtual_server]]\n")
	if s.Name != "" {
		w("name = %s\n", quote(s.Name))
	}
	w("protocol = %s\naddress = %s\n", quote(s.Proto.String()), quote(s.Addr.String()))
	if s.Ports != nil {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = fmt.Sprint(p)
		}
		w("ports = [%s]\nfwmark = %d\n", strings.Join(ports, ", "), s.Mark)
	} else {
		w("port = %d\n", s.Port)
	}
	w("scheduler = %s\n", quote(s.Scheduler))
	if len(s.SchedFlags) > 0 {
		flags := make([]string, len(s.SchedFlags))
		for i, f := range s.SchedFlags {
			flags[i] = quote(f)
		}
		w("scheduler_flags = [%s]\n", strings.Join(flags, ", "))
	}
	if s.MaglevTableSize != 0 {
		w("maglev_table_size = %d\n", s.MaglevTableSize)
	}
	w("interface = %s\n", quote(s.Interface))
	if s.Persistence.Timeout > 0 {
		w("persistence_timeout = %d\npersistence_netmask = %d\n", secs(s.Persistence.Timeout), s.Persistence.Netmask)
	}
	if s.OnePacket {
		w("one_packet = true\n")
	}
	if s.SlowStart > 0 {
		w("slow_start = %d\n", secs(s.SlowStart))
	}
	for _, r := range s.Reals {
		w("\n[[virtual_server.real_server]]\naddress = %s\n", quote(r.Addr.String()))
		if s.Ports == nil && !(s.Port == 0 && r.Port == 0) {
			w("port = %d\n", r.Port)
		}
		w("method = %s\nweight = %d\n", quote(methodName(r.Method)), r.Weight)
		if r.UpperThreshold > 0 {
			w("upper_threshold = %d\n", r.UpperThreshold)
		}
		if r.LowerThreshold > 0 {
			w("lower_threshold = %d\n", r.LowerThreshold)
		}
		if r.SlowStart != s.SlowStart {
			w("slow_start = %d\n", secs(r.SlowStart))
		}
	}
}

func methodName(m lvs.Method) string { return m.String() }

func secs(d time.Duration) int64 { return int64(d / time.Second) }

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
