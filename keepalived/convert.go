package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Note is one line of the report: something of the file that lvsd's TOML
// does not carry.
type Note struct {
	Line int
	Key  string
	Msg  string
}

func (n Note) String() string { return fmt.Sprintf("%d: %s: %s", n.Line, n.Key, n.Msg) }

// Options complete what keepalived.conf does not say.
type Options struct {
	// Interface and Addresses make the [[interface]] of the output: the
	// device lvsd attaches to and its own addresses (DIPs). keepalived
	// leaves them to the kernel; without them the output has a commented
	// template that must be filled in before lvsd check accepts it.
	Interface string
	Addresses []string
}

// checkers are keepalived's health checkers.
var checkers = map[string]bool{
	"HTTP_GET": true, "SSL_GET": true, "TCP_CHECK": true, "SMTP_CHECK": true, "DNS_CHECK": true,
	"MISC_CHECK": true, "UDP_CHECK": true, "PING_CHECK": true, "BFD_CHECK": true, "FILE_CHECK": true,
}

// schedulers keepalived's lb_algo may name, all of which lvsd has.
var schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

type converter struct {
	out   strings.Builder
	notes []Note
	// noted holds the notes made, so that a virtual server of a group,
	// whose real servers are converted once per address, reports each once.
	noted map[Note]bool
}

func (c *converter) note(n *node, format string, args ...any) {
	nt := Note{Line: n.line, Key: n.key, Msg: fmt.Sprintf(format, args...)}
	if c.noted[nt] {
		return
	}
	if c.noted == nil {
		c.noted = map[Note]bool{}
	}
	c.noted[nt] = true
	c.notes = append(c.notes, nt)
}

func (c *converter) w(format string, args ...any) { fmt.Fprintf(&c.out, format, args...) }

