package adm

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lvsd/lvsd/lvs"
)

func args(s string) []string { return strings.Fields(s) }

func TestParse(t *testing.T) {
	v4 := ServiceID{Proto: lvs.TCP, Addr: ip("192.0.2.100"), Port: 80}
	tests := []struct {
		line string
		want Command // compared on the fields set below
	}{
		{"-A -t 192.0.2.100:80", Command{Cmd: CmdAdd, Svc: v4, Sched: "wlc", Netmask: 32}},
		{"--add-service --tcp-service=192.0.2.100:80 --scheduler rr", Command{Cmd: CmdAdd, Svc: v4, Sched: "rr", Netmask: 32}},
		{"-A -t 192.0.2.100:80 -s wrr -p", Command{Cmd: CmdAdd, Svc: v4, Sched: "wrr", Persistent: true, Timeout: 300, Netmask: 32}},
		{"-A -t 192.0.2.100:80 -p 600", Command{Cmd: CmdAdd, Svc: v4, Sched: "wlc", Persistent: true, Timeout: 600, Netmask: 32}},
		{"-A -t 192.0.2.100:80 -p600", Command{Cmd: CmdAdd, Svc: v4, Sched: "wlc", Persistent: true, Timeout: 600, Netmask: 32}},
		{"-A -t 192.0.2.100:80 --persistent=60", Command{Cmd: CmdAdd, Svc: v4, Sched: "wlc", Persistent: true, Timeout: 60, Netmask: 32}},
		// -p without a value, then another option: the option is not taken as its value.
		{"-A -t 192.0.2.100:80 -p -M 255.255.255.0", Command{Cmd: CmdAdd, Svc: v4, Sched: "wlc", Persistent: true, Timeout: 300, Netmask: 24}},
		{"-A -t 192.0.2.100:80 -p -s rr", Command{Cmd: CmdAdd, Svc: v4, Sched: "rr", Persistent: true, Timeout: 300, Netmask: 32}},
		{"-A -t 192.0.2.100:0 -p", Command{Cmd: CmdAdd, Svc: ServiceID{Proto: lvs.TCP, Addr: ip("192.0.2.100")}, Sched: "wlc", Persistent: true, Timeout: 300, Netmask: 32}},
		{"-A -u [2001:db8::1]:53 -s rr -o", Command{Cmd: CmdAdd, Svc: ServiceID{Proto: lvs.UDP, Addr: ip("2001:db8::1"), Port: 53}, Sched: "rr", OnePacket: true, Netmask: 128}},
		{"-A -t [2001:db8::1]:80 -p 30 -M 64", Command{Cmd: CmdAdd, Svc: ServiceID{Proto: lvs.TCP, Addr: ip("2001:db8::1"), Port: 80}, Sched: "wlc", Persistent: true, Timeout: 30, Netmask: 64}},
		{"-A -t 192.0.2.100:443 -s sh -b sh-fallback,sh-port", Command{Cmd: CmdAdd, Svc: ServiceID{Proto: lvs.TCP, Addr: ip("192.0.2.100"), Port: 443}, Sched: "sh", SchedFlags: []string{"sh-fallback", "sh-port"}, Netmask: 32}},
		{"-A -f 7 -s rr --ports tcp:192.0.2.100:80,443", Command{Cmd: CmdAdd, Svc: ServiceID{Proto: lvs.TCP, Addr: ip("192.0.2.100"), Mark: 7}, Sched: "rr", Ports: []uint16{80, 443}, Netmask: 32}},
		{"-E -f 7 -6 -s rr", Command{Cmd: CmdEdit, Svc: ServiceID{Proto: lvs.TCP, Mark: 7, IPv6: true}, Sched: "rr", Netmask: 128}},
		{"-D -t 192.0.2.100:80", Command{Cmd: CmdDel, Svc: v4, Netmask: 32}},
		{"-C", Command{Cmd: CmdFlush, Netmask: 32}},
		{"-a -t 192.0.2.100:80 -r 192.0.2.21:8080 -m -w 3", Command{Cmd: CmdAddDest, Svc: v4, Dest: ap("192.0.2.21:8080"), Method: lvs.NAT, Weight: 3, Netmask: 32}},
		// DR and TUN real servers take the service's port, as ipvsadm forces.
		{"-a -t 192.0.2.100:80 -r 192.0.2.21:8080", Command{Cmd: CmdAddDest, Svc: v4, Dest: ap("192.0.2.21:80"), Method: lvs.DR, Weight: 1, Netmask: 32}},
		{"-a -t 192.0.2.100:80 -r 192.0.2.21 -i --tun-type ipip", Command{Cmd: CmdAddDest, Svc: v4, Dest: ap("192.0.2.21:80"), Method: lvs.TUN, Weight: 1, Netmask: 32}},
		// -r before -t: ipvsadm takes the port of the service known so far (none).
		{"-a -r 192.0.2.21 -t 192.0.2.100:80 -m", Command{Cmd: CmdAddDest, Svc: v4, Dest: ap("192.0.2.21:0"), Method: lvs.NAT, Weight: 1, Netmask: 32}},
		{"-e -t 192.0.2.100:80 -r 192.0.2.21 -w 0 -x 100 -y 50", Command{Cmd: CmdEditDest, Svc: v4, Dest: ap("192.0.2.21:80"), Weight: 0, UThresh: 100, LThresh: 50, Netmask: 32}},
		{"-a -t 192.0.2.100:80 -r 192.0.2.21 --slow-start 30", Command{Cmd: CmdAddDest, Svc: v4, Dest: ap("192.0.2.21:80"), Weight: 1, SlowStart: 30 * time.Second, SvcSlowStart: 30 * time.Second, Netmask: 32}},
		{"-d -t 192.0.2.100:80 -r 192.0.2.21:8080", Command{Cmd: CmdDelDest, Svc: v4, Dest: ap("192.0.2.21:8080"), Weight: 1, Netmask: 32}},
		{"-Ln", Command{Cmd: CmdList, Format: FmtNumeric, Weight: 1, Netmask: 32}},
		{"-L -n --stats --rate", Command{Cmd: CmdList, Format: FmtNumeric | FmtStats | FmtRate, Weight: 1, Netmask: 32}},
		{"-l --exact --thresholds --nosort --sort", Command{Cmd: CmdList, Format: FmtExact | FmtThresholds | FmtNoSort, Weight: 1, Netmask: 32}},
		{"-Lnc --persistent-conn", Command{Cmd: CmdList, Format: FmtNumeric | FmtPersistentConn, Weight: 1, Netmask: 32}},
		{"-L --timeout", Command{Cmd: CmdList, Weight: 1, Netmask: 32}},
		{"-L --lvsd", Command{Cmd: CmdList, Format: FmtLvsd, Weight: 1, Netmask: 32}},
		{"-L --tun-info -X", Command{Cmd: CmdList, Format: FmtTunInfo | FmtExact, Weight: 1, Netmask: 32}},
		{"-L --daemon", Command{Cmd: CmdList, Weight: 1, Netmask: 32}},
		{"-L -f 3 -6 --stats", Command{Cmd: CmdList, Svc: ServiceID{Proto: lvs.TCP, Mark: 3, IPv6: true}, Format: FmtStats, Weight: 1, Netmask: 128}},
		{"--start-daemon master --syncid 5 --mcast-interface lvt0 --mcast-port 8848 --mcast-ttl 2 --sync-maxlen 1472 --mcast-group 224.0.0.81",
			Command{Cmd: CmdStartDaemon, Weight: 1, Netmask: 32}},
		{"--stop-daemon backup", Command{Cmd: CmdStopDaemon, Weight: 1, Netmask: 32}},
		{"-A -t 192.0.2.100:80 --name web --interface lvt0 --slow-start 10 --maglev-size 251 -s maglev",
			Command{Cmd: CmdAdd, Svc: v4, Sched: "maglev", Name: "web", Interface: "lvt0", SlowStart: 10 * time.Second, SvcSlowStart: 10 * time.Second, MaglevSize: 251, Netmask: 32}},
		{"-A -t 192.0.2.100:80 --pe sip", Command{Cmd: CmdAdd, Svc: v4, Sched: "wlc", Netmask: 32}},
		{"-A -u 192.0.2.100:53 --ops", Command{Cmd: CmdAdd, Svc: ServiceID{Proto: lvs.UDP, Addr: ip("192.0.2.100"), Port: 53}, Sched: "wlc", OnePacket: true, Netmask: 32}},
		{"-a -t 192.0.2.100:80 --real-server=192.0.2.21 --masquerading --weight=4 --u-threshold 9 --l-threshold 3",
			Command{Cmd: CmdAddDest, Svc: v4, Dest: ap("192.0.2.21:80"), Method: lvs.NAT, Weight: 4, UThresh: 9, LThresh: 3, Netmask: 32}},
		{"-a -t 192.0.2.100:80 -r 192.0.2.21 --gatewaying", Command{Cmd: CmdAddDest, Svc: v4, Dest: ap("192.0.2.21:80"), Weight: 1, Netmask: 32}},
		{"-a -t 192.0.2.100:80 -r 192.0.2.21 --ipip", Command{Cmd: CmdAddDest, Svc: v4, Dest: ap("192.0.2.21:80"), Method: lvs.TUN, Weight: 1, Netmask: 32}},
		{"--clear", Command{Cmd: CmdFlush, Weight: 1, Netmask: 32}},
		{"--zero --udp-service 192.0.2.100:53", Command{Cmd: CmdZero, Svc: ServiceID{Proto: lvs.UDP, Addr: ip("192.0.2.100"), Port: 53}, Weight: 1, Netmask: 32}},
		{"--save --numeric", Command{Cmd: CmdSave, Format: FmtNumeric | FmtRule, Weight: 1, Netmask: 32}},
		{"--restore", Command{Cmd: CmdRestore, Weight: 1, Netmask: 32}},
		{"--list --numeric --connection", Command{Cmd: CmdList, Format: FmtNumeric, Weight: 1, Netmask: 32}},
		{"--delete-server -t 192.0.2.100:80 -r 192.0.2.21", Command{Cmd: CmdDelDest, Svc: v4, Dest: ap("192.0.2.21:80"), Weight: 1, Netmask: 32}},
		{"--edit-service -t 192.0.2.100:80 --scheduler rr --persistent 20 --netmask 255.255.0.0",
			Command{Cmd: CmdEdit, Svc: v4, Sched: "rr", Persistent: true, Timeout: 20, Netmask: 16}},
		{"-S -n", Command{Cmd: CmdSave, Format: FmtNumeric | FmtRule, Weight: 1, Netmask: 32}},
		{"-R", Command{Cmd: CmdRestore, Weight: 1, Netmask: 32}},
		{"-Z", Command{Cmd: CmdZero, Weight: 1, Netmask: 32}},
		{"-Z -t 192.0.2.100:80", Command{Cmd: CmdZero, Svc: v4, Weight: 1, Netmask: 32}},
		{"--set 900 0 300", Command{Cmd: CmdTimeout, TCP: 900, UDP: 300, Weight: 1, Netmask: 32}},
		{"", Command{Cmd: CmdList, Weight: 1, Netmask: -1}},
		{"-h", Command{Cmd: CmdHelp, Weight: 1, Netmask: -1}},
		{"--version", Command{Cmd: CmdVersion, Weight: 1, Netmask: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := (&Parser{}).Parse(args(tt.line))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := tt.want
			if want.Weight == 0 && tt.want.Cmd != CmdEditDest {
				want.Weight = 1
			}
			opts := cmp.Options{cmpopts.IgnoreFields(Command{}, "Options", "svcSlowSet"), cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})}
			if diff := cmp.Diff(&want, got, opts); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseErrors: ipvsadm's messages and exit statuses.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		line    string
		msg     string
		code    int
		tryHelp bool
	}{
		{"-n -L", "", ExitFailed, true}, // the first option must be a command
		{"foo", "", ExitFailed, true},
		{"--bogus", "", ExitFailed, true},
		{"-L --bogus", "--bogus: unknown option", ExitFailed, false},
		{"-Lq", "-Lq: unknown option", ExitFailed, false},
		{"-A -t", "-t: missing argument", ExitFailed, false},
		{"-A -t 192.0.2.1:80 -L", "multiple commands specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -s rr -s wrr", "multiple 'scheduler' options specified", ExitBadArg, false},
		{"-A -t 80", "illegal virtual server address[:port] specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:http", "illegal virtual server address[:port] specified", ExitBadArg, false},
		{"-A -t [2001:db8::1]", "illegal virtual server address[:port] specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:65536", "illegal virtual server address[:port] specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -p 0", "invalid timeout value `0' specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -p abc", "invalid timeout value `abc' specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -p 2678401", "invalid timeout value `2678401' specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -p -M 255.0.255.0", "illegal virtual server persistent mask specified", ExitBadArg, false},
		{"-A -t [2001:db8::1]:80 -p -M 129", "illegal ipv6 netmask specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:0", "Zero port specified for non-persistent service", ExitBadArg, false},
		{"-A -t 192.0.2.1:53 -o", "One-Packet Scheduling is only for UDP virtual services", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -b sh-port", "incompatible scheduler flag `sh-port'", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -s sh -b nope", "invalid scheduler flag `nope'", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -r 192.0.2.2", "Illegal 'real-server' option with the 'add-service' command", ExitBadArg, false},
		{"-A -s rr", "You need to supply the 'service-address' option for the 'add-service' command", ExitBadArg, false},
		{"-A -f 0", "invalid fwmark value `0' specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 -6", "-6 used before -f\n", ExitBadArg, false},
		{"-a -t 192.0.2.1:80", "You need to supply the 'real-server' option for the 'add-server' command", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -w 65536", "illegal weight specified", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -w -1", "illegal weight specified", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -x x", "illegal u_threshold specified", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -y -3", "illegal l_threshold specified", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r nowhere", "illegal real server address[:port] specified", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r [2001:db8::2]:80", "Different address family is allowed only for tunneling servers", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -m --tun-type ipip", "Tunnel options conflict with forward method", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-port 6080", "Illegal 'tun-port' option with the 'ipip' tunnel type", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type vxlan", "illegal tunnel type specified", ExitBadArg, false},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -m -g", "multiple 'forwarding-method' options specified", ExitBadArg, false},
		{"-d -t 192.0.2.1:80 -r 192.0.2.2 -w 3", "Illegal 'weight' option with the 'delete-server' command", ExitBadArg, false},
		{"-L -c --stats", "options conflicts in the list command", ExitBadArg, false},
		{"-L --timeout --persistent-conn", "options conflicts in the list command", ExitBadArg, false},
		{"-L -c --timeout", "The option 'timeout' conflicts with the 'connection' option in the 'list' command", ExitBadArg, false},
		{"-L -t 192.0.2.1:80 -c", "The option 'service-address' conflicts with the 'connection' option in the 'list' command", ExitBadArg, false},
		{"-S -c", "Illegal 'connection' option with the 'save' command", ExitBadArg, false},
		{"-C -n", "Illegal 'numeric' option with the 'flush' command", ExitBadArg, false},
		{"--set 900 120", "--set option requires 3 timeout values", ExitBadArg, false},
		{"--set 900 120 x", "invalid timeout value `x' specified", ExitBadArg, false},
		{"-L extra", "unexpected argument extra", ExitBadArg, false},
		{"-L -h", "invalid option `-h'", ExitBadArg, false},
		{"--start-daemon nope", "illegal start-daemon parameter specified", ExitBadArg, false},
		{"-A -t 192.0.2.1:80 --ports tcp:192.0.2.1:80", "lvsd: --ports names the VIP and ports of a firewall-mark service (-f MARK)", ExitBadArg, false},
		{"-A -f 1 --ports tcp:192.0.2.1:0", "lvsd: --ports wants PROTO:VIP:PORT,PORT... such as tcp:198.18.1.100:80,443, not `tcp:192.0.2.1:0'", ExitBadArg, false},
		{"-L --name x", "Illegal 'name' option with the 'list' command", ExitBadArg, false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			_, err := (&Parser{}).Parse(args(tt.line))
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("Parse(%q) = %v, want an *Error", tt.line, err)
			}
			if e.TryHelp != tt.tryHelp || e.Code != tt.code || (!tt.tryHelp && e.Msg != tt.msg) {
				t.Errorf("Parse(%q) = %+v, want msg %q code %d tryHelp %v", tt.line, e, tt.msg, tt.code, tt.tryHelp)
			}
		})
	}
}

