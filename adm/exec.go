package adm

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/lvsd/lvsd/config"
)

// Result is what one command line printed, its exit status, and the
// change it asks for.
type Result struct {
	Stdout, Stderr string
	Code           int
	// Changed is the table the command leaves, validated; nil when the
	// command changes nothing (or was refused).
	Changed *config.Config
	// Zero lists the services whose counters -Z zeroes; ZeroAll is -Z
	// without a service.
	Zero    []ServiceID
	ZeroAll bool
}

// Env is what commands run against.
type Env struct {
	Parser  Parser
	Printer Printer
	// Program is the name in messages ("ipvsadm" or "lvsd adm").
	Program string
	// Version is printed by -v.
	Version string
	// Table builds the listing of cfg, counters included.
	Table func(cfg *config.Config) *Table
	// Conns lists the connections (for -c).
	Conns func() []Conn
}

// Run runs one command line against cfg, the running table, which it does
// not change. stdin holds the lines -R reads. Every command of a -R is
// applied to the table left by the ones before it, and the whole of it is
// refused at the first refusal (ipvsadm would keep what went before).
func (e *Env) Run(cfg *config.Config, args []string, stdin []string) Result {
	var out, errb bytes.Buffer
	res := Result{}
	// Commands apply to one private copy, in place.
	var cur *config.Config
	if cfg != nil {
		cur = cfg.Clone()
	}
	changed := false
	code := e.run(&cur, &changed, &res, args, stdin, &out, &errb, false)
	res.Stdout, res.Stderr, res.Code = out.String(), errb.String(), code
	if code == 0 && changed {
		v, err := Validate(cur)
		if err != nil {
			res.Stderr += err.(*Error).Msg + "\n"
			res.Code = err.(*Error).Code
			return res
		}
		res.Changed = v
	}
	if code != 0 {
		res.Zero, res.ZeroAll = nil, false
	}
	return res
}

func (e *Env) run(cur **config.Config, changed *bool, res *Result, args []string, stdin []string, out, errb *bytes.Buffer, restoring bool) int {
	c, err := e.Parser.Parse(args)
	if err == nil && restoring && c.Cmd == CmdRestore {
		err = &Error{TryHelp: true, Code: ExitFailed}
	}
	if err != nil {
		pe := err.(*Error)
		if pe.TryHelp {
			fmt.Fprintf(errb, "Try `%s -h' or '%s --help' for more information.\n", e.Program, e.Program)
		} else {
			fmt.Fprintf(errb, "%s\n", pe.Msg)
		}
		return pe.Code
	}
	switch c.Cmd {
	case CmdHelp:
		writeUsage(out, e.Program)
		return 0
	case CmdVersion:
		fmt.Fprintf(out, "%s %s (the command line of ipvsadm v1.31, IPVS v%s)\n", e.Program, e.Version, ipvsVersion)
		return 0
	case CmdList, CmdSave:
		var conns []Conn
		if c.WantsConns() && e.Conns != nil {
			conns = e.Conns()
		}
		if err := e.Printer.Render(out, c, e.Table(*cur), conns); err != nil {
			fmt.Fprintf(errb, "%s\n", err.(*Error).Msg)
			return err.(*Error).Code
		}
		return 0
	case CmdRestore:
		for _, line := range stdin {
			var fields []string
			for _, f := range strings.Fields(line) {
				if f != "ipvsadm" {
					fields = append(fields, f)
				}
			}
			if len(fields) == 0 {
				continue
			}
			if code := e.run(cur, changed, res, fields, nil, out, errb, true); code != 0 {
				return code
			}
		}
		return 0
	}
	if err := applyTo(*cur, c); err != nil {
		fmt.Fprintf(errb, "%s\n", err.(*Error).Msg)
		return err.(*Error).Code
	}
	if c.Cmd == CmdZero {
		if c.Has(optService) {
			res.Zero = append(res.Zero, c.Svc)
		} else {
			res.ZeroAll = true
		}
		return 0
	}
	*changed = true
	return 0
}

func writeUsage(w *bytes.Buffer, prog string) {
	fmt.Fprintf(w, `Usage:
  %[1]s -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [lvsd options]
  %[1]s -D virtual-service
  %[1]s -C
  %[1]s -R
  %[1]s -S [-n]
  %[1]s -a|e virtual-service -r server-address [options]
  %[1]s -d virtual-service -r server-address
  %[1]s -L|l [virtual-service] [options]
  %[1]s -Z [virtual-service]
  %[1]s --set tcp tcpfin udp
  %[1]s -h

The commands and options of ipvsadm 1.31 (see ipvsadm(8)); virtual-service
is -t|-u host[:port] or -f fwmark. Differences and lvsd's own options
(--ports PROTO:VIP:PORT,... with -f, --name, --interface, --slow-start,
--maglev-size, and -L --lvsd) are in lvsd's docs/cli.md.
`, prog)
}
