package adm

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// TestRun runs command sequences as ipvsadm would on the kernel: the
// table after each, and the messages and statuses of refusals.
func TestRun(t *testing.T) {
	tests := []struct {
		name   string
		lines  []string
		code   int
		stderr string
		check  func(t *testing.T, e *Env, res Result)
	}{
		{name: "add and list", lines: []string{"-A -t 192.0.2.100:80 -s rr", "-a -t 192.0.2.100:80 -r 192.0.2.21:8080 -m -w 3"},
			check: func(t *testing.T, e *Env, res Result) {
				s := res.Changed.Services[0]
				if s.Scheduler != "rr" || len(s.Reals) != 1 || s.Reals[0].Weight != 3 || s.Reals[0].Method != lvs.NAT || s.Reals[0].Port != 8080 {
					t.Errorf("table: %+v", s)
				}
			}},
		{name: "duplicate service", lines: []string{"-A -t 192.0.2.100:80", "-A -t 192.0.2.100:80"}, code: ExitFailed, stderr: "Service already exists\n"},
		{name: "unknown scheduler", lines: []string{"-A -t 192.0.2.100:80 -s nope"}, code: ExitFailed, stderr: "Scheduler or persistence engine not found\n"},
		{name: "edit missing", lines: []string{"-E -t 192.0.2.100:80 -s rr"}, code: ExitFailed, stderr: "No such service\n"},
		{name: "dest without service", lines: []string{"-a -t 192.0.2.100:80 -r 192.0.2.21"}, code: ExitFailed, stderr: "Service not defined\n"},
		{name: "duplicate dest", lines: []string{"-A -t 192.0.2.100:80", "-a -t 192.0.2.100:80 -r 192.0.2.21", "-a -t 192.0.2.100:80 -r 192.0.2.21"}, code: ExitFailed, stderr: "Destination already exists\n"},
		{name: "edit missing dest", lines: []string{"-A -t 192.0.2.100:80", "-e -t 192.0.2.100:80 -r 192.0.2.21 -w 0"}, code: ExitFailed, stderr: "No such destination\n"},
		{name: "thresholds out of range", lines: []string{"-A -t 192.0.2.100:80", "-a -t 192.0.2.100:80 -r 192.0.2.21 -x 5 -y 10"}, code: ExitFailed, stderr: "Numerical result out of range\n"},
		{name: "drain keeps the server", lines: []string{"-A -t 192.0.2.100:80", "-a -t 192.0.2.100:80 -r 192.0.2.21 -w 5", "-e -t 192.0.2.100:80 -r 192.0.2.21 -w 0"},
			check: func(t *testing.T, e *Env, res Result) {
				if r := res.Changed.Services[0].Reals; len(r) != 1 || r[0].Weight != 0 {
					t.Errorf("reals after drain: %+v", r)
				}
			}},
		{name: "edit without -p drops persistence, as the kernel", lines: []string{"-A -t 192.0.2.100:80 -p 60", "-E -t 192.0.2.100:80 -s rr"},
			check: func(t *testing.T, e *Env, res Result) {
				if p := res.Changed.Services[0].Persistence; p.Timeout != 0 {
					t.Errorf("persistence after -E: %+v", p)
				}
			}},
		{name: "delete", lines: []string{"-A -t 192.0.2.100:80", "-a -t 192.0.2.100:80 -r 192.0.2.21", "-d -t 192.0.2.100:80 -r 192.0.2.21", "-D -t 192.0.2.100:80"},
			check: func(t *testing.T, e *Env, res Result) {
				if len(res.Changed.Services) != 0 {
					t.Errorf("services: %+v", res.Changed.Services)
				}
			}},
		{name: "set keeps zeros", lines: []string{"--set 100 0 20"},
			check: func(t *testing.T, e *Env, res Result) {
				if to := res.Changed.Timeouts; to.TCP != 100*time.Second || to.TCPFin != 120*time.Second || to.UDP != 20*time.Second {
					t.Errorf("timeouts: %+v", to)
				}
			}},
		{name: "fwmark service over ports", lines: []string{"-A -f 5 -s rr -p --ports tcp:192.0.2.100:80,443", "-a -f 5 -r 192.0.2.21"},
			check: func(t *testing.T, e *Env, res Result) {
				s := res.Changed.Services[0]
				if s.Mark != 5 || len(s.Ports) != 2 || len(s.Reals) != 1 || s.Reals[0].Port != 0 {
					t.Errorf("service: %+v", s)
				}
			}},
		{name: "fwmark needs ports", lines: []string{"-A -f 5"}, code: ExitBadArg, stderr: "lvsd: -f 5: a firewall-mark service in lvsd"},
		// lvsd's validation, worded by the arguments.
		{name: "VIP is a DIP", lines: []string{"-A -t 192.0.2.1:80"}, code: ExitFailed, stderr: "lvsd: -t 192.0.2.1:80: 192.0.2.1 is a director address"},
		{name: "one packet with NAT", lines: []string{"-A -u 192.0.2.100:53 -o", "-a -u 192.0.2.100:53 -r 192.0.2.21:53 -m"}, code: ExitFailed,
			stderr: "lvsd: -u 192.0.2.100:53: -o: needs dr or tun real servers"},
		{name: "real is the VIP", lines: []string{"-A -t 192.0.2.100:80", "-a -t 192.0.2.100:80 -r 192.0.2.100"}, code: ExitFailed,
			stderr: "lvsd: -t 192.0.2.100:80"},
		{name: "zero a missing service", lines: []string{"-Z -t 192.0.2.100:80"}, code: ExitFailed, stderr: "No such service\n"},
		{name: "list a missing service", lines: []string{"-L -t 192.0.2.100:80"}, code: ExitFailed, stderr: "No such service\n"},
		{name: "try help", lines: []string{"-n"}, code: ExitFailed, stderr: "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"},
		{name: "restore in restore", lines: []string{"-R"}, code: ExitFailed, stderr: "Try `ipvsadm -h'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testEnv()
			cfg := baseConfig(t)
			var res Result
			if tt.name == "restore in restore" {
				res = e.Run(cfg, []string{"-R"}, []string{"-R"})
			} else {
				// The lines as one -R: each applies to the table the ones before left.
				res = e.Run(cfg, []string{"-R"}, tt.lines)
			}
			if res.Code != tt.code || !strings.HasPrefix(res.Stderr, tt.stderr) && !strings.Contains(res.Stderr, tt.stderr) {
				t.Fatalf("code %d stderr %q, want %d %q", res.Code, res.Stderr, tt.code, tt.stderr)
			}
			if tt.code != 0 && res.Changed != nil {
				t.Errorf("a refused command changed the table")
			}
			if tt.check != nil {
				tt.check(t, e, res)
			}
		})
	}
}

