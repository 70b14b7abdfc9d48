package config

import (
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Format writes c as an lvsd.toml file that Parse reads back to an equal
// Config (File aside): every value explicit, defaults included, real servers
// in c's order. The director validates runtime changes this way, so that
// they obey exactly the rules of the file, and a state file can be written
// with it.
func Format(c *Config) []byte {
	var b strings.Builder
	// Grow once: a real server takes about 140 bytes, a service about 300;
	// a table of 100 000 real servers otherwise regrows the buffer (and
	// copies it) some twenty times.
	n := 1024
	for i := range c.Services {
		n += 300 + 140*len(c.Services[i].Reals)
	}
	b.Grow(n)
	fmt.Fprintf(&b, "[timeouts]\ntcp = %s\ntcp_fin = %s\nudp = %s\ntcp_time_wait = %s\ntcp_close = %s\n\n",
		dur(c.Timeouts.TCP), dur(c.Timeouts.TCPFin), dur(c.Timeouts.UDP), dur(c.Timeouts.TCPTimeWait), dur(c.Timeouts.TCPClose))
	fmt.Fprintf(&b, "[sysctl]\nexpire_quiescent_template = %t\nexpire_nodest_conn = %t\nsecure_tcp = %t\nsloppy_tcp = %t\n\n",
		c.Sysctl.ExpireQuiescentTemplate, c.Sysctl.ExpireNodestConn, c.Sysctl.SecureTCP, c.Sysctl.SloppyTCP)
	if cn := &c.Connections; cn.Max > 0 {
		fmt.Fprintf(&b, "[connections]\nmax = %d\nreserve_established = %d\nper_source = %d\nper_source_rate = %d\n",
			cn.Max, cn.ReserveEstablished, cn.PerSource, cn.PerSourceRate)
		fmt.Fprintf(&b, "source_prefix_v4 = %d\nsource_prefix_v6 = %d\ncheck_rst = %t\n\n", cn.SourcePrefixV4, cn.SourcePrefixV6, cn.CheckRST)
	}
	for _, ic := range c.Interfaces {
		fmt.Fprintf(&b, "[[interface]]\nname = %s\ntype = %s\nmtu = %d\nqueues = %d\noffload = %t\n",
			q(ic.Name), q(ic.Type.String()), ic.MTU, ic.Queues, ic.Offload)
		fmt.Fprintf(&b, "on_loss = %s\n", q(ic.OnLoss.String()))
		if ic.SendThread {
			b.WriteString("sender = \"thread\"\n")
		} else {
			b.WriteString("sender = \"reader\"\n")
		}
		if ic.Type != PACKET {
			fmt.Fprintf(&b, "create = %t\npersist = %t\n", ic.Create, ic.Persist)
		}
		if ic.Bridge != "" {
			fmt.Fprintf(&b, "bridge = %s\n", q(ic.Bridge))
		}
		if ic.Type == TAP {
			fmt.Fprintf(&b, "mac = %s\n", q(net.HardwareAddr(ic.MAC[:]).String()))
		}
		addrs := make([]string, len(ic.Addresses))
		for i, a := range ic.Addresses {
			addrs[i] = q(a.String())
		}
		fmt.Fprintf(&b, "addresses = [%s]\n", strings.Join(addrs, ", "))
		for _, r := range ic.Routes {
			fmt.Fprintf(&b, "  [[interface.route]]\n  destination = %s\n", q(r.Destination.String()))
			if r.Gateway.IsValid() {
				fmt.Fprintf(&b, "  gateway = %s\n", q(r.Gateway.String()))
			}
		}
		b.WriteString("\n")
	}
	for _, sc := range c.Services {
		b.WriteString("[[virtual_server]]\n")
		if sc.Name != "" {
			fmt.Fprintf(&b, "name = %s\n", q(sc.Name))
		}
		fmt.Fprintf(&b, "protocol = %s\naddress = %s\n", q(sc.Proto.String()), q(sc.Addr.String()))
		if sc.Ports != nil {
			ps := make([]string, len(sc.Ports))
			for i, p := range sc.Ports {
				ps[i] = strconv.Itoa(int(p))
			}
			fmt.Fprintf(&b, "ports = [%s]\nfwmark = %d\n", strings.Join(ps, ", "), sc.Mark)
		} else {
			fmt.Fprintf(&b, "port = %d\n", sc.Port)
		}
		flags := make([]string, len(sc.SchedFlags))
		for i, f := range sc.SchedFlags {
			flags[i] = q(f)
		}
		fmt.Fprintf(&b, "scheduler = %s\nscheduler_flags = [%s]\ninterface = %s\none_packet = %t\n",
			q(sc.Scheduler), strings.Join(flags, ", "), q(sc.Interface), sc.OnePacket)
		if sc.Synproxy {
			b.WriteString("synproxy = true\n")
		}
		fmt.Fprintf(&b, "persistence_timeout = %s\n", dur(sc.Persistence.Timeout))
		if sc.Persistence.Timeout > 0 {
			fmt.Fprintf(&b, "persistence_netmask = %d\n", sc.Persistence.Netmask)
		}
		fmt.Fprintf(&b, "slow_start = %s\n", dur(sc.SlowStart))
		if sc.MaglevTableSize != 0 {
			fmt.Fprintf(&b, "maglev_table_size = %d\n", sc.MaglevTableSize)
		}
		formatHealth(&b, &sc.Health)
		if sc.Health.Check != nil {
			formatCheck(&b, "virtual_server.check", sc.Health.Check)
		}
		multiPort := sc.Ports != nil || sc.Port == 0
		for _, r := range sc.Reals {
			fmt.Fprintf(&b, "  [[virtual_server.real_server]]\n  address = %s\n", q(r.Addr.String()))
			if !multiPort {
				fmt.Fprintf(&b, "  port = %d\n", r.Port)
			}
			fmt.Fprintf(&b, "  weight = %d\n  method = %s\n  upper_threshold = %d\n  lower_threshold = %d\n",
				r.Weight, q(r.Method.String()), r.UpperThreshold, r.LowerThreshold)
			if r.SlowStart != sc.SlowStart {
				fmt.Fprintf(&b, "  slow_start = %s\n", dur(r.SlowStart))
			}
			if t := r.Tunnel; r.Method == lvs.TUN {
				fmt.Fprintf(&b, "  tun_type = %s\n", q(t.Type.String()))
				if t.Port != 0 {
					fmt.Fprintf(&b, "  tun_port = %d\n", t.Port)
				}
				if t.Type != lvs.TunIPIP {
					fmt.Fprintf(&b, "  tun_csum = %s\n", q(TunCsumName(t.Flags)))
				}
			}
			// A real server's check is written when it is not its
			// service's: a table of its own, or type none to turn the
			// service's off.
			switch {
			case r.Check == nil && sc.Health.Check != nil:
				b.WriteString("  check = { type = \"none\" }\n")
			case r.Check != nil && !reflect.DeepEqual(r.Check, sc.Health.Check):
				formatCheck(&b, "virtual_server.real_server.check", r.Check)
			}
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

// dur writes a duration as the file does: a quoted whole number of seconds,
// or 0 for none.
func dur(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return q(fmt.Sprintf("%ds", d/time.Second))
}

// q quotes a TOML basic string.
func q(s string) string { return strconv.Quote(s) }

// TunCsumName returns the tun_csum value (ipvsadm's option without --tun-)
// of tunnel flags.
func TunCsumName(f lvs.TunFlags) string {
	switch {
	case f&lvs.TunRemCsum != 0:
		return "remcsum"
	case f&lvs.TunCsum != 0:
		return "csum"
	}
	return "nocsum"
}
