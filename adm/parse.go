package adm

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Cmd is an ipvsadm command.
type Cmd int

// Commands, in ipvsadm's order (CMD_*), then lvsd's help and version.
const (
	CmdNone Cmd = iota
	CmdAdd
	CmdEdit
	CmdDel
	CmdFlush
	CmdList
	CmdAddDest
	CmdDelDest
	CmdEditDest
	CmdTimeout
	CmdStartDaemon
	CmdStopDaemon
	CmdRestore
	CmdSave
	CmdZero
	CmdHelp
	CmdVersion
)

var cmdNames = [...]string{
	CmdAdd: "add-service", CmdEdit: "edit-service", CmdDel: "delete-service", CmdFlush: "flush",
	CmdList: "list", CmdAddDest: "add-server", CmdDelDest: "delete-server", CmdEditDest: "edit-server",
	CmdTimeout: "set", CmdStartDaemon: "start-daemon", CmdStopDaemon: "stop-daemon",
	CmdRestore: "restore", CmdSave: "save", CmdZero: "zero",
}

func (c Cmd) String() string {
	if c > CmdNone && int(c) < len(cmdNames) {
		return cmdNames[c]
	}
	return fmt.Sprintf("cmd-%d", int(c))
}

// Mutates reports whether the command changes the table.
func (c Cmd) Mutates() bool {
	switch c {
	case CmdAdd, CmdEdit, CmdDel, CmdFlush, CmdAddDest, CmdDelDest, CmdEditDest, CmdTimeout, CmdZero, CmdRestore:
		return true
	}
	return false
}

// Option bits, ipvsadm's OPT_* (by their OPTC_* index), then lvsd's own.
const (
	optNumeric = iota
	optConnection
	optService
	optScheduler
	optPersistent
	optNetmask
	optServer
	optForward
	optWeight
	optUThreshold
	optLThreshold
	optMcast
	optTimeout
	optDaemon
	optStats
	optRate
	optThresholds
	optPersistentConn
	optNoSort
	optSyncID
	optExact
	optOnePacket
	optPE
	optSchedFlags
	optMcastGroup
	optMcastPort
	optMcastTTL
	optSyncMaxLen
	optTunInfo
	optTunType
	optTunPort
	optTunNoCsum
	optTunCsum
	optTunRemCsum
	numIPVSOpts
)

// lvsd's options follow ipvsadm's 34.
const (
	optLvsdPorts = numIPVSOpts + iota
	optLvsdName
	optLvsdInterface
	optLvsdSlowStart
	optLvsdMaglev
	optLvsdList
	numOpts
)

var optNames = [numOpts]string{
	"numeric", "connection", "service-address", "scheduler", "persistent", "netmask", "real-server",
	"forwarding-method", "weight", "u-threshold", "l-threshold", "mcast-interface", "timeout", "daemon",
	"stats", "rate", "thresholds", "persistent-conn", "nosort", "syncid", "exact", "ops", "pe",
	"sched-flags", "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
	"tun-port", "tun-nocsum", "tun-csum", "tun-remcsum",
	"ports", "name", "interface", "slow-start", "maglev-size", "lvsd",
}

// legal is ipvsadm's commands_v_options with lvsd's columns added:
// '+' compulsory, 'x' illegal, '1' exclusive, ' ' optional.
var legal = [CmdZero + 1]string{
	//                 ipvsadm's 34 columns, as its table      lvsd's: ports name interface slow-start maglev-size lvsd
	CmdAdd:         "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx" + "     x",
	CmdEdit:        "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx" + "     x",
	CmdDel:         "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" + "xxxxxx",
	CmdFlush:       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" + "xxxxxx",
	CmdList:        " 11xxxxxxxxx11       xxxxxxx xxxxx" + "xxxxx ",
	CmdAddDest:     "xx+xxx+    xxxxxxxxxxxxxxxxxx     " + "xxx xx",
	CmdDelDest:     "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx" + "xxxxxx",
	CmdEditDest:    "xx+xxx+    xxxxxxxxxxxxxxxxxx     " + "xxx xx",
	CmdTimeout:     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" + "xxxxxx",
	CmdStartDaemon: "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx" + "xxxxxx",
	CmdStopDaemon:  "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx" + "xxxxxx",
	CmdRestore:     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" + "xxxxxx",
	CmdSave:        " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" + "xxxxxx",
	CmdZero:        "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" + "xxxxxx",
}