// TestParsePortNames: without -n, ipvsadm takes service names for ports.
func TestParsePortNames(t *testing.T) {
	p := &Parser{Ports: func(name string, proto lvs.Proto) (uint16, bool) {
		if name == "http" && proto == lvs.TCP {
			return 80, true
		}
		return 0, false
	}}
	c, err := p.Parse(args("-A -t 192.0.2.1:http"))
	if err != nil || c.Svc.Port != 80 {
		t.Fatalf("Parse: %+v %v", c, err)
	}
	if _, err := p.Parse(args("-A -u 192.0.2.1:http")); err == nil {
		t.Errorf("a TCP service name was taken for UDP")
	}
}

// FuzzParse: no command line panics the parser, and every refusal is an
// *Error with ipvsadm's exit statuses.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"-A -t 192.0.2.1:80 -s rr -p", "-a -t [2001:db8::1]:80 -r [2001:db8::2]:80 -m -w 3", "-Lnc", "-L --stats --rate --exact",
		"--set 1 2 3", "-A -f 1 --ports tcp:192.0.2.1:80,443", "-p", "--persistent=", "-e -t 1.2.3.4:5 -r 1.2.3.5 -x 1 -y 2", "-S",
		"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gue --tun-port 6080 --tun-remcsum", "-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gre --tun-csum --tun-nocsum"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := (&Parser{}).Parse(strings.Fields(line))
		if err != nil {
			e, ok := err.(*Error)
			if !ok || (e.Code != ExitBadArg && e.Code != ExitFailed) {
				t.Fatalf("Parse(%q): %v", line, err)
			}
			return
		}
		if c.Cmd == CmdNone {
			t.Fatalf("Parse(%q): no command", line)
		}
	})
}

func TestCommandOf(t *testing.T) {
	for line, want := range map[string]Cmd{
		"": CmdList, "-Ln": CmdList, "-a -t nowhere -r x": CmdAddDest, "--restore": CmdRestore, "-e": CmdEditDest,
		"-n -L": CmdNone, "foo": CmdNone, "-Z -t x": CmdZero, "--set 1 2": CmdTimeout, "-S": CmdSave,
	} {
		if got := CommandOf(strings.Fields(line)); got != want {
			t.Errorf("CommandOf(%q) = %v, want %v", line, got, want)
		}
	}
}
