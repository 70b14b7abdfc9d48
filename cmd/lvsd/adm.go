package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lvsd/lvsd/adm"
	"github.com/lvsd/lvsd/control"
)

// runAdm is `lvsd adm ARGS` and lvsd run as ipvsadm: the command line is
// checked here (so that a bad one is refused without a daemon, with
// ipvsadm's message and status) and run by the lvsd at the control socket.
// lvsd's own options come first: --control PATH.
func runAdm(args []string, program string) int {
	path := ""
	for len(args) > 0 {
		switch a := args[0]; {
		case a == "--control" || a == "-control":
			if len(args) < 2 {
				fmt.Fprintf(os.Stderr, "%s: --control needs a path\n", program)
				return adm.ExitBadArg
			}
			path, args = args[1], args[2:]
			continue
		case strings.HasPrefix(a, "--control="):
			path, args = strings.TrimPrefix(a, "--control="), args[1:]
			continue
		}
		break
	}
	c, err := newParser().Parse(args)
	if err != nil {
		e := err.(*adm.Error)
		if e.TryHelp {
			fmt.Fprintf(os.Stderr, "Try `%s -h' or '%s --help' for more information.\n", program, program)
		} else {
			fmt.Fprintln(os.Stderr, e.Msg)
		}
		return e.Code
	}
	switch c.Cmd {
	case adm.CmdHelp, adm.CmdVersion:
		env := adm.Env{Program: program, Version: version}
		res := env.Run(nil, args, nil)
		fmt.Print(res.Stdout)
		return res.Code
	}
	return admAt(controlFlag(path), args, program)
}

// admAt runs args at the lvsd listening on path and prints what it says.
func admAt(path string, args []string, program string) int {
	c, _ := newParser().Parse(args)
	var stdin []string
	if c != nil && c.Cmd == adm.CmdRestore {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			stdin = append(stdin, sc.Text())
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: reading the rules: %v\n", program, err)
			return adm.ExitBadArg
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := control.Adm(ctx, path, control.AdmRequest{Program: program, Args: args, Stdin: stdin})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: no lvsd answers: %v\n", program, err)
		if errors.Is(err, os.ErrPermission) {
			fmt.Fprintf(os.Stderr, "%s: the control socket is for root and its group (lvsd run -control-group)\n", program)
		}
		return adm.ExitBadArg
	}
	os.Stdout.WriteString(res.Stdout)
	os.Stderr.WriteString(res.Stderr)
	if c != nil && (c.Cmd == adm.CmdList || c.Cmd == adm.CmdSave) && res.Code == 0 {
		if st, err := getStatus(path); err == nil {
			warnStale(st)
		}
	}
	return res.Code
}

// systemNames resolves ports and addresses from /etc/services and
// /etc/hosts, as ipvsadm does without -n (never through DNS).
func systemNames() *adm.FileNames { return adm.LoadNames("/etc/services", "/etc/hosts") }

func newParser() *adm.Parser {
	n := systemNames()
	return &adm.Parser{Ports: n.Port, Hosts: n.Addr}
}
