package adm

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/sched"
)

// refuse is a command the table refuses: ipvsadm prints the kernel's
// reason (ipvs_strerror) and exits with -1.
func refuse(msg string) *Error { return &Error{Msg: msg, Code: ExitFailed} }

// findService returns the index of the service id names in cfg, or -1.
// It looks from the end: the lines of -R (and of most scripts) add a
// service and then its real servers, so the service a line names is most
// often the last one; a search from the start made -R of n services
// quadratic. A table holds a service once, so the direction does not
// change the answer.
func findService(cfg *config.Config, id ServiceID) int {
	for i := len(cfg.Services) - 1; i >= 0; i-- {
		s := &cfg.Services[i]
		if id.Mark != 0 {
			if s.Mark == id.Mark && s.Addr.Is6() == id.IPv6 {
				return i
			}
			continue
		}
		if s.Mark == 0 && s.Proto == id.Proto && s.Addr == id.Addr && s.Port == id.Port {
			return i
		}
	}
	return -1
}

func findReal(s *config.Service, d netip.AddrPort) int {
	for i := range s.Reals {
		if s.Reals[i].Addr == d.Addr() && s.Reals[i].Port == d.Port() {
			return i
		}
	}
	return -1
}

// Apply returns a copy of cfg changed as the command c changes IPVS's
// table, or an *Error with ipvsadm's message: "Service already exists",
// "No such destination"... The copy is then validated as a file is
// (Validate) by the caller. Listing commands and -Z change nothing and
// return cfg's copy.
func Apply(cfg *config.Config, c *Command) (*config.Config, error) {
	out := cfg.Clone() // Apply never changes its input
	if err := applyTo(out, c); err != nil {
		return nil, err
	}
	return out, nil
}

// applyTo is Apply on out itself; on error out may be half changed.
func applyTo(out *config.Config, c *Command) error {
	si := -1
	if c.Has(optService) {
		si = findService(out, c.Svc)
	}
	if c.Has(optPE) {
		// lvsd has no persistence engine (IPVS's sip).
		return refuse("Scheduler or persistence engine not found")
	}
	switch c.Cmd {
	case CmdAdd:
		if si >= 0 {
			return refuse("Service already exists")
		}
		if !sched.Known(c.Sched) {
			return refuse("Scheduler or persistence engine not found")
		}
		s := config.Service{Proto: c.Svc.Proto, Addr: c.Svc.Addr, Port: c.Svc.Port}
		if c.Svc.Mark != 0 {
			if c.Ports == nil {
				return fail("lvsd: -f %d: a firewall-mark service in lvsd is a service over a list of ports; give its VIP and ports with --ports PROTO:VIP:PORT,PORT...", c.Svc.Mark)
			}
			for i := range out.Services {
				if out.Services[i].Mark == c.Svc.Mark {
					return refuse("Service already exists")
				}
			}
			s.Mark, s.Ports, s.Port = c.Svc.Mark, c.Ports, c.Ports[0]
		}
		switch {
		case c.Interface != "":
			s.Interface = c.Interface
		case len(out.Interfaces) == 1:
			s.Interface = out.Interfaces[0].Name
		default:
			return fail("lvsd: --interface NAME is needed: this director has %d interfaces", len(out.Interfaces))
		}
		setService(&s, c)
		out.Services = append(out.Services, s)
	case CmdEdit:
		if si < 0 {
			return refuse("No such service")
		}
		if !sched.Known(c.Sched) {
			return refuse("Scheduler or persistence engine not found")
		}
		s := &out.Services[si]
		if c.Ports != nil {
			s.Ports, s.Port, s.Proto, s.Addr = c.Ports, c.Ports[0], c.Svc.Proto, c.Svc.Addr
		}
		if c.Interface != "" {
			s.Interface = c.Interface
		}
		setService(s, c)
	case CmdDel:
		if si < 0 {
			return refuse("No such service")
		}
		out.Services = slices.Delete(out.Services, si, si+1)
	case CmdFlush:
		out.Services = nil
	case CmdZero:
		if c.Has(optService) && si < 0 {
			return refuse("No such service")
		}
	case CmdAddDest, CmdEditDest, CmdDelDest:
		if si < 0 {
			return refuse("Service not defined")
		}
		s := &out.Services[si]
		ri := findReal(s, c.Dest)
		switch c.Cmd {
		case CmdAddDest:
			if ri >= 0 {
				return refuse("Destination already exists")
			}
			if c.LThresh > c.UThresh {
				return refuse("Numerical result out of range")
			}
			// A real server added at run time gets its service's check,
			// as the file's real servers without a check of their own
			// (keepalived checks whatever its virtual server lists).
			r := config.Real{Addr: c.Dest.Addr(), Port: c.Dest.Port(), SlowStart: s.SlowStart, Check: s.Health.Check.Clone()}
			setReal(&r, c)
			s.Reals = append(s.Reals, r)
		case CmdEditDest:
			if ri < 0 {
				return refuse("No such destination")
			}
			if c.LThresh > c.UThresh {
				return refuse("Numerical result out of range")
			}
			setReal(&s.Reals[ri], c)
		case CmdDelDest:
			if ri < 0 {
				return refuse("No such destination")
			}
			s.Reals = slices.Delete(s.Reals, ri, ri+1)
		}
	case CmdTimeout:
		// As the kernel: a zero keeps the current value.
		for _, t := range []struct {
			v int
			d *time.Duration
		}{{c.TCP, &out.Timeouts.TCP}, {c.TCPFin, &out.Timeouts.TCPFin}, {c.UDP, &out.Timeouts.UDP}} {
			if t.v != 0 {
				*t.d = time.Duration(t.v) * time.Second
			}
		}
	case CmdStartDaemon, CmdStopDaemon:
		return refuse("lvsd: connection synchronisation (the sync daemon) is not supported")
	}
	return nil
}

