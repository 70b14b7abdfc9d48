// Command lvsd is a userspace Linux Virtual Server.
//
//	lvsd run   -c lvsd.toml   attach to the configured devices and balance
//	lvsd check lvsd.toml      validate a configuration and exit
//	lvsd list                 show virtual services as ipvsadm -Ln does
//	lvsd adm ARGS...          ipvsadm's command line against a running lvsd
//	                          (lvsd also acts as ipvsadm when run under that name)
//	lvsd config dump|discard  print the running table as TOML; drop runtime changes
//	lvsd import keepalived F  turn keepalived.conf's virtual servers into TOML
//	lvsd realserver -tun T -vip V   on a TUN-mode real server without ipip:
//	                          decapsulate IPIP into a local TUN device
//
// main only dispatches: each subcommand lives in a file of its own, with its
// own flags.
//
// Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration;
// lvsd adm and ipvsadm exit as ipvsadm does.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

const usage = `usage: lvsd <command> [flags]

commands:
  run      [-c FILE] [-control PATH] [-control-group GROUP] [-state PATH] [-log-level L]
                     run the director (SIGHUP reloads FILE, SIGINT/SIGTERM stop)
  check    [FILE]    validate FILE (default /etc/lvsd/lvsd.toml) and exit
  list     [-stats|-rate|-health] [-json] [-control PATH]
                     the virtual services of a running lvsd, as ipvsadm -Ln [--stats|--rate];
                     -health: each real server's health check (lvsd's own)
  counters [-control PATH]   a running lvsd's fast-path counters, drops by reason
  adm      [--control PATH] IPVSADM-ARGS...
                     ipvsadm's command line against a running lvsd (lvsd adm -h);
                     lvsd invoked as ipvsadm (ln -s lvsd ipvsadm) does the same
  config   dump|discard [-control PATH]
                     print the running table as TOML lvsd check accepts; or drop
                     the runtime changes so that the file runs as it is
  import   keepalived FILE   keepalived.conf's virtual servers as lvsd TOML
  realserver -tun NAME -vip ADDR[,...] [-director ADDR[,...]]
                     on a TUN-mode real server whose kernel has no ipip module:
                     decapsulate the director's IPIP into a local TUN device
  trace    [-n N] [FILTER]   explain what lvsd does with the next N packets matching FILTER
           -packet 'tcp SRC:PORT > DST:PORT [flags F]'
                     or a described packet, in a dry run (nothing sent or changed)
  capture  -w FILE [FILTER]   the frames lvsd reads and writes, into a pcapng file
  version            print the version (also --version, -v)

The control socket is /run/lvsd/lvsd.sock, or $XDG_RUNTIME_DIR/lvsd.sock when
/run/lvsd is not writable (an unprivileged lvsd); clients look for the first
that exists. -control PATH (or $LVSD_CONTROL for clients) chooses another.
`

func main() {
	if filepath.Base(os.Args[0]) == "ipvsadm" {
		os.Exit(runAdm(os.Args[1:], "ipvsadm"))
	}
	os.Exit(run(os.Args[1:]))
}

// commands maps each subcommand to its function; each parses its own
// flags.
var commands = map[string]func(args []string) int{
	"run":        runDaemon,
	"check":      runCheck,
	"list":       runList,
	"counters":   runCounters,
	"adm":        func(args []string) int { return runAdm(args, "lvsd adm") },
	"config":     runConfig,
	"import":     runImport,
	"realserver": runRealserver,
	"trace":      runTrace,
	"capture":    runCapture,
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-version", "-v":
		fmt.Println("lvsd", buildVersion())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Print(usage)
		return 0
	}
	if f := commands[cmd]; f != nil {
		return f(args)
	}
	fmt.Fprintf(os.Stderr, "lvsd: unknown command %q\n%s", cmd, usage)
	return 2
}
