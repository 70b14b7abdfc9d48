package config

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/sched"
)

// build turns the decoded file into a Config, reporting every problem. The
// Config is only meaningful when no problem was reported.
func (c *checker) build(raw *rawFile) *Config {
	cfg := &Config{Timeouts: c.timeouts(&raw.Timeouts)}
	cfg.Sysctl.ExpireQuiescentTemplate = defaults.ExpireQuiescentTemplate
	if b, ok := c.boolean("sysctl.expire_quiescent_template", raw.Sysctl.ExpireQuiescentTemplate); ok {
		cfg.Sysctl.ExpireQuiescentTemplate = b
	}
	cfg.Sysctl.ExpireNodestConn = defaults.ExpireNodestConn
	if b, ok := c.boolean("sysctl.expire_nodest_conn", raw.Sysctl.ExpireNodestConn); ok {
		cfg.Sysctl.ExpireNodestConn = b
	}
	cfg.Sysctl.SecureTCP = defaults.SecureTCP
	if b, ok := c.boolean("sysctl.secure_tcp", raw.Sysctl.SecureTCP); ok {
		cfg.Sysctl.SecureTCP = b
	}
	cfg.Sysctl.SloppyTCP = defaults.SloppyTCP
	if b, ok := c.boolean("sysctl.sloppy_tcp", raw.Sysctl.SloppyTCP); ok {
		cfg.Sysctl.SloppyTCP = b
	}
	cfg.Connections.Max = defaults.MaxConnections
	if n, ok := c.integer("connections.max", raw.Connections.Max, 1, MaxConnections); ok {
		cfg.Connections.Max = int(n)
	}
	cfg.Connections.ReserveEstablished = defaults.ReserveEstablished
	if n, ok := c.integer("connections.reserve_established", raw.Connections.ReserveEstablished, 0, maxReserve); ok {
		cfg.Connections.ReserveEstablished = int(n)
	}
	if n, ok := c.integer("connections.per_source", raw.Connections.PerSource, 0, MaxConnections); ok {
		cfg.Connections.PerSource = int(n)
	}
	if n, ok := c.integer("connections.per_source_rate", raw.Connections.PerSourceRate, 0, MaxConnections); ok {
		cfg.Connections.PerSourceRate = int(n)
	}
	cfg.Connections.SourcePrefixV4 = defaults.SourcePrefixV4
	if n, ok := c.integer("connections.source_prefix_v4", raw.Connections.SourcePrefixV4, 1, 32); ok {
		cfg.Connections.SourcePrefixV4 = int(n)
	}
	cfg.Connections.CheckRST = defaults.CheckRST
	if b, ok := c.boolean("connections.check_rst", raw.Connections.CheckRST); ok {
		cfg.Connections.CheckRST = b
	}
	cfg.Connections.SourcePrefixV6 = defaults.SourcePrefixV6
	if n, ok := c.integer("connections.source_prefix_v6", raw.Connections.SourcePrefixV6, 1, 128); ok {
		cfg.Connections.SourcePrefixV6 = int(n)
	}
	cfg.Metrics = c.metrics(&raw.Metrics)

	// dips maps each director address to the key that defines it.
	dips := make(map[netip.Addr]string)
	names := make(map[string]string) // interface name → key of its name
	macs := make(map[[6]byte]string) // explicit MAC → key
	routes := make(map[netip.Prefix]string)
	for i := range raw.Interface {
		ifc, ok := c.iface(fmt.Sprintf("interface[%d]", i), &raw.Interface[i], names, dips, macs, routes)
		if ok {
			cfg.Interfaces = append(cfg.Interfaces, ifc)
		}
	}
	if len(raw.Interface) == 0 {
		c.errorf("interface", "at least one [[interface]] is required")
	}
	byName := make(map[string]*Interface, len(cfg.Interfaces))
	for i := range cfg.Interfaces {
		byName[cfg.Interfaces[i].Name] = &cfg.Interfaces[i]
	}

	svcs := make(map[svcKey]string)
	svcNames := make(map[string]string)
	for i := range raw.VirtualServer {
		key := fmt.Sprintf("virtual_server[%d]", i)
		svc, ok := c.service(key, &raw.VirtualServer[i], len(raw.Interface), byName, dips)
		if svc.Name != "" {
			if prev, dup := svcNames[svc.Name]; dup {
				c.errorf(key+".name", "%q is already the name of %s", svc.Name, prev)
			} else {
				svcNames[svc.Name] = key
			}
		}
		if !ok {
			continue // no (protocol, address, port) to compare
		}
		// Each port of a service over a list is compared on its own; a
		// port-zero service takes the ports no other service has, so it
		// conflicts only with another port-zero service.
		ports, pkeys := []uint16{svc.Port}, []string{key}
		if svc.Ports != nil {
			ports, pkeys = svc.Ports, nil
			for i := range svc.Ports {
				pkeys = append(pkeys, fmt.Sprintf("%s.ports[%d]", key, i))
			}
		}
		for i, port := range ports {
			k := svcKey{svc.Proto, svc.Addr, port}
			if prev, dup := svcs[k]; dup {
				c.errorf(pkeys[i], "%s %s is already defined by %s", svc.Proto, netip.AddrPortFrom(svc.Addr, port), prev)
			} else {
				svcs[k] = key
			}
		}
		cfg.Services = append(cfg.Services, svc)
	}
	c.marks(cfg, raw)
	return cfg
}