// Convert turns keepalived.conf (data, named file in comments) into lvsd
// TOML and the report of what it left out. An error means the file is not
// keepalived's syntax.
func Convert(file string, data []byte, o Options) ([]byte, []Note, error) {
	nodes, err := parse(string(data))
	if err != nil {
		return nil, nil, fmt.Errorf("%s:%w", file, err)
	}
	c := &converter{}
	c.w("# lvsd configuration imported from %s by lvsd import keepalived.\n", file)
	c.w("# Each virtual server names the line of the file it comes from.\n\n")
	if o.Interface != "" && len(o.Addresses) > 0 {
		c.w("[[interface]]\nname = %q\naddresses = [%s]\n", o.Interface, quoteList(o.Addresses))
	} else {
		c.w("# keepalived leaves the director's addresses to the kernel; lvsd needs its\n")
		c.w("# interface and addresses (DIPs): fill these in (or import with -interface\n# and -addresses).\n")
		c.w("# [[interface]]\n# name = \"lvs0\"\n# addresses = [\"198.18.1.1/24\"]\n")
	}
	groups := map[string]*node{}
	for _, n := range nodes {
		if n.key == "virtual_server_group" && len(n.args) == 1 {
			groups[n.args[0]] = n
		}
	}
	for _, n := range nodes {
		switch n.key {
		case "virtual_server":
			c.virtualServer(n, groups)
		case "virtual_server_group":
			// used by the virtual servers that name it
		case "include":
			c.note(n, "not followed: import the included file on its own")
		case "global_defs", "vrrp_instance", "vrrp_sync_group", "vrrp_script", "vrrp_track_file",
			"static_ipaddress", "static_routes", "static_rules", "linkbeat_interfaces", "bfd_instance":
			c.note(n, "no equivalent in lvsd (it balances; it holds no VRRP address, routes or global settings of keepalived)")
		default:
			c.note(n, "no equivalent in lvsd")
		}
	}
	out := []byte(c.out.String())
	if o.Interface != "" && len(o.Addresses) > 0 {
		// A whole configuration: what lvsd check refuses is left out.
		if out, err = c.prune(file, out); err != nil {
			return nil, nil, err
		}
	}
	return out, c.notes, nil
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func (c *converter) virtualServer(n *node, groups map[string]*node) {
	var targets []netip.AddrPort
	switch {
	case len(n.args) == 2 && n.args[0] == "fwmark":
		c.note(n, "fwmark %s: lvsd has no firewall marks; write the service over its ports (ports = [...]), which lvsd adm shows as -f", n.args[1])
		return
	case len(n.args) == 2 && n.args[0] == "group":
		g := groups[n.args[1]]
		if g == nil {
			c.note(n, "group %s is not defined", n.args[1])
			return
		}
		for _, e := range g.children {
			ap, ok := addrPort(e.key, e.args)
			if !ok {
				c.note(e, "group entry %s %s: only ADDRESS PORT entries are imported", e.key, strings.Join(e.args, " "))
				continue
			}
			targets = append(targets, ap)
		}
	default:
		ap, ok := addrPort(firstOr(n.args, ""), n.args[min(1, len(n.args)):])
		if !ok {
			c.note(n, "%s: not an address and a port", strings.Join(n.args, " "))
			return
		}
		targets = append(targets, ap)
	}
	// keepalived's default forwarding method is NAT (it logs "no
	// forwarding method set, setting default NAT"); lvsd's is DR.
	proto, method := "tcp", "nat"
	var keys []string
	persistence := false
	var flags []string
	var reals []*node
	// Check keys of the virtual server are defaults of its real servers'
	// checkers, as in keepalived.
	var defaults tomlKeys
	var defaultNodes []*node
	var host *node
	var sorry netip.AddrPort // written per address: it must be of the VIP's family
	var sorryNode *node
	qh := map[string]*node{} // quorum and hysteresis, written once both are known
	for _, k := range n.children {
		if k.key != "notify_up" && k.key != "notify_down" && c.checkDefault(k, &defaults) {
			defaultNodes = append(defaultNodes, k)
			continue
		}
		switch k.key {
		case "lb_algo":
			if len(k.args) == 1 && slices.Contains(schedulers, k.args[0]) {
				keys = append(keys, fmt.Sprintf("scheduler = %q", k.args[0]))
			} else {
				c.note(k, "%s: not a scheduler lvsd has", strings.Join(k.args, " "))
			}
		case "lb_kind":
			switch strings.ToUpper(firstOr(k.args, "")) {
			case "NAT":
				method = "nat"
			case "DR":
				method = "dr"
			case "TUN":
				method = "tun"
			default:
				c.note(k, "%s: not NAT, DR or TUN", strings.Join(k.args, " "))
			}
		case "protocol":
			switch strings.ToUpper(firstOr(k.args, "")) {
			case "TCP":
				proto = "tcp"
			case "UDP":
				proto = "udp"
			default:
				c.note(k, "%s: lvsd balances tcp and udp only", strings.Join(k.args, " "))
			}
		case "persistence_timeout":
			if n, err := strconv.Atoi(firstOr(k.args, "")); err == nil && n > 0 {
				keys = append(keys, fmt.Sprintf("persistence_timeout = %d", n))
				persistence = true
			} else {
				c.note(k, "%s: not a number of seconds", strings.Join(k.args, " "))
			}
		case "persistence_granularity":
			keys = append(keys, fmt.Sprintf("persistence_netmask = %q", firstOr(k.args, "")))
		case "ops":
			keys = append(keys, "one_packet = true")
		case "sh-port", "sh-fallback", "mh-port", "mh-fallback":
			flags = append(flags, k.key)
		case "real_server":
			reals = append(reals, k)
		case "virtualhost":
			host = k
			defaultNodes = append(defaultNodes, k)
		case "sorry_server":
			// keepalived takes the port as optional (0 without it).
			args := k.args
			if len(args) == 1 {
				args = append(args[:1:1], "0")
			}
			if ap, ok := addrPort(firstOr(args, ""), args[min(1, len(args)):]); ok {
				sorry, sorryNode = ap, k
			} else {
				c.note(k, "%s: not an address and a port", strings.Join(k.args, " "))
			}
		case "quorum", "hysteresis":
			if q, err := strconv.ParseInt(firstOr(k.args, ""), 10, 32); err == nil && q >= 0 {
				qh[k.key] = k
			} else {
				c.note(k, "%s: not a number", strings.Join(k.args, " "))
			}
		case "quorum_up", "quorum_down":
			if len(k.args) > 0 {
				keys = append(keys, fmt.Sprintf("%s = %q", k.key, strings.Join(k.args, " ")))
			} else {
				c.note(k, "no command")
			}
		case "sorry_server_inhibit":
			c.note(k, "no equivalent in lvsd: its sorry server is added with its weight")
		case "omega":
			c.note(k, "no equivalent in lvsd: quorum_down runs whenever the quorum is lost")
		default:
			c.note(k, "no equivalent in lvsd")
		}
	}
	if !persistence {
		for _, k := range keys {
			if strings.HasPrefix(k, "persistence_netmask") {
				c.note(n, "persistence_granularity without persistence_timeout: left out")
				keys = slices.DeleteFunc(keys, func(s string) bool { return strings.HasPrefix(s, "persistence_netmask") })
				break
			}
		}
	}
	if len(flags) > 0 {
		keys = append(keys, "scheduler_flags = ["+quoteList(flags)+"]")
	}
	if q := qh["quorum"]; q != nil {
		keys = append(keys, "quorum = "+q.args[0])
	}
	if h := qh["hysteresis"]; h != nil {
		// lvsd, as keepalived's use of it, needs the hysteresis below the
		// quorum (keepalived's default quorum is 1).
		q := int64(1)
		if qh["quorum"] != nil {
			q, _ = strconv.ParseInt(qh["quorum"].args[0], 10, 32)
		}
		if hv, _ := strconv.ParseInt(h.args[0], 10, 32); hv < q {
			keys = append(keys, "hysteresis = "+h.args[0])
		} else {
			c.note(h, "%d is not below the quorum %d: left out", hv, q)
		}
	}
	keys = append(keys, fmt.Sprintf("method = %q", method))
	for _, t := range targets {
		c.w("\n[[virtual_server]]  # %d\nprotocol = %q\naddress = %q\nport = %d\n", n.line, proto, t.Addr().String(), t.Port())
		if t.Port() == 0 && !persistence {
			c.note(n, "port 0 needs persistence_timeout in lvsd, as in IPVS")
		}
		for _, k := range keys {
			c.w("%s\n", k)
		}
		if sorryNode != nil {
			sp := sorry
			if sp.Port() == 0 {
				// Port 0 (or none) is the virtual server's port: keepalived
				// sets it so for a DR or TUN sorry server, and IPVS
				// forwards a NAT one of port 0 to the virtual port.
				sp = netip.AddrPortFrom(sp.Addr(), t.Port())
			}
			switch {
			case sorry.Addr().Unmap().Is4() != t.Addr().Unmap().Is4():
				c.note(sorryNode, "%s is not of the family of the virtual address %s: left out", sorry.Addr(), t.Addr())
			case sp.Port() == 0:
				c.note(sorryNode, "%s has no port, and the virtual server %s has none to give it (lvsd forwards to a sorry server by NAT, to one port): left out", sorry.Addr(), t)
			default:
				c.w("sorry_server = %q\n", sp.String())
			}
		}
		c.realServers(reals, t, method, defaults, host, &defaultNodes)
	}
	for _, k := range defaultNodes {
		c.note(k, "no real server has a checker lvsd imports: nothing to apply it to")
	}
}

// realServers writes the real_server blocks of a virtual server at vs.
// When every real server has a checker and the checkers translate to the
// same check, it is written once as the virtual server's check (which lvsd
// also gives the real servers added later, by lvsd adm -a or a reload)
// and the real servers have none of their own; otherwise each real server
// has its own. A check written clears *defaultNodes (they were applied).
func (c *converter) realServers(reals []*node, vs netip.AddrPort, method string, defaults tomlKeys, host *node, defaultNodes *[]*node) {
	type block struct {
		text  string
		line  int // the checker's; 0: none
		check tomlKeys
	}
	var blocks []block
	same := len(reals) > 0
	for _, r := range reals {
		save := c.out
		c.out = strings.Builder{}
		line, keys, ok := c.realServer(r, vs, method, defaults, host)
		blocks = append(blocks, block{c.out.String(), line, keys})
		c.out = save
		if !ok {
			continue
		}
		if line == 0 || !slices.Equal(keys.keys, blocks[0].check.keys) || !slices.Equal(keys.vals, blocks[0].check.vals) {
			same = false
		}
	}
	if len(blocks) == 0 {
		return
	}
	if same {
		c.w("\n[virtual_server.check]  # %d: the checker of every real server\n", blocks[0].line)
		for i, k := range blocks[0].check.keys {
			c.w("%s = %s\n", k, blocks[0].check.vals[i])
		}
	}
	for _, b := range blocks {
		c.out.WriteString(b.text)
		if b.line != 0 && !same {
			c.writeCheck(b.line, b.check)
		}
		if b.line != 0 {
			*defaultNodes = nil
		}
	}
}

// realServer writes one real_server block of a virtual server at vs, and
// returns its check, with the virtual server's check defaults and
// virtualhost: the checker's line (0 for none) and keys. ok is false when
// the block could not be written.
func (c *converter) realServer(n *node, vs netip.AddrPort, method string, defaults tomlKeys, host *node) (line int, keys tomlKeys, ok bool) {
	ap, ok := addrPort(firstOr(n.args, ""), n.args[min(1, len(n.args)):])
	if !ok {
		c.note(n, "%s: not an address and a port", strings.Join(n.args, " "))
		return 0, tomlKeys{}, false
	}
	c.w("\n[[virtual_server.real_server]]  # %d\naddress = %q\n", n.line, ap.Addr().String())
	for _, k := range n.children {
		if k.key == "lb_kind" {
			if m := strings.ToLower(firstOr(k.args, "")); m == "nat" || m == "dr" || m == "tun" {
				method = m
				c.w("method = %q\n", m)
			} else {
				c.note(k, "%s: not NAT, DR or TUN", strings.Join(k.args, " "))
			}
		}
	}
	if ap.Port() != vs.Port() {
		if method != "nat" {
			c.note(n, "port %d differs from the virtual port %d: only NAT (lb_kind NAT) maps ports", ap.Port(), vs.Port())
		}
		c.w("port = %d\n", ap.Port())
	}
	var rsDefaults []*node
	for _, k := range n.children {
		switch k.key {
		case "weight":
			if w, err := strconv.Atoi(firstOr(k.args, "")); err == nil {
				c.w("weight = %d\n", w)
			} else {
				c.note(k, "%s: not a number", strings.Join(k.args, " "))
			}
		case "lb_kind":
		case "uthreshold":
			c.w("upper_threshold = %s\n", firstOr(k.args, "0"))
		case "lthreshold":
			c.w("lower_threshold = %s\n", firstOr(k.args, "0"))
		case "virtualhost":
			host = k
		default:
			if checkers[k.key] {
				continue
			}
			if c.checkDefault(k, &defaults) {
				rsDefaults = append(rsDefaults, k)
				continue
			}
			c.note(k, "no equivalent in lvsd")
		}
	}
	// lvsd has one check per real server: the first checker it can import.
	var check *node
	for _, k := range n.children {
		if !checkers[k.key] {
			continue
		}
		if check != nil {
			c.note(k, "lvsd has one check per real server: only the checker of line %d is imported", check.line)
			continue
		}
		d := defaults.clone()
		if t := checkTypes[k.key]; host != nil && (t == "http" || t == "https") {
			d.set("host", strconv.Quote(firstOr(host.args, "")))
		}
		if kk, ok := c.checker(k, d); ok {
			check, keys = k, kk
		}
	}
	if check == nil {
		for _, k := range rsDefaults {
			c.note(k, "this real server has no checker lvsd imports: nothing to apply it to")
		}
		return 0, tomlKeys{}, true
	}
	return check.line, keys, true
}

func firstOr(ss []string, def string) string {
	if len(ss) == 0 {
		return def
	}
	return ss[0]
}

// addrPort reads keepalived's "ADDRESS PORT".
func addrPort(a string, rest []string) (netip.AddrPort, bool) {
	addr, err := netip.ParseAddr(a)
	if err != nil || len(rest) != 1 {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(rest[0], 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, uint16(port)), true
}