// ServiceID identifies a virtual service on the command line: -t/-u
// ADDR[:PORT] or -f MARK.
type ServiceID struct {
	Proto lvs.Proto
	Addr  netip.Addr // invalid for -f
	Port  uint16
	Mark  uint32
	IPv6  bool // -6 with -f
}

// Command is a parsed ipvsadm command line.
type Command struct {
	Cmd     Cmd
	Format  Format
	Options uint64 // bit i: option i given (ipvsadm's OPT_* and lvsd's)

	Svc ServiceID
	// Service parameters (-A, -E): Sched is "wlc" when not given.
	Sched      string
	Persistent bool
	Timeout    uint32 // -p: seconds (300 when -p has no value)
	// Netmask is -M as a prefix length; NetmaskSet when given.
	Netmask    int
	OnePacket  bool
	SchedFlags []string

	// Real server (-a, -e, -d).
	Dest      netip.AddrPort
	Method    lvs.Method // -g (default), -m, -i
	Tun       lvs.Tunnel // --tun-type (ipip by default), --tun-port, --tun-*csum
	Weight    int32      // -w, 1 when not given
	UThresh   int32      // -x
	LThresh   int32      // -y
	SlowStart time.Duration

	// Timeouts of --set, in seconds; 0 keeps the current value.
	TCP, TCPFin, UDP int

	// lvsd's own options.
	Ports        []uint16 // --ports PROTO:VIP:P1,P2...: the VIP, protocol and ports of a -f service
	Name         string   // --name
	Interface    string   // --interface
	MaglevSize   uint32   // --maglev-size
	svcSlowSet   bool
	SvcSlowStart time.Duration // --slow-start with -A/-E
}

// Has reports whether option bit o was given.
func (c *Command) Has(o int) bool { return c.Options&(1<<o) != 0 }

// Error is a refused command line: ipvsadm's message and exit status.
type Error struct {
	Msg  string
	Code int
	// TryHelp: print "Try `PROG -h' or 'PROG --help' for more
	// information." instead of Msg.
	TryHelp bool
}

func (e *Error) Error() string {
	if e.TryHelp {
		return "try -h or --help"
	}
	return e.Msg
}

// Exit statuses as ipvsadm's: fail(2, ...) for a bad command line; -1
// (255) for option-parser errors, a command the table refuses, and the
// "Try -h" hint.
const (
	ExitBadArg = 2
	ExitFailed = 255
)

func fail(format string, args ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, args...), Code: ExitBadArg}
}

// PortNames resolves a service name in ADDR:PORT (ipvsadm's
// service_to_port); nil accepts numbers only.
type PortNames func(name string, proto lvs.Proto) (uint16, bool)

// Parser parses ipvsadm command lines.
type Parser struct {
	Ports PortNames
	// Hosts resolves an IPv4 host name (ipvsadm's host_to_addr); nil
	// accepts addresses only.
	Hosts func(name string) (netip.Addr, bool)
}

// option kinds of the option table.
type argKind uint8

const (
	argNone argKind = iota
	argRequired
	argOptional
)

type optDef struct {
	long  string
	short byte
	arg   argKind
	tag   string // what parseOne switches on
}