// marks checks the fwmark keys and gives every service over a list of
// ports that has none the lowest mark not taken, in file order.
func (c *checker) marks(cfg *Config, raw *rawFile) {
	used := make(map[uint32]string)
	var keys []string // key of each service in cfg.Services
	for i := range raw.VirtualServer {
		key := fmt.Sprintf("virtual_server[%d]", i)
		if raw.VirtualServer[i].Fwmark == nil {
			continue
		}
		n, good := c.integer(key+".fwmark", raw.VirtualServer[i].Fwmark, 1, math.MaxUint32)
		switch {
		case !good:
		case raw.VirtualServer[i].Ports == nil:
			c.errorf(key+".fwmark", "applies to a service over a list of ports (ports = [...]) only")
		case used[uint32(n)] != "":
			c.errorf(key+".fwmark", "%d is already the mark of %s", n, used[uint32(n)])
		default:
			used[uint32(n)] = key
		}
	}
	if len(c.errs) > 0 {
		return
	}
	for i := range raw.VirtualServer {
		keys = append(keys, fmt.Sprintf("virtual_server[%d]", i))
	}
	next := uint32(1)
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		if svc.Ports == nil {
			continue
		}
		if v := raw.VirtualServer[i].Fwmark; v != nil {
			n, _ := c.integer(keys[i]+".fwmark", v, 1, math.MaxUint32)
			svc.Mark = uint32(n)
			continue
		}
		for used[next] != "" {
			next++
		}
		svc.Mark = next
		used[next] = keys[i]
	}
}

type svcKey struct {
	proto lvs.Proto
	addr  netip.Addr
	port  uint16
}

func (c *checker) timeouts(raw *rawTimeouts) Timeouts {
	t := Timeouts{TCP: defaults.TCPTimeout, TCPFin: defaults.TCPFinTimeout, UDP: defaults.UDPTimeout,
		TCPTimeWait: defaults.TCPTimeWaitTimeout, TCPClose: defaults.TCPCloseTimeout}
	if d, ok := c.duration("timeouts.tcp_time_wait", raw.TCPTimeWait); ok {
		t.TCPTimeWait = d
	}
	if d, ok := c.duration("timeouts.tcp_close", raw.TCPClose); ok {
		t.TCPClose = d
	}
	if d, ok := c.duration("timeouts.tcp", raw.TCP); ok {
		t.TCP = d
	}
	if d, ok := c.duration("timeouts.tcp_fin", raw.TCPFin); ok {
		t.TCPFin = d
	}
	if d, ok := c.duration("timeouts.udp", raw.UDP); ok {
		t.UDP = d
	}
	return t
}