// TestRunRefusalChangesNothing: a -R that fails half way applies none of
// its lines.
func TestRunRefusalChangesNothing(t *testing.T) {
	e := testEnv()
	res := e.Run(baseConfig(t), []string{"-R"}, []string{"-A -t 192.0.2.100:80", "-A -t 192.0.2.100:80"})
	if res.Changed != nil || res.Code == 0 {
		t.Fatalf("%+v", res)
	}
}

func TestRunListing(t *testing.T) {
	e := testEnv()
	cfg := baseConfig(t)
	res := e.Run(cfg, []string{"-R"}, []string{"-A -t 192.0.2.100:80 -s rr", "-a -t 192.0.2.100:80 -r 192.0.2.21:80 -w 2"})
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	out := e.Run(res.Changed, []string{"-Ln"}, nil)
	want := "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  192.0.2.100:80 rr\n  -> 192.0.2.21:80                Route   2      0          0         \n"
	if out.Stdout != want || out.Code != 0 {
		t.Errorf("-Ln:\n%q\nwant\n%q", out.Stdout, want)
	}
	if out := e.Run(res.Changed, []string{"-L", "--timeout"}, nil); out.Stdout != "Timeout (tcp tcpfin udp): 900 120 300\n" {
		t.Errorf("--timeout: %q", out.Stdout)
	}
	if out := e.Run(res.Changed, []string{"-v"}, nil); !strings.HasPrefix(out.Stdout, "ipvsadm test ") {
		t.Errorf("-v: %q", out.Stdout)
	}
}