// options is ipvsadm's popt table, with lvsd's own long options last.
var options = []optDef{
	{"add-service", 'A', argNone, "A"}, {"edit-service", 'E', argNone, "E"}, {"delete-service", 'D', argNone, "D"},
	{"clear", 'C', argNone, "C"}, {"list", 'L', argNone, "L"}, {"", 'l', argNone, "L"}, {"zero", 'Z', argNone, "Z"},
	{"add-server", 'a', argNone, "a"}, {"edit-server", 'e', argNone, "e"}, {"delete-server", 'd', argNone, "d"},
	{"set", 0, argNone, "set"}, {"help", 'h', argNone, "h"}, {"version", 'v', argNone, "v"},
	{"restore", 'R', argNone, "R"}, {"save", 'S', argNone, "S"},
	{"start-daemon", 0, argRequired, "start-daemon"}, {"stop-daemon", 0, argRequired, "stop-daemon"},
	{"tcp-service", 't', argRequired, "t"}, {"udp-service", 'u', argRequired, "u"},
	{"sctp-service", 0, argRequired, "sctp"}, {"fwmark-service", 'f', argRequired, "f"},
	{"scheduler", 's', argRequired, "s"}, {"persistent", 'p', argOptional, "p"},
	{"netmask", 'M', argRequired, "M"}, {"real-server", 'r', argRequired, "r"},
	{"masquerading", 'm', argNone, "m"}, {"ipip", 'i', argNone, "i"}, {"gatewaying", 'g', argNone, "g"},
	{"weight", 'w', argRequired, "w"}, {"u-threshold", 'x', argRequired, "x"}, {"l-threshold", 'y', argRequired, "y"},
	{"numeric", 'n', argNone, "n"}, {"connection", 'c', argNone, "c"},
	{"mcast-interface", 0, argRequired, "mcast-interface"}, {"syncid", 0, argRequired, "syncid"},
	{"timeout", 0, argNone, "timeout"}, {"daemon", 0, argNone, "daemon"}, {"stats", 0, argNone, "stats"},
	{"rate", 0, argNone, "rate"}, {"thresholds", 0, argNone, "thresholds"},
	{"persistent-conn", 0, argNone, "persistent-conn"}, {"nosort", 0, argNone, "nosort"}, {"sort", 0, argNone, "sort"},
	{"exact", 'X', argNone, "X"}, {"ipv6", '6', argNone, "6"}, {"ops", 'o', argNone, "o"},
	{"pe", 0, argRequired, "pe"}, {"sched-flags", 'b', argRequired, "b"},
	{"mcast-group", 0, argRequired, "mcast-group"}, {"mcast-port", 0, argRequired, "mcast-port"},
	{"mcast-ttl", 0, argRequired, "mcast-ttl"}, {"sync-maxlen", 0, argRequired, "sync-maxlen"},
	{"tun-info", 0, argNone, "tun-info"}, {"tun-type", 0, argRequired, "tun-type"}, {"tun-port", 0, argRequired, "tun-port"},
	{"tun-nocsum", 0, argNone, "tun-nocsum"}, {"tun-csum", 0, argNone, "tun-csum"}, {"tun-remcsum", 0, argNone, "tun-remcsum"},
	// lvsd's own.
	{"ports", 0, argRequired, "ports"}, {"name", 0, argRequired, "name"}, {"interface", 0, argRequired, "interface"},
	{"slow-start", 0, argRequired, "slow-start"}, {"maglev-size", 0, argRequired, "maglev-size"},
	{"lvsd", 0, argNone, "lvsd"},
}

// token is one option found on the command line.
type token struct {
	def    *optDef
	arg    string
	hasArg bool
	raw    string // the argv element, for popt's error messages
}

// scan splits args as popt does: options in order, and the other
// arguments (leftovers) apart. A popt error ends the scan; it is returned
// with the tokens before it so that the caller can report it where popt
// would.
func scan(args []string) (toks []token, rest []string, perr *Error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			return toks, rest, nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			d := findLong(name)
			if d == nil {
				return toks, rest, &Error{Msg: a + ": unknown option", Code: ExitFailed}
			}
			t := token{def: d, raw: a}
			switch {
			case d.arg == argNone:
				if hasVal {
					return toks, rest, &Error{Msg: a + ": option does not take an argument", Code: ExitFailed}
				}
			case hasVal:
				t.arg, t.hasArg = val, true
			case i+1 < len(args) && (d.arg == argRequired || !strings.HasPrefix(args[i+1], "-")):
				i++
				t.arg, t.hasArg = args[i], true
			case d.arg == argRequired:
				return toks, rest, &Error{Msg: a + ": missing argument", Code: ExitFailed}
			}
			toks = append(toks, t)
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				d := findShort(a[j])
				if d == nil {
					return toks, rest, &Error{Msg: a + ": unknown option", Code: ExitFailed}
				}
				t := token{def: d, raw: a}
				if d.arg != argNone {
					switch {
					case j+1 < len(a):
						t.arg, t.hasArg = a[j+1:], true
					case i+1 < len(args) && (d.arg == argRequired || !strings.HasPrefix(args[i+1], "-")):
						i++
						t.arg, t.hasArg = args[i], true
					case d.arg == argRequired:
						return toks, rest, &Error{Msg: a + ": missing argument", Code: ExitFailed}
					}
					toks = append(toks, t)
					break
				}
				toks = append(toks, t)
			}
		default:
			rest = append(rest, a)
		}
	}
	return toks, rest, nil
}

func findLong(name string) *optDef {
	for i := range options {
		if options[i].long != "" && options[i].long == name {
			return &options[i]
		}
	}
	return nil
}

func findShort(c byte) *optDef {
	for i := range options {
		if options[i].short == c {
			return &options[i]
		}
	}
	return nil
}