// iface checks one [[interface]]. The maps hold what earlier interfaces
// defined, for the checks of uniqueness across interfaces, and iface adds
// its own. ok is false when the interface has no usable name, so that
// services cannot refer to it.
func (c *checker) iface(key string, raw *rawInterface, names map[string]string, dips map[netip.Addr]string, macs map[[6]byte]string, routes map[netip.Prefix]string) (ifc Interface, ok bool) {
	ifc = Interface{
		Type:    defaults.LinkType,
		Create:  defaults.Create,
		MTU:     defaults.MTU,
		Queues:  defaults.Queues,
		Offload: defaults.Offload,
	}

	if raw.Name == nil {
		c.missing(key + ".name")
	} else if name, good := c.str(key+".name", raw.Name); good {
		if why := badIfName(name); why != "" {
			c.errorf(key+".name", "%q is not a valid interface name: %s", name, why)
		} else if prev, dup := names[name]; dup {
			c.errorf(key+".name", "%q is already the name of %s", name, prev)
		} else {
			names[name] = key
			ifc.Name, ok = name, true
		}
	}

	if t, good := c.choice(key+".type", raw.Type, "link type", []string{"tap", "tun", "packet"},
		"tap (L2, Ethernet), tun (L3, IP only), packet (an existing Ethernet interface, AF_PACKET)"); good {
		switch t {
		case "tun":
			ifc.Type = TUN
		case "packet":
			ifc.Type = PACKET
			ifc.Create = false
		}
	}
	if b, good := c.boolean(key+".create", raw.Create); good {
		if b && ifc.Type == PACKET {
			c.errorf(key+".create", "true: a packet interface attaches to an interface that exists; remove create")
		} else {
			ifc.Create = b
		}
	}
	if b, good := c.boolean(key+".offload", raw.Offload); good {
		ifc.Offload = b
	}
	if s, good := c.choice(key+".sender", raw.Sender, "sender", []string{"reader", "thread"},
		"reader (each queue's reader writes what it forwards), thread (a sender per queue writes it)"); good {
		ifc.SendThread = s == "thread"
	}
	ifc.OnLoss = defaults.OnLoss
	if s, good := c.choice(key+".on_loss", raw.OnLoss, "policy", []string{"reattach", "exit"},
		"reattach (open the device again when it returns), exit (exit 1 for a supervisor)"); good && s == "exit" {
		ifc.OnLoss = Exit
	}
	if b, good := c.boolean(key+".persist", raw.Persist); good {
		if b && ifc.Type == PACKET {
			c.errorf(key+".persist", "true: lvsd creates no packet interface; remove persist")
		} else {
			ifc.Persist = b
		}
	}
	if s, good := c.str(key+".bridge", raw.Bridge); good && s != "" {
		switch why := badIfName(s); {
		case ifc.Type != TAP:
			c.errorf(key+".bridge", "only a tap device joins a bridge")
		case why != "":
			c.errorf(key+".bridge", "%q is not a valid interface name: %s", s, why)
		default:
			ifc.Bridge = s
		}
	}
	if n, good := c.integer(key+".queues", raw.Queues, 1, maxQueues); good {
		ifc.Queues = int(n)
	}

	// Addresses before the MTU, whose minimum depends on their family.
	var v6 netip.Prefix
	if raw.Addresses == nil {
		c.missing(key + ".addresses")
	} else if vals, keys, good := c.strList(key+".addresses", raw.Addresses); good && len(vals) == 0 {
		c.errorf(key+".addresses", "at least one address is required, such as [\"198.18.1.1/24\"]")
	} else {
		for i, s := range vals {
			p, perr := parseHostPrefix(s)
			if perr == "" {
				perr = notHostOf(p.Addr(), p)
			}
			if perr != "" {
				c.errorf(keys[i], "%q %s", s, perr)
				continue
			}
			if prev, dup := dips[p.Addr()]; dup {
				c.errorf(keys[i], "%s is already a director address (%s)", p.Addr(), prev)
				continue
			}
			dips[p.Addr()] = keys[i]
			ifc.Addresses = append(ifc.Addresses, p)
			if p.Addr().Is6() && !v6.IsValid() {
				v6 = p
			}
		}
	}

	if n, good := c.integer(key+".mtu", raw.MTU, minMTU, maxMTU); good {
		ifc.MTU = int(n)
	}
	if v6.IsValid() && ifc.MTU < minMTUIPv6 {
		c.errorf(key+".mtu", "%d is below %d, the minimum MTU of IPv6, and the interface has address %s", ifc.MTU, minMTUIPv6, v6)
	}

	if s, good := c.str(key+".mac", raw.MAC); good {
		switch mac, why := parseMAC(s); {
		case ifc.Type == TUN:
			c.errorf(key+".mac", "%q: a tun interface has no MAC; remove mac or use type = \"tap\"", s)
		case ifc.Type == PACKET:
			c.errorf(key+".mac", "%q: a packet interface uses the interface's own MAC; remove mac", s)
		case why != "":
			c.errorf(key+".mac", "%q %s", s, why)
		default:
			if prev, dup := macs[mac]; dup {
				c.errorf(key+".mac", "%q is already the MAC of %s", s, prev)
			}
			macs[mac] = key + ".mac"
			ifc.MAC = mac
		}
	} else if raw.MAC == nil && ifc.Type == TAP && ok {
		ifc.MAC = DefaultMAC(ifc.Name)
	}

	for i := range raw.Route {
		if r, good := c.route(fmt.Sprintf("%s.route[%d]", key, i), &raw.Route[i], &ifc, routes); good {
			ifc.Routes = append(ifc.Routes, r)
		}
	}
	return ifc, ok
}

// badIfName says why name is not a valid Linux interface name, as the
// kernel's dev_valid_name decides (plus no control characters, which the
// kernel allows but no tool can show), or returns "".
func badIfName(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > maxIfName:
		return fmt.Sprintf("%d bytes long, the limit is %d", len(name), maxIfName)
	case name == "." || name == "..":
		return "reserved"
	}
	for _, r := range name {
		switch {
		case r == '/' || r == ':':
			return fmt.Sprintf("contains %q", r)
		case r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r':
			return "contains white space"
		case r < 0x20 || r == 0x7f:
			return "contains a control character"
		case r == utf8.RuneError:
			return "not valid UTF-8"
		}
	}
	return ""
}

