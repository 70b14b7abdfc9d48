package keepalived

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

func convert(t *testing.T, file string, o Options) (*config.Config, []string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out, notes, err := Convert(file, data, o)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("imported.toml", out)
	if err != nil {
		t.Fatalf("the import does not pass lvsd check: %v\n%s", err, out)
	}
	var lines []string
	for _, n := range notes {
		lines = append(lines, n.String())
	}
	return cfg, lines
}

var lab = Options{Interface: "lvttap0", Addresses: []string{"198.18.1.1/24", "198.18.2.1/24"}}

func TestConvertNAT(t *testing.T) {
	cfg, notes := convert(t, "testdata/nat.conf", lab)
	if len(cfg.Services) != 2 {
		t.Fatalf("services: %+v", cfg.Services)
	}
	web := cfg.Services[0]
	if web.Scheduler != "wrr" || web.Port != 80 || web.Persistence.Timeout.Seconds() != 50 || web.Persistence.Netmask != 24 || len(web.Reals) != 2 {
		t.Errorf("web: %+v", web)
	}
	r := web.Reals[0]
	if r.Method != lvs.NAT || r.Port != 8080 || r.Weight != 3 || r.UpperThreshold != 100 || r.LowerThreshold != 50 {
		t.Errorf("real: %+v", r)
	}
	if c := checkSummary(r.Check); c != "http interval=6s timeout=3s fall=4 retry=3s warmup=6s path=/ host= status=[{200 200}] digest= regexp=" {
		t.Errorf("HTTP_GET: %s", c)
	}
	if c := checkSummary(web.Reals[1].Check); c != "tcp interval=6s timeout=3s fall=2 retry=1s warmup=6s port=8080 inhibit" {
		t.Errorf("TCP_CHECK: %s", c)
	}
	if web.Health.SorryServer.String() != "198.18.2.99:8080" {
		t.Errorf("sorry_server: %v", web.Health.SorryServer)
	}
	dns := cfg.Services[1]
	if dns.Proto != lvs.UDP || !dns.OnePacket || dns.Reals[0].Method != lvs.DR || dns.Reals[0].Weight != 1 {
		t.Errorf("dns: %+v", dns)
	}
	want := []string{
		"3: global_defs: no equivalent in lvsd (it balances; it holds no VRRP address, routes or global settings of keepalived)",
		"10: vrrp_instance: no equivalent in lvsd (it balances; it holds no VRRP address, routes or global settings of keepalived)",
	}
	if diff := cmp.Diff(want, notes); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

func TestConvertShapes(t *testing.T) {
	cfg, notes := convert(t, "testdata/shapes.conf", lab)
	var got []string
	for _, s := range cfg.Services {
		got = append(got, s.Addr.String()+" "+s.Scheduler+" "+strings.Join(s.SchedFlags, ",")+" "+s.Reals[0].Method.String())
	}
	want := []string{"198.18.1.101 sh sh-port,sh-fallback dr", "198.18.1.102 sh sh-port,sh-fallback dr", "198.18.1.103 wlc  nat"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	wantNotes := []string{
		"3: include: not followed: import the included file on its own",
		"8: 198.18.1.110-120: group entry 198.18.1.110-120 80: only ADDRESS PORT entries are imported",
		"22: virtual_server: fwmark 7: lvsd has no firewall marks; write the service over its ports (ports = [...]), which lvsd adm shows as -f",
	}
	if diff := cmp.Diff(wantNotes, notes); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

func TestConvertWithoutInterface(t *testing.T) {
	data, _ := os.ReadFile("testdata/nat.conf")
	out, _, err := Convert("nat.conf", data, Options{})
	if err != nil || !strings.Contains(string(out), "# [[interface]]") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestConvertErrors(t *testing.T) {
	for _, bad := range []string{"virtual_server 1.2.3.4 80 {", "}", "a \"unclosed\n", strings.Repeat("a {", 100)} {
		if _, _, err := Convert("bad.conf", []byte(bad), lab); err == nil {
			t.Errorf("Convert(%q) accepted", bad)
		}
	}
}

// FuzzConvert: no input panics the importer or makes it loop, and every
// input is either refused with an error that names the file, or imported
// into a configuration that lvsd check accepts (what lvsd would refuse is
// reported and left out, never written; only an exec check's program that
// is not on this host is written and reported, for the director to have).
func FuzzConvert(f *testing.F) {
	for _, p := range []string{"testdata/nat.conf", "testdata/shapes.conf", "testdata/tcp.conf", "testdata/http.conf", "testdata/udp.conf", "testdata/misc.conf"} {
		data, _ := os.ReadFile(p)
		f.Add(data)
	}
	// What the converter does not foresee and lvsd check refuses: a VIP that
	// is a DIP, a real server that is the VIP, a duplicate service, a sorry
	// server without a port.
	f.Add([]byte("virtual_server 198.18.1.1 80 {\n real_server 198.18.2.11 80 {\n }\n}\nvirtual_server 198.18.1.100 80 {\n sorry_server 198.18.2.99\n real_server 198.18.1.100 80 {\n }\n}\nvirtual_server 198.18.1.100 80 {\n}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := Convert("fuzz.conf", data, lab)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.conf:") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		if _, err := config.Parse("imported.toml", out); err != nil {
			var list config.ErrorList
			if errors.As(err, &list) {
				list = slices.DeleteFunc(list, CommandNotHere)
			}
			if len(list) > 0 {
				t.Fatalf("the import does not pass lvsd check: %v\n--- input:\n%s\n--- output:\n%s", err, data, out)
			}
		}
	})
}

// checkSummary writes the keys of a parsed check that the importer sets.
func checkSummary(c *config.Check) string {
	if c == nil {
		return "none"
	}
	s := fmt.Sprintf("%s interval=%s timeout=%s fall=%d retry=%s warmup=%s", c.Type, c.Interval, c.Timeout, c.Fall, c.DelayBeforeRetry, c.Warmup)
	if c.Addr.IsValid() {
		s += " address=" + c.Addr.String()
	}
	if c.Port != 0 {
		s += fmt.Sprintf(" port=%d", c.Port)
	}
	if c.Alpha {
		s += " alpha"
	}
	if c.InhibitOnFailure {
		s += " inhibit"
	}
	if c.NotifyUp != "" || c.NotifyDown != "" {
		s += fmt.Sprintf(" notify=%q,%q", c.NotifyUp, c.NotifyDown)
	}
	switch c.Type {
	case "http", "https":
		s += fmt.Sprintf(" path=%s host=%s status=%v digest=%s regexp=%s", c.Path, c.Host, c.Status, c.Digest, c.Regexp)
	case "udp":
		s += fmt.Sprintf(" payload=%x expect=%x require_reply=%t", c.Payload, c.Expect, c.RequireReply)
	case "dns":
		s += fmt.Sprintf(" query=%s,%s", c.QueryType, c.QueryName)
	case "exec":
		s += fmt.Sprintf(" command=%q dynamic=%t", c.Command, c.Dynamic)
	}
	return s
}

// TestConvertCheckers: each checker of keepalived.conf(5), with the keys
// around it, becomes the check table of its real server, and what lvsd has
// no key for is reported by line.
func TestConvertCheckers(t *testing.T) {
	for _, tc := range []struct {
		file   string
		health []string // per virtual server: sorry_server quorum hysteresis quorum_up quorum_down
		checks []string // per real server
		notes  []string
	}{{
		file:   "tcp.conf",
		health: []string{`invalid AddrPort 3 1 "/bin/echo up" "/bin/echo down"`},
		checks: []string{
			`tcp interval=10s timeout=2.5s fall=3 retry=500ms warmup=10s address=198.18.1.21 port=8443 alpha notify="/bin/echo rs up","/bin/echo rs down"`,
			`tcp interval=10s timeout=3s fall=3 retry=1s warmup=10ms alpha`,
		},
		notes: []string{
			"14: omega: no equivalent in lvsd: quorum_down runs whenever the quorum is lost",
			"25: bindto: no equivalent in lvsd's tcp check",
			"33: PING_CHECK: lvsd has one check per real server: only the checker of line 30 is imported",
		},
	}, {
		file:   "http.conf",
		health: []string{`198.18.2.99:8080 0 0 "" ""`},
		checks: []string{
			`http interval=3s timeout=3s fall=4 retry=2s warmup=3s inhibit path=/health host=www.example.com status=[{200 200} {300 399}] digest=9b3a0c85a887a256d6939da88aabd8cd regexp=`,
			`https interval=3s timeout=3s fall=2 retry=1s warmup=3s port=8443 path=/ host=secure.example.com status=[] digest= regexp=^OK`,
		},
		notes: []string{
			"19: url: lvsd's check has one path: only the url of line 14 is imported",
			"32: regex_no_match: no equivalent in lvsd's http check",
		},
	}, {
		file:   "udp.conf",
		health: []string{`invalid AddrPort 0 0 "" ""`},
		checks: []string{
			`dns interval=5s timeout=3s fall=2 retry=1s warmup=5s query=A,www.example.com`,
			`udp interval=5s timeout=3s fall=2 retry=1s warmup=5s payload=0a0b0c0d expect=0a0b require_reply=true`,
		},
		notes: []string{"19: min_reply_length: no equivalent in lvsd's udp check"},
	}, {
		file:   "misc.conf",
		health: []string{`invalid AddrPort 0 0 "" ""`},
		checks: []string{
			`exec interval=5s timeout=5s fall=2 retry=1s warmup=5s command="/bin/sh -c 'exit 0'" dynamic=true`,
			`ping interval=1s timeout=3s fall=1 retry=1s warmup=1s inhibit`,
			`none`,
		},
		notes: []string{
			"12: connect_port: no equivalent in lvsd's exec check",
			"13: user: no equivalent in lvsd's exec check",
			"25: SMTP_CHECK: checker not imported: lvsd has no equivalent (docs/health.md lists its check types)",
			"24: alpha: this real server has no checker lvsd imports: nothing to apply it to",
		},
	}} {
		t.Run(tc.file, func(t *testing.T) {
			cfg, notes := convert(t, "testdata/"+tc.file, lab)
			var health, checks []string
			for _, s := range cfg.Services {
				h := s.Health
				health = append(health, fmt.Sprintf("%s %d %d %q %q", h.SorryServer, h.Quorum, h.Hysteresis, h.QuorumUp, h.QuorumDown))
				for _, r := range s.Reals {
					checks = append(checks, checkSummary(r.Check))
				}
			}
			if diff := cmp.Diff(tc.health, health); diff != "" {
				t.Errorf("virtual servers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.checks, checks); diff != "" {
				t.Errorf("checks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.notes, notes); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConvertCheckerValues: values lvsd check would refuse are reported
// instead of written, so that the output still passes it.
func TestConvertCheckerValues(t *testing.T) {
	conf := `virtual_server 198.18.1.100 80 {
    lb_kind NAT
    delay_loop 7200
    real_server 198.18.2.11 80 {
        HTTP_GET {
            url {
              path health
              status_code 200 600 abc
              digest xyz
              regex "a(b"
            }
            retry 500
            connect_timeout 0.001
        }
    }
    real_server 198.18.2.12 80 {
        MISC_CHECK {
            misc_timeout 3
        }
        UDP_CHECK {
            payload zz
        }
    }
}
`
	out, notes, err := Convert("bad.conf", []byte(conf), lab)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse("imported.toml", out); err != nil {
		t.Fatalf("the import does not pass lvsd check: %v\n%s", err, out)
	}
	var got []string
	for _, n := range notes {
		got = append(got, n.String())
	}
	want := []string{
		"3: delay_loop: 7200: not a number of seconds lvsd takes for interval (10ms..1h0m0s)",
		"7: path: health: lvsd's path starts with /",
		"8: status_code: 600: not a status code or a range of them",
		"8: status_code: abc: not a status code or a range of them",
		"9: digest: xyz: not an MD5 digest in hex",
		`10: regex: "a(b": not a regular expression of Go's syntax`,
		"12: retry: 500: not a number of retries lvsd takes (fall = retry + 1, 1..100)",
		"13: connect_timeout: 0.001: not a number of seconds lvsd takes for timeout (10ms..1h0m0s)",
		"17: MISC_CHECK: MISC_CHECK without misc_path: not imported",
		"21: payload: zz: not hex",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

// TestConvertMissingCommand: a misc_path absent from this host is written
// (lvsd check names it) and reported.
func TestConvertMissingCommand(t *testing.T) {
	conf := "virtual_server 198.18.1.100 80 {\n real_server 198.18.2.11 80 {\n  MISC_CHECK {\n   misc_path \"/nonexistent/lvt-check 1\"\n  }\n }\n}\n"
	out, notes, err := Convert("m.conf", []byte(conf), lab)
	if err != nil || !strings.Contains(string(out), `command = "/nonexistent/lvt-check 1"`) {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(notes) != 1 || notes[0].String() != "4: misc_path: /nonexistent/lvt-check is not on this host: lvsd check refuses the command until it is" {
		t.Errorf("report: %v", notes)
	}
}

// TestConvertHysteresis: a hysteresis lvsd check refuses (not below the
// quorum, whose default is 1), and a sorry server of the other family, are
// reported and left out.
func TestConvertHysteresis(t *testing.T) {
	for conf, want := range map[string]string{
		"virtual_server 198.18.1.100 80 {\n quorum 2\n hysteresis 2\n}\n":     "3: hysteresis: 2 is not below the quorum 2: left out",
		"virtual_server 198.18.1.100 80 {\n hysteresis 1\n}\n":                "2: hysteresis: 1 is not below the quorum 1: left out",
		"virtual_server 198.18.1.100 80 {\n quorum 99999999999\n}\n":          "2: quorum: 99999999999: not a number",
		"virtual_server 198.18.1.100 80 {\n sorry_server 2001:db8::9 80\n}\n": "2: sorry_server: 2001:db8::9 is not of the family of the virtual address 198.18.1.100: left out",
	} {
		out, notes, err := Convert("q.conf", []byte(conf), lab)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse("imported.toml", out); err != nil {
			t.Errorf("the import does not pass lvsd check: %v\n%s", err, out)
		}
		if len(notes) != 1 || notes[0].String() != want {
			t.Errorf("%q: report %v, want %q", conf, notes, want)
		}
	}
}

// TestConvertSorryServerPort: a sorry_server with port 0, or without a
// port, gets its virtual server's port (keepalived sets it so for a DR or
// TUN sorry server; IPVS forwards a NAT one of port 0 to the virtual port),
// per address of a group; a virtual server of port 0 has none to give, and
// the sorry server is left out with a note.
func TestConvertSorryServerPort(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       []string // sorry_server of each service
		note       string
	}{
		{name: "port 0", conf: "virtual_server 198.18.1.100 80 {\n sorry_server 198.18.2.99 0\n real_server 198.18.2.11 80 {\n }\n}\n",
			want: []string{"198.18.2.99:80"}},
		{name: "no port, DR", conf: "virtual_server 198.18.1.100 443 {\n lb_kind DR\n sorry_server 198.18.1.99\n real_server 198.18.1.11 443 {\n }\n}\n",
			want: []string{"198.18.1.99:443"}},
		{name: "a port of its own", conf: "virtual_server 198.18.1.100 80 {\n sorry_server 198.18.2.99 8080\n}\n",
			want: []string{"198.18.2.99:8080"}},
		{name: "group", conf: "virtual_server_group web {\n 198.18.1.100 80\n 198.18.1.100 8080\n}\nvirtual_server group web {\n sorry_server 198.18.2.99 0\n}\n",
			want: []string{"198.18.2.99:80", "198.18.2.99:8080"}},
		{name: "port-zero virtual server", conf: "virtual_server 198.18.1.100 0 {\n persistence_timeout 60\n sorry_server 198.18.2.99 0\n}\n",
			want: []string{"invalid AddrPort"},
			note: "3: sorry_server: 198.18.2.99 has no port, and the virtual server 198.18.1.100:0 has none to give it (lvsd forwards to a sorry server by NAT, to one port): left out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, notes, err := Convert("s.conf", []byte(tc.conf), lab)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse("imported.toml", out)
			if err != nil {
				t.Fatalf("the import does not pass lvsd check: %v\n%s", err, out)
			}
			var got []string
			for _, s := range cfg.Services {
				got = append(got, s.Health.SorryServer.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("sorry servers (-want +got):\n%s", diff)
			}
			var lines []string
			for _, n := range notes {
				lines = append(lines, n.String())
			}
			if tc.note == "" && len(lines) > 0 || tc.note != "" && (len(lines) != 1 || lines[0] != tc.note) {
				t.Errorf("report %q, want %q", lines, tc.note)
			}
		})
	}
}

// TestConvertLeavesOutWhatLvsdRefuses: what the converter does not foresee
// and lvsd check refuses is left out whole (the virtual server, or only the
// real server the message is about), with lvsd check's message in the
// report, and the rest passes lvsd check.
func TestConvertLeavesOutWhatLvsdRefuses(t *testing.T) {
	conf := `virtual_server 198.18.1.1 80 {
 real_server 198.18.2.11 80 {
 }
}
virtual_server 198.18.1.100 80 {
 real_server 198.18.2.11 80 {
 }
 real_server 198.18.1.100 80 {
 }
}
virtual_server 198.18.1.100 80 {
 real_server 198.18.2.12 80 {
 }
}
`
	out, notes, err := Convert("r.conf", []byte(conf), lab)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("imported.toml", out)
	if err != nil {
		t.Fatalf("the import does not pass lvsd check: %v\n%s", err, out)
	}
	if len(cfg.Services) != 1 || len(cfg.Services[0].Reals) != 1 || cfg.Services[0].Reals[0].Addr.String() != "198.18.2.11" {
		t.Errorf("services: %+v", cfg.Services)
	}
	var lines []string
	for _, n := range notes {
		lines = append(lines, n.String())
	}
	want := []string{
		"1: virtual_server: lvsd check refuses it (address: 198.18.1.1 is a director address",
		"8: real_server: lvsd check refuses it (",
		"11: virtual_server: lvsd check refuses it (",
	}
	if len(lines) != len(want) {
		t.Fatalf("report %q, want %d lines", lines, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) || !strings.HasSuffix(lines[i], "): left out") {
			t.Errorf("report line %d: %q, want %q...: left out", i, lines[i], w)
		}
	}
	t.Logf("report:\n%s", strings.Join(lines, "\n"))
	// Without an interface the output is a fragment to complete: nothing
	// is checked or left out.
	if _, notes, err := Convert("r.conf", []byte(conf), Options{}); err != nil || len(notes) != 0 {
		t.Errorf("without an interface: %v, %v", err, notes)
	}
}

// TestConvertServiceCheck: when every real server of a virtual server has
// the same checker, it becomes the virtual server's check (the check of the
// real servers added later, by lvsd adm -a or a reload), and the real
// servers have none of their own; when they differ, or one has none, each
// keeps its own and the service has none.
func TestConvertServiceCheck(t *testing.T) {
	rs := func(addr, checker string) string {
		return "    real_server " + addr + " 8080 {\n        weight 1\n" + checker + "    }\n"
	}
	httpGet := "        HTTP_GET {\n            url {\n              path /health\n            }\n            connect_timeout 2\n        }\n"
	tcp := "        TCP_CHECK {\n            connect_timeout 2\n        }\n"
	vs := func(reals ...string) string {
		return "virtual_server 198.18.1.100 80 {\n    delay_loop 3\n    lb_kind NAT\n" + strings.Join(reals, "") + "}\n"
	}
	for _, tc := range []struct {
		name    string
		conf    string
		service string // checkSummary of the service's check
	}{
		{"same checker", vs(rs("198.18.2.11", httpGet), rs("198.18.2.12", httpGet), rs("198.18.2.13", httpGet)),
			"http interval=3s timeout=2s fall=2 retry=1s warmup=3s path=/health host= status=[] digest= regexp="},
		{"one real server", vs(rs("198.18.2.11", tcp)), "tcp interval=3s timeout=2s fall=2 retry=1s warmup=3s"},
		{"different checkers", vs(rs("198.18.2.11", httpGet), rs("198.18.2.12", tcp)), "none"},
		{"one without a checker", vs(rs("198.18.2.11", httpGet), rs("198.18.2.12", "")), "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := Convert("k.conf", []byte(tc.conf), lab)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse("imported.toml", out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			svc := cfg.Services[0]
			if got := checkSummary(svc.Health.Check); got != tc.service {
				t.Errorf("service check %s, want %s\n%s", got, tc.service, out)
			}
			if tc.service == "none" {
				if strings.Contains(string(out), "[virtual_server.check]") {
					t.Errorf("a service check from differing checkers:\n%s", out)
				}
				return
			}
			if strings.Contains(string(out), "[virtual_server.real_server.check]") {
				t.Errorf("real servers keep checks of their own:\n%s", out)
			}
			for _, r := range svc.Reals {
				if got := checkSummary(r.Check); got != tc.service {
					t.Errorf("%s: check %s, want the service's %s", r.Addr, got, tc.service)
				}
			}
		})
	}
}