// TestAddDestGetsServiceCheck: a real server added at run time (-a) is
// checked with its service's check; -e keeps it; a check that cannot apply
// to the new server (through_vip on a NAT server) refuses the command with
// the file's message; -S still prints ipvsadm's lines only.
func TestAddDestGetsServiceCheck(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(baseTOML+`
[[virtual_server]]
protocol = "tcp"
address = "192.0.2.100"
port = 80
method = "dr"
  [virtual_server.check]
  type = "tcp"
  through_vip = true
  fall = 3
  [[virtual_server.real_server]]
  address = "192.0.2.21"
`))
	if err != nil {
		t.Fatal(err)
	}
	e := testEnv()
	res := e.Run(cfg, []string{"-R"}, []string{"-a -t 192.0.2.100:80 -r 192.0.2.22 -g -w 2", "-e -t 192.0.2.100:80 -r 192.0.2.22 -g -w 3"})
	if res.Code != 0 {
		t.Fatal(res.Stderr)
	}
	s := res.Changed.Services[0]
	want := s.Health.Check
	if want == nil || !want.ThroughVIP || want.Fall != 3 {
		t.Fatalf("service check %+v", want)
	}
	for _, r := range s.Reals {
		if r.Check == nil || !reflect.DeepEqual(r.Check, want) || r.Check == want {
			t.Errorf("%s: check %+v, want a copy of the service's %+v", r.Addr, r.Check, want)
		}
	}
	res = e.Run(cfg, []string{"-a", "-t", "192.0.2.100:80", "-r", "192.0.2.23:8080", "-m"}, nil)
	if res.Code == 0 || !strings.Contains(res.Stderr, "needs a real server forwarded by dr or tun: 192.0.2.23 is nat") {
		t.Errorf("NAT server under a through_vip check: code %d %q", res.Code, res.Stderr)
	}
	if out := e.Run(cfg, []string{"-S", "-n"}, nil); out.Stdout != "-A -t 192.0.2.100:80 -s wlc\n-a -t 192.0.2.100:80 -r 192.0.2.21:80 -g -w 1\n" {
		t.Errorf("-Sn: %q", out.Stdout)
	}
}

// TestAddDRToSynproxyRefused: a SYN-proxy service translates every segment
// in both directions, so a DR or TUN real server added at run time is
// refused with the file's message, as lvsd check refuses it in a file.
func TestAddDRToSynproxyRefused(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(baseTOML+`
[[virtual_server]]
protocol = "tcp"
address = "192.0.2.100"
port = 80
method = "nat"
synproxy = true
  [[virtual_server.real_server]]
  address = "192.0.2.21"
`))
	if err != nil {
		t.Fatal(err)
	}
	e := testEnv()
	for _, m := range []string{"-g", "-i"} {
		res := e.Run(cfg, []string{"-a", "-t", "192.0.2.100:80", "-r", "192.0.2.22", m}, nil)
		if res.Code == 0 || !strings.Contains(res.Stderr, "needs nat real servers") {
			t.Errorf("%s server on a synproxy service: code %d %q", m, res.Code, res.Stderr)
		}
	}
	if res := e.Run(cfg, []string{"-a", "-t", "192.0.2.100:80", "-r", "192.0.2.22", "-m"}, nil); res.Code != 0 {
		t.Errorf("NAT server on a synproxy service refused: %q", res.Stderr)
	}
}