// parseHostPrefix parses an address with its prefix length, as an interface
// holds it. It returns the reason when s is not one, to follow s in a
// message.
func parseHostPrefix(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			if a.Is4() {
				return p, fmt.Sprintf("has no prefix length; write it as \"%s/24\" or whatever the subnet is", a)
			}
			return p, fmt.Sprintf("has no prefix length; write it as \"%s/64\" or whatever the subnet is", a)
		}
		return p, "is not an address with a prefix length, such as \"198.18.1.1/24\""
	}
	if why := badUnicast(p.Addr()); why != "" {
		return p, why
	}
	return p, ""
}

// badUnicast says why a is not usable as a host address, or returns "".
func badUnicast(a netip.Addr) string {
	switch {
	case a.Is4In6():
		return fmt.Sprintf("is an IPv4-mapped IPv6 address; write %s", a.Unmap())
	case a.IsUnspecified():
		return "is the unspecified address"
	case a.IsMulticast():
		return "is a multicast address"
	case a.IsLoopback():
		return "is a loopback address"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address"
	}
	return ""
}

// parseMAC parses a 6-octet unicast MAC, returning the reason when s is not
// one, to follow s in a message.
func parseMAC(s string) ([6]byte, string) {
	var mac [6]byte
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != len(mac) {
		return mac, "is not a MAC address of 6 octets, such as \"02:00:5e:00:53:01\""
	}
	copy(mac[:], hw)
	switch {
	case mac == [6]byte{}:
		return mac, "is the zero MAC"
	case mac[0]&0x01 != 0:
		return mac, "is a multicast MAC; the director's own MAC must be unicast (first octet even)"
	}
	return mac, ""
}