// Parse parses one command line (without the program name) as ipvsadm
// 1.31 does. An empty line is ipvsadm without arguments: list the table.
// The error is an *Error carrying ipvsadm's message and exit status.
func (p *Parser) Parse(args []string) (*Command, error) {
	c := &Command{Weight: 1, Method: lvs.DR, Netmask: -1}
	if len(args) == 0 {
		c.Cmd = CmdList
		return c, nil
	}
	toks, rest, perr := scan(args)
	// The first option must be a command, else only the hint is printed.
	if len(toks) == 0 {
		return nil, &Error{TryHelp: true, Code: ExitFailed}
	}
	switch toks[0].def.tag {
	case "A":
		c.Cmd = CmdAdd
	case "E":
		c.Cmd = CmdEdit
	case "D":
		c.Cmd = CmdDel
	case "a":
		c.Cmd = CmdAddDest
	case "e":
		c.Cmd = CmdEditDest
	case "d":
		c.Cmd = CmdDelDest
	case "C":
		c.Cmd = CmdFlush
	case "L":
		c.Cmd = CmdList
	case "Z":
		c.Cmd = CmdZero
	case "set":
		c.Cmd = CmdTimeout
	case "R":
		c.Cmd = CmdRestore
	case "S":
		c.Cmd = CmdSave
	case "start-daemon", "stop-daemon":
		c.Cmd = CmdStartDaemon
		if toks[0].def.tag == "stop-daemon" {
			c.Cmd = CmdStopDaemon
		}
		if toks[0].arg != "master" && toks[0].arg != "backup" {
			if c.Cmd == CmdStartDaemon {
				return nil, fail("illegal start-daemon parameter specified")
			}
			return nil, fail("illegal start_daemon specified")
		}
	case "h":
		c.Cmd = CmdHelp
		return c, nil
	case "v":
		c.Cmd = CmdVersion
		return c, nil
	default:
		return nil, &Error{TryHelp: true, Code: ExitFailed}
	}
	for _, t := range toks[1:] {
		if err := p.option(c, &t); err != nil {
			return nil, err
		}
	}
	if perr != nil {
		return nil, perr
	}
	if c.Cmd == CmdTimeout {
		if len(rest) < 3 {
			return nil, fail("--set option requires 3 timeout values")
		}
		var err error
		vals := []*int{&c.TCP, &c.TCPFin, &c.UDP}
		for i, v := range vals {
			if *v, err = parseTimeout(rest[i], 0, maxTimeout); err != nil {
				return nil, err
			}
		}
		rest = rest[3:]
	}
	if len(rest) > 0 {
		return nil, fail("unexpected argument %s", rest[0])
	}
	if len(c.SchedFlags) > 0 {
		if err := checkSchedFlags(c.Sched, c.SchedFlags); err != nil {
			return nil, err
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// maxTimeout is ipvsadm's MAX_TIMEOUT: 31 days.
const maxTimeout = 86400 * 31

func (c *Command) set(o int) *Error {
	if c.Has(o) {
		return fail("multiple '%s' options specified", optNames[o])
	}
	c.Options |= 1 << o
	return nil
}

func (p *Parser) option(c *Command, t *token) error {
	set := func(o int) error {
		if err := c.set(o); err != nil {
			return err
		}
		return nil
	}
	switch t.def.tag {
	case "A", "E", "D", "a", "e", "d", "C", "L", "Z", "set", "R", "S", "start-daemon", "stop-daemon":
		return fail("multiple commands specified")
	case "h", "v":
		// popt hands these to the loop, whose default case refuses them.
		return fail("invalid option `%s'", t.raw)
	case "t", "u", "sctp":
		if err := set(optService); err != nil {
			return err
		}
		c.Svc.Proto = map[string]lvs.Proto{"t": lvs.TCP, "u": lvs.UDP, "sctp": lvs.SCTP}[t.def.tag]
		a, port, hasPort, ok := p.parseService(t.arg, c.Svc.Proto)
		if !ok {
			return fail("illegal virtual server address[:port] specified")
		}
		c.Svc.Addr = a
		if hasPort {
			c.Svc.Port = port
		} else {
			c.Svc.Port = 0
		}
		if a.Is6() && c.Netmask < 0 {
			c.Netmask = 128
		}
	case "f":
		if err := set(optService); err != nil {
			return err
		}
		c.Svc.Proto = lvs.TCP
		n, err := strconv.ParseInt(t.arg, 10, 64)
		if err != nil || n <= 0 || n > math.MaxUint32 {
			return fail("invalid fwmark value `%s' specified", t.arg)
		}
		c.Svc.Mark = uint32(n)
	case "s":
		if err := set(optScheduler); err != nil {
			return err
		}
		c.Sched = t.arg
		if len(c.Sched) > 15 {
			c.Sched = c.Sched[:15] // IP_VS_SCHEDNAME_MAXLEN - 1
		}
	case "p":
		if err := set(optPersistent); err != nil {
			return err
		}
		c.Persistent = true
		c.Timeout = 300 // IPVS_SVC_PERSISTENT_TIMEOUT
		if t.hasArg {
			n, err := parseTimeout(t.arg, 1, maxTimeout)
			if err != nil {
				return err
			}
			c.Timeout = uint32(n)
		}
	case "M":
		if err := set(optNetmask); err != nil {
			return err
		}
		if !(c.Svc.Addr.Is6() || c.Svc.IPv6) {
			bits, ok := parseMask4(t.arg)
			if !ok {
				return fail("illegal virtual server persistent mask specified")
			}
			c.Netmask = bits
		} else {
			n := atoi(t.arg)
			if n < 1 || n > 128 {
				return fail("illegal ipv6 netmask specified")
			}
			c.Netmask = n
		}
	case "r":
		if err := set(optServer); err != nil {
			return err
		}
		a, port, hasPort, ok := p.parseService(t.arg, c.Svc.Proto)
		if !ok {
			return fail("illegal real server address[:port] specified")
		}
		if !hasPort {
			port = c.Svc.Port // as ipvsadm: the service port at this point
		}
		c.Dest = netip.AddrPortFrom(a, port)
	case "i", "g", "m":
		if err := set(optForward); err != nil {
			return err
		}
		c.Method = map[string]lvs.Method{"i": lvs.TUN, "g": lvs.DR, "m": lvs.NAT}[t.def.tag]
	case "w":
		if err := set(optWeight); err != nil {
			return err
		}
		n, ok := stringToNumber(t.arg, 0, 65535)
		if !ok {
			return fail("illegal weight specified")
		}
		c.Weight = int32(n)
	case "x":
		if err := set(optUThreshold); err != nil {
			return err
		}
		n, ok := stringToNumber(t.arg, 0, math.MaxInt32)
		if !ok {
			return fail("illegal u_threshold specified")
		}
		c.UThresh = int32(n)
	case "y":
		if err := set(optLThreshold); err != nil {
			return err
		}
		n, ok := stringToNumber(t.arg, 0, math.MaxInt32)
		if !ok {
			return fail("illegal l_threshold specified")
		}
		c.LThresh = int32(n)
	case "c":
		return set(optConnection)
	case "n":
		c.Format |= FmtNumeric
		return set(optNumeric)
	case "mcast-interface":
		return set(optMcast)
	case "syncid":
		if err := set(optSyncID); err != nil {
			return err
		}
		if _, ok := stringToNumber(t.arg, 0, 255); !ok {
			return fail("illegal syncid specified")
		}
	case "timeout":
		return set(optTimeout)
	case "daemon":
		return set(optDaemon)
	case "stats":
		c.Format |= FmtStats
		return set(optStats)
	case "rate":
		c.Format |= FmtRate
		return set(optRate)
	case "thresholds":
		c.Format |= FmtThresholds
		return set(optThresholds)
	case "persistent-conn":
		c.Format |= FmtPersistentConn
		return set(optPersistentConn)
	case "nosort":
		c.Format |= FmtNoSort
		return set(optNoSort)
	case "sort":
	case "X":
		c.Format |= FmtExact
		return set(optExact)
	case "6":
		if c.Svc.Mark == 0 {
			return fail("-6 used before -f\n")
		}
		c.Svc.IPv6 = true
		c.Netmask = 128
	case "o":
		c.OnePacket = true
		return set(optOnePacket)
	case "pe":
		return set(optPE)
	case "b":
		if err := set(optSchedFlags); err != nil {
			return err
		}
		c.SchedFlags = strings.Split(t.arg, ",")
	case "mcast-group":
		return set(optMcastGroup)
	case "mcast-port":
		if err := set(optMcastPort); err != nil {
			return err
		}
		if _, ok := stringToNumber(t.arg, 1, 65535); !ok {
			return fail("illegal mcast-port specified")
		}
	case "mcast-ttl":
		if err := set(optMcastTTL); err != nil {
			return err
		}
		if _, ok := stringToNumber(t.arg, 1, 255); !ok {
			return fail("illegal mcast-ttl specified")
		}
	case "sync-maxlen":
		if err := set(optSyncMaxLen); err != nil {
			return err
		}
		if _, ok := stringToNumber(t.arg, 1, 65535-20-8); !ok {
			return fail("illegal sync-maxlen specified")
		}
	case "tun-info":
		c.Format |= FmtTunInfo
		return set(optTunInfo)
	case "tun-type":
		if err := set(optTunType); err != nil {
			return err
		}
		switch t.arg {
		case "ipip":
			c.Tun.Type = lvs.TunIPIP
		case "gue":
			c.Tun.Type = lvs.TunGUE
		case "gre":
			c.Tun.Type = lvs.TunGRE
		default:
			return fail("illegal tunnel type specified")
		}
	case "tun-port":
		if err := set(optTunPort); err != nil {
			return err
		}
		n, ok := stringToNumber(t.arg, 1, 65535)
		if !ok {
			return fail("illegal tunnel port specified")
		}
		c.Tun.Port = uint16(n)
	case "tun-nocsum":
		c.Tun.Flags = 0
		return set(optTunNoCsum)
	case "tun-csum":
		c.Tun.Flags |= lvs.TunCsum
		return set(optTunCsum)
	case "tun-remcsum":
		c.Tun.Flags |= lvs.TunRemCsum
		return set(optTunRemCsum)
	case "ports":
		if err := set(optLvsdPorts); err != nil {
			return err
		}
		proto, vip, ports, ok := parsePorts(t.arg)
		if !ok {
			return fail("lvsd: --ports wants PROTO:VIP:PORT,PORT... such as tcp:198.18.1.100:80,443, not `%s'", t.arg)
		}
		c.Ports = ports
		c.Svc.Proto, c.Svc.Addr = proto, vip
	case "name":
		c.Name = t.arg
		return set(optLvsdName)
	case "interface":
		c.Interface = t.arg
		return set(optLvsdInterface)
	case "slow-start":
		if err := set(optLvsdSlowStart); err != nil {
			return err
		}
		n, ok := stringToNumber(t.arg, 0, maxTimeout)
		if !ok {
			return fail("lvsd: illegal slow-start specified (seconds, 0..%d)", maxTimeout)
		}
		c.SlowStart = time.Duration(n) * time.Second
		c.SvcSlowStart, c.svcSlowSet = c.SlowStart, true
	case "maglev-size":
		if err := set(optLvsdMaglev); err != nil {
			return err
		}
		n, ok := stringToNumber(t.arg, 1, math.MaxInt32)
		if !ok {
			return fail("lvsd: illegal maglev-size specified")
		}
		c.MaglevSize = uint32(n)
	case "lvsd":
		c.Format |= FmtLvsd
		return set(optLvsdList)
	}
	return nil
}

// check is ipvsadm's generic_opt_check and the checks process_options
// makes before it acts.
func (c *Command) check() error {
	if c.Cmd == CmdHelp || c.Cmd == CmdVersion {
		return nil
	}
	row := legal[c.Cmd]
	last, count := 0, 0
	for j := 0; j < numOpts; j++ {
		if !c.Has(j) {
			if row[j] == '+' {
				return fail("You need to supply the '%s' option for the '%s' command", optNames[j], c.Cmd)
			}
			continue
		}
		switch row[j] {
		case 'x':
			return fail("Illegal '%s' option with the '%s' command", optNames[j], c.Cmd)
		case '1':
			count++
			if count == 1 {
				last = j
				continue
			}
			return fail("The option '%s' conflicts with the '%s' option in the '%s' command", optNames[j], optNames[last], c.Cmd)
		}
	}
	if c.Cmd == CmdAdd || c.Cmd == CmdEdit {
		if c.Svc.Mark == 0 && c.Svc.Port == 0 && !c.Persistent {
			return fail("Zero port specified for non-persistent service")
		}
		if c.OnePacket && c.Svc.Mark == 0 && c.Svc.Proto != lvs.UDP {
			return fail("One-Packet Scheduling is only for UDP virtual services")
		}
		if c.Sched == "" {
			c.Sched = "wlc"
		}
		if c.Has(optLvsdPorts) && c.Svc.Mark == 0 {
			return fail("lvsd: --ports names the VIP and ports of a firewall-mark service (-f MARK)")
		}
	}
	if c.Netmask < 0 {
		c.Netmask = 32
		if c.Svc.Addr.Is6() || c.Svc.IPv6 {
			c.Netmask = 128
		}
	}
	if c.Cmd == CmdAddDest || c.Cmd == CmdEditDest {
		if c.Svc.Mark == 0 && (c.Method == lvs.TUN || c.Method == lvs.DR) {
			c.Dest = netip.AddrPortFrom(c.Dest.Addr(), c.Svc.Port)
		}
		svc6 := c.Svc.Addr.Is6() || c.Svc.IPv6
		if c.Dest.Addr().Is6() != svc6 && c.Method != lvs.TUN {
			return fail("Different address family is allowed only for tunneling servers")
		}
		if c.Options&(1<<optTunType|1<<optTunPort|1<<optTunNoCsum|1<<optTunCsum|1<<optTunRemCsum) != 0 && c.Method != lvs.TUN {
			return fail("Tunnel options conflict with forward method")
		}
		if err := c.checkTunnel(); err != nil {
			return err
		}
	}
	if c.Cmd == CmdList {
		if (c.Options&(1<<optConnection|1<<optTimeout|1<<optDaemon) != 0 && c.Options&(1<<optStats|1<<optRate|1<<optThresholds) != 0) ||
			(c.Options&(1<<optTimeout|1<<optDaemon) != 0 && c.Has(optPersistentConn)) {
			return fail("options conflicts in the list command")
		}
	}
	if c.Cmd == CmdSave {
		c.Format |= FmtRule
	}
	return nil
}

// checkSchedFlags is ipvsadm's parse_sched_flags. lvsd's schedulers take
// sh's and mh's flags; flag-1..3 are accepted by ipvsadm and refused by
// lvsd's validation as unknown.
func checkSchedFlags(sched string, flags []string) error {
	if sched == "" {
		sched = "wlc"
	}
	for _, f := range flags {
		switch f {
		case "flag-1", "flag-2", "flag-3":
		case "sh-fallback", "sh-port":
			if sched != "sh" {
				return fail("incompatible scheduler flag `%s'", f)
			}
		case "mh-fallback", "mh-port":
			if sched != "mh" {
				return fail("incompatible scheduler flag `%s'", f)
			}
		default:
			return fail("invalid scheduler flag `%s'", f)
		}
	}
	return nil
}

// stringToNumber is ipvsadm's string_to_number: a whole decimal string
// (strtol's leading spaces and sign allowed) in [lo, hi].
func stringToNumber(s string, lo, hi int64) (int64, bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || t == "" || strings.HasPrefix(t, "+-") {
		return 0, false
	}
	if n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// atoi is C's atoi: leading digits, 0 when there are none.
func atoi(s string) int {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	end := 0
	if end < len(t) && (t[end] == '-' || t[end] == '+') {
		end++
	}
	for end < len(t) && t[end] >= '0' && t[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(t[:end])
	return n
}

func parseTimeout(s string, lo, hi int64) (int, error) {
	n, ok := stringToNumber(s, lo, hi)
	if !ok {
		return 0, fail("invalid timeout value `%s' specified", s)
	}
	return int(n), nil
}

// parseMask4 reads an IPv4 persistence mask: a dotted mask, which lvsd
// needs contiguous (a prefix); ipvsadm also takes inet_aton's other forms
// and host names, which lvsd refuses.
func parseMask4(s string) (int, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	m := be32(b[:])
	bits := 0
	for bits < 32 && m&(1<<(31-bits)) != 0 {
		bits++
	}
	if bits < 32 && m<<bits != 0 {
		return 0, false
	}
	return bits, true
}

// parseService is ipvsadm's parse_service: ADDR[:PORT], [V6ADDR]:PORT, or
// a bare IPv6 address (port 0); an IPv4 host name through p.Hosts.
func (p *Parser) parseService(s string, proto lvs.Proto) (a netip.Addr, port uint16, hasPort, ok bool) {
	if s == "" || allDigits(s) {
		return a, 0, false, false
	}
	host, portStr := s, ""
	hasPort = false
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 || end+1 >= len(s) || s[end+1] != ':' {
			return a, 0, false, false
		}
		host, portStr, hasPort = s[1:end], s[end+2:], true
	}
	if v6, err := netip.ParseAddr(host); err == nil && v6.Is6() && v6.Zone() == "" {
		a = v6
	} else {
		if !hasPort {
			if i := strings.LastIndexByte(host, ':'); i >= 0 {
				host, portStr, hasPort = host[:i], host[i+1:], true
			}
		}
		v4, err := netip.ParseAddr(host)
		switch {
		case err == nil && v4.Is4():
		case err != nil && p.Hosts != nil:
			var ok bool
			if v4, ok = p.Hosts(host); !ok {
				return a, 0, false, false
			}
		default:
			return a, 0, false, false
		}
		a = v4
	}
	if hasPort {
		if n, good := stringToNumber(portStr, 0, 65535); good {
			port = uint16(n)
		} else if p.Ports != nil {
			if n, good := p.Ports(portStr, proto); good {
				port = n
			} else {
				return a, 0, false, false
			}
		} else {
			return a, 0, false, false
		}
	}
	return a, port, hasPort, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parsePorts reads --ports PROTO:VIP:PORT,PORT...
func parsePorts(s string) (lvs.Proto, netip.Addr, []uint16, bool) {
	protoStr, rest, ok := strings.Cut(s, ":")
	if !ok {
		return 0, netip.Addr{}, nil, false
	}
	proto := map[string]lvs.Proto{"tcp": lvs.TCP, "udp": lvs.UDP}[protoStr]
	i := strings.LastIndexByte(rest, ':')
	if proto == 0 || i < 0 {
		return 0, netip.Addr{}, nil, false
	}
	host := strings.TrimSuffix(strings.TrimPrefix(rest[:i], "["), "]")
	vip, err := netip.ParseAddr(host)
	if err != nil || vip.Zone() != "" {
		return 0, netip.Addr{}, nil, false
	}
	var ports []uint16
	for _, f := range strings.Split(rest[i+1:], ",") {
		n, good := stringToNumber(f, 1, 65535)
		if !good {
			return 0, netip.Addr{}, nil, false
		}
		ports = append(ports, uint16(n))
	}
	return proto, vip, ports, true
}

// CommandOf is the command a line names (its first option), whether or not
// the rest of the line is good: what a permission check needs. A line
// without a command is a listing (ipvsadm without arguments) or is
// refused, and changes nothing.
func CommandOf(args []string) Cmd {
	if len(args) == 0 {
		return CmdList
	}
	toks, _, _ := scan(args)
	if len(toks) == 0 {
		return CmdNone
	}
	switch toks[0].def.tag {
	case "A":
		return CmdAdd
	case "E":
		return CmdEdit
	case "D":
		return CmdDel
	case "a":
		return CmdAddDest
	case "e":
		return CmdEditDest
	case "d":
		return CmdDelDest
	case "C":
		return CmdFlush
	case "L":
		return CmdList
	case "Z":
		return CmdZero
	case "set":
		return CmdTimeout
	case "R":
		return CmdRestore
	case "S":
		return CmdSave
	case "start-daemon":
		return CmdStartDaemon
	case "stop-daemon":
		return CmdStopDaemon
	case "h":
		return CmdHelp
	case "v":
		return CmdVersion
	}
	return CmdNone
}

// tunOpts are the tunnel options in the order of ipvsadm's table of which
// a tunnel type takes, and that table: '+' required, 'x' refused, '1' at
// most one of them, by tunnel type (ipip, gue, gre).
var (
	tunOpts  = [4]int{optTunPort, optTunNoCsum, optTunCsum, optTunRemCsum}
	tunTable = [3][4]byte{
		lvs.TunIPIP: {'x', 'x', 'x', 'x'},
		lvs.TunGUE:  {'+', '1', '1', '1'},
		lvs.TunGRE:  {'x', '1', '1', 'x'},
	}
)

// checkTunnel checks the tunnel options of -a or -e against the tunnel
// type, as ipvsadm's tunnel_opt_check, with its messages.
func (c *Command) checkTunnel() error {
	typ := c.Tun.Type.String()
	last := -1
	for j, o := range tunOpts {
		rule := tunTable[c.Tun.Type][j]
		if !c.Has(o) {
			if rule == '+' {
				return fail("You need to supply the '%s' option for the '%s' tunnel type", optNames[o], typ)
			}
			continue
		}
		switch rule {
		case 'x':
			return fail("Illegal '%s' option with the '%s' tunnel type", optNames[o], typ)
		case '1':
			if last >= 0 {
				return fail("The option '%s' conflicts with the '%s' option in the '%s' tunnel type", optNames[o], optNames[last], typ)
			}
			last = o
		}
	}
	return nil
}
