package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const usageText = `usage: lvsd <command> [flags]

commands:
  run      -c FILE   run the director
  check    -c FILE   validate FILE and exit
  realserver -tun NAME -vip ADDR
                     on a TUN-mode real server
  version            print the version

run takes -control PATH.
`

const runHelp = `Usage of lvsd run:
  -c string
    	configuration file (default "/etc/lvsd/lvsd.toml")
  -log-format string
    	log format: text or json (default "text")
  -v	verbose
`

func TestParse(t *testing.T) {
	var names []string
	for _, c := range parseCommands(usageText) {
		names = append(names, c.Name)
	}
	if diff := cmp.Diff([]string{"run", "check", "realserver", "version"}, names); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	want := []Flag{
		{Name: "c", Arg: "string", Usage: `configuration file (default "/etc/lvsd/lvsd.toml")`},
		{Name: "log-format", Arg: "string", Usage: `log format: text or json (default "text")`},
	}
	if diff := cmp.Diff(want, parseFlags(runHelp)); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
}

func TestOutputs(t *testing.T) {
	h := &Help{Version: "v1", Usage: usageText, Commands: parseCommands(usageText)}
	h.Commands[0].Help, h.Commands[0].Flags = runHelp, parseFlags(runHelp)
	var man, bash bytes.Buffer
	writeMan(&man, h, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	writeBash(&bash, h)
	for _, want := range []string{".TH LVSD 8 \"2026-01-02\" \"lvsd v1\"", ".SS run", ".B \\-log\\-format", ".SS realserver"} {
		if !strings.Contains(man.String(), want) {
			t.Errorf("man page lacks %q:\n%s", want, man.String())
		}
	}
	for _, want := range []string{`"run check realserver version -v --version"`, `run) COMPREPLY=($(compgen -W "-c -log-format"`, "complete -F _lvsd lvsd"} {
		if !strings.Contains(bash.String(), want) {
			t.Errorf("completion lacks %q:\n%s", want, bash.String())
		}
	}
}