// route checks one [[interface.route]] of ifc, whose addresses are already
// known. routes maps each destination seen so far to its key: the netstack
// has one table, so a destination may appear once in the whole file.
func (c *checker) route(key string, raw *rawRoute, ifc *Interface, routes map[netip.Prefix]string) (r Route, ok bool) {
	ok = true
	if raw.Destination == nil {
		c.missing(key + ".destination")
		ok = false
	} else if s, good := c.str(key+".destination", raw.Destination); !good {
		ok = false
	} else if p, err := netip.ParsePrefix(s); err != nil {
		c.errorf(key+".destination", "%q is not a prefix, such as \"0.0.0.0/0\" or \"2001:2::/48\"", s)
		ok = false
	} else if p != p.Masked() {
		c.errorf(key+".destination", "%q has host bits set; did you mean %q?", s, p.Masked())
		ok = false
	} else if prev, dup := routes[p]; dup {
		c.errorf(key+".destination", "%q is already the destination of %s", s, prev)
		ok = false
	} else {
		routes[p] = key
		r.Destination = p
	}

	s, good := c.str(key+".gateway", raw.Gateway)
	if !good {
		return r, ok && raw.Gateway == nil // absent: an on-link route
	}
	gw, err := netip.ParseAddr(s)
	switch {
	case err != nil || gw.Zone() != "":
		c.errorf(key+".gateway", "%q is not an IP address without zone, such as \"198.18.1.254\"", s)
		return r, false
	case badUnicast(gw) != "":
		c.errorf(key+".gateway", "%q %s", s, badUnicast(gw))
		return r, false
	case r.Destination.IsValid() && gw.Is4() != r.Destination.Addr().Is4():
		c.errorf(key+".gateway", "%s is %s but the destination %s is %s", gw, family(gw), r.Destination, family(r.Destination.Addr()))
		return r, false
	}
	onLink := false
	for _, p := range ifc.Addresses {
		if p.Addr() == gw {
			c.errorf(key+".gateway", "%s is an address of this interface, not a neighbour", gw)
			return r, false
		}
		if p.Masked().Contains(gw) {
			onLink = true
		}
	}
	if !onLink {
		c.errorf(key+".gateway", "%s is not on-link: it is in no prefix of interface %s (%s)", gw, ifc.Name, prefixList(ifc.Addresses))
		return r, false
	}
	r.Gateway = gw
	return r, ok
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

var methodHelp = "nat (ipvsadm -m), dr (-g), tun (-i)"

func parseMethod(s string) lvs.Method {
	switch s {
	case "nat":
		return lvs.NAT
	case "tun":
		return lvs.TUN
	}
	return lvs.DR
}

// service checks one [[virtual_server]]. nifs is the number of
// [[interface]] tables in the file; byName holds the valid ones; dips maps
// the director's addresses to their keys. ok is false when the service is
// too broken to compare with others.
func (c *checker) service(key string, raw *rawService, nifs int, byName map[string]*Interface, dips map[netip.Addr]string) (svc Service, ok bool) {
	ok = true
	svc.Scheduler = defaults.Scheduler

	if raw.Name != nil {
		if s, good := c.str(key+".name", raw.Name); good {
			if s == "" {
				c.errorf(key+".name", "is empty; remove it or give a label")
			}
			svc.Name = s
		}
	}

	if raw.Protocol == nil {
		c.missing(key + ".protocol")
		ok = false
	} else if s, good := c.choice(key+".protocol", raw.Protocol, "protocol", []string{"tcp", "udp"}, ""); good {
		svc.Proto = map[string]lvs.Proto{"tcp": lvs.TCP, "udp": lvs.UDP}[s]
	} else {
		ok = false
	}

	if a, good := c.hostAddr(key+".address", raw.Address, dips, "; the VIP must be an address of its own"); good {
		svc.Addr = a
	} else {
		ok = false
	}

	// multiPort: the service spans several ports (a list, or all ports).
	multiPort := false
	switch {
	case raw.Port != nil && raw.Ports != nil:
		c.errorf(key+".ports", "give either port or ports, not both")
		ok = false
	case raw.Ports != nil:
		multiPort = true
		if ports, good := c.portList(key+".ports", raw.Ports); good {
			svc.Ports, svc.Port = ports, ports[0]
		} else {
			ok = false
		}
	case raw.Port == nil:
		c.missing(key + ".port")
		ok = false
	default:
		if n, good := c.integer(key+".port", raw.Port, 0, 65535); good {
			svc.Port, multiPort = uint16(n), n == 0
		} else {
			ok = false
		}
	}

	// Persistence. badTimeout: persistence_timeout has a bad value, which
	// has been reported; the keys that depend on it are not judged.
	d, good := c.persistenceTimeout(key+".persistence_timeout", raw.Persistence)
	svc.Persistence.Timeout = d
	persistent, badTimeout := d > 0, raw.Persistence != nil && !good
	if raw.Port != nil && multiPort && !persistent && !badTimeout {
		if raw.Persistence == nil {
			c.errorf(key+".port", "0 (all ports) needs persistence_timeout, as IPVS schedules port-zero services only with persistence (ipvsadm -p); or list the ports with ports = [...]")
		} else {
			c.errorf(key+".persistence_timeout", "is off, but a service over all ports (port = 0) must be persistent, as IPVS's port-zero services")
		}
	}
	if persistent {
		svc.Persistence.Netmask = defaults.PersistenceNetmask4
		if svc.Addr.Is6() {
			svc.Persistence.Netmask = defaults.PersistenceNetmask6
		}
	}
	if raw.Netmask != nil {
		if bits, good := c.netmask(key+".persistence_netmask", raw.Netmask, svc.Addr); good && persistent {
			svc.Persistence.Netmask = bits
		} else if good && !badTimeout {
			c.errorf(key+".persistence_netmask", "has no effect without persistence_timeout (ipvsadm -M needs -p)")
		}
	}

	if b, good := c.boolean(key+".one_packet", raw.OnePacket); good && b {
		if svc.Proto == lvs.TCP {
			c.errorf(key+".one_packet", "applies to udp services only (ipvsadm -o)")
		} else {
			svc.OnePacket = true
		}
	}
	if b, good := c.boolean(key+".synproxy", raw.Synproxy); good && b {
		if svc.Proto != lvs.TCP {
			c.errorf(key+".synproxy", "applies to tcp services only: it answers SYNs with SYN cookies")
		} else {
			svc.Synproxy = true
		}
	}
	if d, good := c.optDuration(key+".slow_start", raw.SlowStart); good {
		svc.SlowStart = d
	}

	schedOK := true // false when the scheduler is bad: its flags cannot be judged
	if s, good := c.str(key+".scheduler", raw.Scheduler); !good {
		schedOK = raw.Scheduler == nil
	} else {
		schedOK = sched.Known(s)
		if schedOK {
			svc.Scheduler = s
		} else {
			c.errorf(key+".scheduler", "%q is not a known scheduler; valid: %s", s, strings.Join(sched.Names(), ", "))
		}
	}
	if flags, keys, good := c.strList(key+".scheduler_flags", raw.SchedulerFlags); good || len(flags) > 0 {
		seen := make(map[string]bool)
		for i, f := range flags {
			owner, known := schedFlags[f]
			switch {
			case !known:
				c.errorf(keys[i], "%q is not a scheduler flag; valid: sh-fallback, sh-port (with sh), mh-fallback, mh-port (with mh)", f)
			case schedOK && owner != svc.Scheduler:
				c.errorf(keys[i], "%q applies to scheduler %s only, and this service uses %s", f, owner, svc.Scheduler)
			case seen[f]:
				c.errorf(keys[i], "%q is given twice", f)
			default:
				seen[f] = true
				svc.SchedFlags = append(svc.SchedFlags, f)
			}
		}
	}

	// maglev_table_size: the Maglev lookup table of scheduler maglev, a
	// prime (the paper's M; Katran's default is 65537).
	if raw.MaglevTableSize != nil {
		if n, good := c.integer(key+".maglev_table_size", raw.MaglevTableSize, 7, maxMaglevTableSize); good {
			switch {
			case schedOK && svc.Scheduler != "maglev":
				c.errorf(key+".maglev_table_size", "applies to scheduler maglev only, and this service uses %s", svc.Scheduler)
			case !isPrime(n):
				c.errorf(key+".maglev_table_size", "%d is not a prime; Maglev needs a prime table size (e.g. 65537, 131071)", n)
			default:
				svc.MaglevTableSize = uint32(n)
			}
		}
	}

	// The service's method is the default of its real servers; methodKey
	// is the key to blame for a method that a real server inherits.
	method, methodSet := defaults.Method, false
	if s, good := c.choice(key+".method", raw.Method, "forwarding method", []string{"nat", "dr", "tun"}, methodHelp); good {
		method, methodSet = parseMethod(s), true
	}

	var ifc *Interface
	switch s, good := c.str(key+".interface", raw.Interface); {
	case good:
		if ifc = byName[s]; ifc == nil {
			var names []string
			for n := range byName {
				names = append(names, n)
			}
			slices.Sort(names)
			defined := ""
			if len(names) > 0 {
				defined = "; defined: " + strings.Join(names, ", ")
			}
			c.errorf(key+".interface", "%q is not the name of an [[interface]]%s", s, defined)
		}
	case raw.Interface != nil: // reported
	case nifs == 1:
		for _, i := range byName {
			ifc = i
		}
	case nifs > 1:
		c.errorf(key+".interface", "required key is missing: there is more than one [[interface]]")
	}
	if ifc != nil {
		svc.Interface = ifc.Name
		if why := notHostOn(svc.Addr, ifc); why != "" {
			c.errorf(key+".address", "%s %s", svc.Addr, why)
			ok = false
		}
	}

	reals := make(map[netip.AddrPort]string)
	for i := range raw.RealServer {
		rkey := fmt.Sprintf("%s.real_server[%d]", key, i)
		r, good := c.real(rkey, &raw.RealServer[i], &svc, key, method, methodSet, ifc, dips, multiPort)
		if !good {
			continue
		}
		if svc.OnePacket && r.Method == lvs.NAT {
			c.errorf(key+".one_packet", "needs dr or tun real servers: a NAT reply is translated through the connection entry that one-packet scheduling does not keep, and %s uses nat", rkey)
			svc.OnePacket = false
		}
		if svc.Synproxy && r.Method != lvs.NAT {
			c.errorf(key+".synproxy", "needs nat real servers: the director translates the sequence numbers of every segment in both directions, and the replies of %s (%s) bypass it", rkey, r.Method)
			svc.Synproxy = false
		}
		// A zero port of a one-port service is the default from a bad
		// service port: nothing to compare.
		if ap := netip.AddrPortFrom(r.Addr, r.Port); r.Port != 0 || multiPort {
			if prev, dup := reals[ap]; dup {
				c.errorf(rkey, "%s is already defined by %s", ap, prev)
				continue
			}
			reals[ap] = rkey
		}
		r.Check = c.check(key, raw.Check, rkey, raw.RealServer[i].Check, &svc, &r)
		svc.Reals = append(svc.Reals, r)
	}
	var own *Check
	if raw.Check != nil {
		// The service's own check, judged once whatever its real servers
		// override (a pseudo server with a port of its own), and kept for
		// the real servers added at run time.
		own = c.check(key, raw.Check, key, nil, &svc, &Real{Port: 1})
	}
	svc.Health = c.health(key, raw, &svc)
	svc.Health.Check = own
	return svc, ok
}

// hostAddr reads the host address at key (a VIP or a real server), which
// must not be one of the director's addresses (dips); notDIP ends the
// message when it is one. It reports each problem and returns false.
func (c *checker) hostAddr(key string, v any, dips map[netip.Addr]string, notDIP string) (netip.Addr, bool) {
	if v == nil {
		c.missing(key)
		return netip.Addr{}, false
	}
	s, good := c.str(key, v)
	if !good {
		return netip.Addr{}, false
	}
	a, why := parseHost(s)
	if why != "" {
		c.errorf(key, "%q %s", s, why)
		return netip.Addr{}, false
	}
	if prev, dip := dips[a]; dip {
		c.errorf(key, "%s is a director address (%s)%s", a, prev, notDIP)
		return netip.Addr{}, false
	}
	return a, true
}

// notHostOf says why a cannot be a host of the IPv4 subnet p: it is its
// network or its broadcast address (subnets of /31 and /32 have neither,
// RFC 3021); or returns "".
func notHostOf(a netip.Addr, p netip.Prefix) string {
	if !a.Is4() || !p.Addr().Is4() || p.Bits() > 30 || !p.Contains(a) {
		return ""
	}
	first := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(first[:]) | (uint32(1)<<(32-p.Bits()) - 1)
	var last [4]byte
	binary.BigEndian.PutUint32(last[:], v)
	switch a {
	case netip.AddrFrom4(first):
		return fmt.Sprintf("is the network address of %s, not a host address", p.Masked())
	case netip.AddrFrom4(last):
		return fmt.Sprintf("is the broadcast address of %s, not a host address", p.Masked())
	}
	return ""
}

// notHostOn says why a cannot be a host on interface ifc (nil: unknown),
// or returns "" (see notHostOf).
func notHostOn(a netip.Addr, ifc *Interface) string {
	if ifc == nil {
		return ""
	}
	for _, p := range ifc.Addresses {
		if why := notHostOf(a, p); why != "" {
			return why
		}
	}
	return ""
}

// parseHost parses a host address without prefix length or zone, returning
// the reason when s is not one, to follow s in a message.
func parseHost(s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil && strings.Contains(s, "/"):
		return a, "is not an address: write it without prefix length"
	case err != nil:
		return a, "is not an IP address, such as \"198.18.1.100\" or \"2001:2::100\""
	case a.Zone() != "":
		return a, "has a zone; write the address without it"
	}
	return a, badUnicast(a)
}