// setService sets what -A and -E set: as the kernel's ip_vs_edit_service,
// every IPVS parameter takes the command's value (a -E without -p makes
// the service non-persistent); lvsd's own keep theirs unless given.
func setService(s *config.Service, c *Command) {
	if s.Scheduler != c.Sched && c.Sched != "maglev" {
		s.MaglevTableSize = 0
	}
	s.Scheduler = c.Sched
	s.SchedFlags = nil
	for _, f := range c.SchedFlags {
		if !slices.Contains(s.SchedFlags, f) {
			s.SchedFlags = append(s.SchedFlags, f)
		}
	}
	s.Persistence = config.Persistence{}
	if c.Persistent {
		s.Persistence = config.Persistence{Timeout: time.Duration(c.Timeout) * time.Second, Netmask: c.Netmask}
	}
	s.OnePacket = c.OnePacket
	if c.Has(optLvsdName) {
		s.Name = c.Name
	}
	if c.Has(optLvsdSlowStart) {
		for i := range s.Reals {
			if s.Reals[i].SlowStart == s.SlowStart {
				s.Reals[i].SlowStart = c.SvcSlowStart
			}
		}
		s.SlowStart = c.SvcSlowStart
	}
	if c.Has(optLvsdMaglev) {
		s.MaglevTableSize = c.MaglevSize
	}
}

// setReal sets what -a and -e set: weight, method and thresholds take the
// command's values (ipvsadm's defaults when not given: -w 1, -g, no
// thresholds), as the kernel's ip_vs_edit_dest.
func setReal(r *config.Real, c *Command) {
	r.Weight, r.Method = c.Weight, c.Method
	r.Tunnel = lvs.Tunnel{}
	if c.Method == lvs.TUN {
		r.Tunnel = c.Tun // ipvsadm's defaults: ipip, no port, nocsum
	}
	r.UpperThreshold, r.LowerThreshold = c.UThresh, c.LThresh
	if c.Has(optLvsdSlowStart) {
		r.SlowStart = c.SlowStart
	}
}

// Validate checks cfg as lvsd checks its file (config.Parse of its TOML),
// and words a problem by the command-line arguments that name it, with the
// file's message: "-t 192.0.2.1:80 -r 192.0.2.2:80: -w: ...".
func Validate(cfg *config.Config) (*config.Config, error) {
	file := cfg.File
	got, err := config.Parse(file, config.Format(cfg))
	if err == nil {
		return got, nil
	}
	var list config.ErrorList
	if !errors.As(err, &list) {
		return nil, refuse("lvsd: " + err.Error())
	}
	var msgs []string
	for _, e := range list {
		msgs = append(msgs, describe(cfg, e.Key)+e.Msg)
	}
	return nil, refuse("lvsd: " + strings.Join(msgs, "\nlvsd: "))
}

var keyPath = regexp.MustCompile(`^virtual_server\[(\d+)\](?:\.real_server\[(\d+)\])?(?:\.([a-z_]+))?`)

// argOf maps the file's keys to the options that set them.
var argOf = map[string]string{
	"protocol": "-t/-u", "address": "", "port": "", "ports": "--ports", "fwmark": "-f", "scheduler": "-s",
	"scheduler_flags": "-b", "persistence_timeout": "-p", "persistence_netmask": "-M", "one_packet": "-o",
	"slow_start": "--slow-start", "maglev_table_size": "--maglev-size", "interface": "--interface", "name": "--name",
	"method": "-g/-m/-i", "weight": "-w", "upper_threshold": "-x", "lower_threshold": "-y",
}

// describe names the arguments of a key: the service (and real server)
// and the option.
func describe(cfg *config.Config, key string) string {
	if strings.HasPrefix(key, "timeouts.") {
		return "--set: "
	}
	m := keyPath.FindStringSubmatch(key)
	if m == nil {
		if key == "" {
			return ""
		}
		return key + ": "
	}
	si, _ := strconv.Atoi(m[1])
	if si >= len(cfg.Services) {
		return key + ": "
	}
	s := &cfg.Services[si]
	out := serviceArg(s)
	if m[2] != "" {
		ri, _ := strconv.Atoi(m[2])
		if ri < len(s.Reals) {
			out += " -r " + addrPortArg(s.Reals[ri].Addr, s.Reals[ri].Port)
		}
	}
	if a := argOf[m[3]]; a != "" {
		out += ": " + a
	}
	return out + ": "
}

func serviceArg(s *config.Service) string {
	if s.Mark != 0 {
		if s.Addr.Is6() {
			return fmt.Sprintf("-f %d -6", s.Mark)
		}
		return fmt.Sprintf("-f %d", s.Mark)
	}
	opt := "-t"
	if s.Proto == lvs.UDP {
		opt = "-u"
	}
	return opt + " " + addrPortArg(s.Addr, s.Port)
}

func addrPortArg(a netip.Addr, port uint16) string {
	if a.Is6() {
		return fmt.Sprintf("[%s]:%d", a, port)
	}
	return fmt.Sprintf("%s:%d", a, port)
}