// real checks one real server of svc (whose Addr and Port are zero when
// bad). skey is the service's key; method is the service's method, given
// explicitly when methodSet; ifc is the service's interface, nil when
// unknown.
//
// In a service over several ports (multiPort) a real server has no port of
// its own: each connection keeps the port the client addressed.
func (c *checker) real(key string, raw *rawReal, svc *Service, skey string, method lvs.Method, methodSet bool, ifc *Interface, dips map[netip.Addr]string, multiPort bool) (r Real, ok bool) {
	ok = true
	r.Weight = defaults.Weight

	if a, good := c.hostAddr(key+".address", raw.Address, dips, ", not a real server"); !good {
		ok = false
	} else if a == svc.Addr {
		c.errorf(key+".address", "%s is the VIP of this service", a)
		ok = false
	} else if why := notHostOn(a, ifc); why != "" {
		c.errorf(key+".address", "%s %s", a, why)
		ok = false
	} else {
		r.Addr = a
	}

	r.Method = method
	methodKey := skey + ".method" // where the method comes from
	if s, good := c.choice(key+".method", raw.Method, "forwarding method", []string{"nat", "dr", "tun"}, methodHelp); good {
		r.Method, methodKey = parseMethod(s), key+".method"
	} else if raw.Method != nil {
		ok = false
	}
	how := r.Method.String()
	if methodKey == skey+".method" && !methodSet {
		how += " (the default method)"
	}

	r.Port = svc.Port
	if multiPort {
		r.Port = 0
		if raw.Port != nil {
			c.errorf(key+".port", "a service over several ports forwards each connection to the port the client addressed; remove port")
			ok = false
		}
	} else if n, good := c.integer(key+".port", raw.Port, 1, 65535); good {
		r.Port = uint16(n)
		if r.Method != lvs.NAT && svc.Port != 0 && r.Port != svc.Port {
			c.errorf(key+".port", "%d: port mapping (virtual port %d) is not possible with method %s; remove port or use nat", n, svc.Port, how)
			ok = false
		}
	} else if raw.Port != nil {
		ok = false
	}

	if n, good := c.integer(key+".weight", raw.Weight, 0, maxWeight); good {
		r.Weight = int32(n)
	}
	r.SlowStart = svc.SlowStart
	if d, good := c.optDuration(key+".slow_start", raw.SlowStart); good {
		r.SlowStart = d
	}
	upper, upperOK := c.integer(key+".upper_threshold", raw.UpperThreshold, 0, maxThresh)
	lower, lowerOK := c.integer(key+".lower_threshold", raw.LowerThreshold, 0, maxThresh)
	r.UpperThreshold, r.LowerThreshold = int32(upper), int32(lower)
	if upperOK && lowerOK && upper > 0 && lower > upper {
		c.errorf(key+".lower_threshold", "%d is above upper_threshold %d", lower, upper)
	}

	if !c.tunnel(key, raw, &r, how) {
		ok = false
	}

	if ifc != nil && ifc.Type == TUN && r.Method == lvs.DR {
		c.errorf(methodKey, "%s needs an L2 link, but interface %s is type tun; use nat or tun", how, ifc.Name)
		ok = false
	} else if ifc != nil && r.Addr.IsValid() && svc.Addr.IsValid() && (r.Addr.Is4() == svc.Addr.Is4() || r.Method == lvs.TUN) {
		// Configurations that pass every other check and can never
		// forward to this real server. A tunnel's outer header is of the
		// real server's family, so it needs a director address of that
		// family, whatever the VIP's (the fast path drops every packet as
		// unsupported without one).
		switch src, routed := ifc.Source(r.Addr); {
		case !src.IsValid():
			c.errorf(key+".address", "%s is %s but interface %s has no %s address (%s) to send to it from: add one to addresses",
				r.Addr, family(r.Addr), ifc.Name, family(r.Addr), prefixList(ifc.Addresses))
			ok = false
		case r.Method == lvs.DR && !ifc.OnLink(r.Addr):
			c.errorf(key+".address", "%s is on no subnet of interface %s (%s) and no on-link route: %s changes only the destination MAC, so the real server must be on the link; add its subnet to addresses, or use tun or nat",
				r.Addr, ifc.Name, prefixList(ifc.Addresses), how)
			ok = false
		case !routed:
			c.errorf(key+".address", "%s has no route through interface %s (%s): add its subnet to addresses, or an [[interface.route]] that holds it",
				r.Addr, ifc.Name, prefixList(ifc.Addresses))
			ok = false
		}
	}
	// IPVS tunnels either family over either (ip_vs_tunnel_xmit and
	// ip_vs_tunnel_xmit_v6 take both), and so does the fast path; NAT and
	// DR rewrite or keep the inner header, so they need one family.
	if r.Addr.IsValid() && svc.Addr.IsValid() && r.Addr.Is4() != svc.Addr.Is4() && r.Method != lvs.TUN {
		c.errorf(key+".address", "%s is %s but the VIP %s is %s; method %s needs one family", r.Addr, family(r.Addr), svc.Addr, family(svc.Addr), how)
		ok = false
	}
	return r, ok
}

// maxMaglevTableSize is the largest Maglev table package sched builds.
const maxMaglevTableSize = sched.MaxMaglevSize

// isPrime reports whether n (at most maxMaglevTableSize) is prime.
func isPrime(n int64) bool {
	if n < 2 {
		return false
	}
	for d := int64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// tunnel reads a real server's tun_type, tun_port and tun_csum into
// r.Tunnel, as ipvsadm checks --tun-type, --tun-port and the checksum
// options: only a tun real server takes them, gue needs a port and is the
// only one to take one, ipip takes no checksum option, remcsum is gue's.
func (c *checker) tunnel(key string, raw *rawReal, r *Real, how string) bool {
	if raw.TunType == nil && raw.TunPort == nil && raw.TunCsum == nil {
		return true
	}
	if r.Method != lvs.TUN {
		for _, k := range []struct {
			name string
			v    any
		}{{"tun_type", raw.TunType}, {"tun_port", raw.TunPort}, {"tun_csum", raw.TunCsum}} {
			if k.v != nil {
				c.errorf(key+"."+k.name, "only a tun real server takes a tunnel option, and method is %s; remove %s or use method tun", how, k.name)
				return false
			}
		}
	}
	ok := true
	if s, good := c.choice(key+".tun_type", raw.TunType, "tunnel type", []string{"ipip", "gue", "gre"}, ""); good {
		r.Tunnel.Type = map[string]lvs.TunType{"ipip": lvs.TunIPIP, "gue": lvs.TunGUE, "gre": lvs.TunGRE}[s]
	} else if raw.TunType != nil {
		return false
	}
	typ := r.Tunnel.Type
	if raw.TunPort != nil {
		if n, good := c.integer(key+".tun_port", raw.TunPort, 1, 65535); !good {
			ok = false
		} else if typ != lvs.TunGUE {
			c.errorf(key+".tun_port", "tun_type %s takes no port; only gue does", typ)
			ok = false
		} else {
			r.Tunnel.Port = uint16(n)
		}
	} else if typ == lvs.TunGUE {
		c.errorf(key+".tun_type", "gue needs tun_port, the UDP port the real server decapsulates on")
		ok = false
	}
	if s, good := c.choice(key+".tun_csum", raw.TunCsum, "tunnel checksum option", []string{"nocsum", "csum", "remcsum"}, ""); good {
		switch {
		case typ == lvs.TunIPIP:
			c.errorf(key+".tun_csum", "tun_type ipip takes no checksum option; only gue and gre do")
			ok = false
		case s == "remcsum" && typ != lvs.TunGUE:
			c.errorf(key+".tun_csum", "remcsum (remote checksum offload) is gue's; tun_type %s takes nocsum or csum", typ)
			ok = false
		case s == "csum":
			r.Tunnel.Flags = lvs.TunCsum
		case s == "remcsum":
			r.Tunnel.Flags = lvs.TunRemCsum
		}
	} else if raw.TunCsum != nil {
		ok = false
	}
	return ok
}
