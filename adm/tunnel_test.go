package adm

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// TestParseTunnel reads --tun-type, --tun-port and the checksum options
// into Command.Tun, with ipvsadm's rules of which type takes which.
func TestParseTunnel(t *testing.T) {
	tests := []struct {
		args string
		want lvs.Tunnel
	}{
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i", lvs.Tunnel{}},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gue --tun-port 6080", lvs.Tunnel{Type: lvs.TunGUE, Port: 6080}},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gue --tun-port 5555 --tun-remcsum", lvs.Tunnel{Type: lvs.TunGUE, Port: 5555, Flags: lvs.TunRemCsum}},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gue --tun-port 1 --tun-csum", lvs.Tunnel{Type: lvs.TunGUE, Port: 1, Flags: lvs.TunCsum}},
		{"-e -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gre --tun-csum", lvs.Tunnel{Type: lvs.TunGRE, Flags: lvs.TunCsum}},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gre --tun-nocsum", lvs.Tunnel{Type: lvs.TunGRE}},
	}
	for _, tt := range tests {
		c, err := (&Parser{}).Parse(strings.Fields(tt.args))
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.args, err)
			continue
		}
		if diff := cmp.Diff(tt.want, c.Tun); diff != "" {
			t.Errorf("Parse(%q) tunnel (-want +got):\n%s", tt.args, diff)
		}
		var r config.Real
		setReal(&r, c)
		if r.Tunnel != tt.want {
			t.Errorf("setReal after %q: tunnel %+v, want %+v", tt.args, r.Tunnel, tt.want)
		}
	}
}

func TestParseTunnelErrors(t *testing.T) {
	tests := []struct{ args, msg string }{
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gue", "You need to supply the 'tun-port' option for the 'gue' tunnel type"},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gre --tun-port 6080", "Illegal 'tun-port' option with the 'gre' tunnel type"},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gre --tun-remcsum", "Illegal 'tun-remcsum' option with the 'gre' tunnel type"},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type ipip --tun-csum", "Illegal 'tun-csum' option with the 'ipip' tunnel type"},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gue --tun-port 6080 --tun-csum --tun-remcsum", "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type"},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -i --tun-type gue --tun-port 0", "illegal tunnel port specified"},
		{"-a -t 192.0.2.1:80 -r 192.0.2.2 -m --tun-type gue --tun-port 6080", "Tunnel options conflict with forward method"},
	}
	for _, tt := range tests {
		_, err := (&Parser{}).Parse(strings.Fields(tt.args))
		e, ok := err.(*Error)
		if !ok || e.Code != ExitBadArg || !strings.Contains(e.Msg, tt.msg) {
			t.Errorf("Parse(%q) = %v, want exit %d with %q", tt.args, err, ExitBadArg, tt.msg)
		}
	}
}

// TestPrintTunnel lists gue and gre real servers as ipvsadm 1.31 does:
// fwd_tun_info's column under --tun-info, print_tunnel_rule's options
// under -S.
func TestPrintTunnel(t *testing.T) {
	gue := dest("192.0.2.41", 443, lvs.TUN, 5, 1, 0)
	gue.Tunnel = lvs.Tunnel{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunRemCsum}
	gre := dest("192.0.2.42", 443, lvs.TUN, 4, 0, 2)
	gre.Tunnel = lvs.Tunnel{Type: lvs.TunGRE, Flags: lvs.TunCsum}
	ipip := dest("192.0.2.43", 443, lvs.TUN, 3, 0, 0)
	nat := dest("192.0.2.44", 443, lvs.NAT, 2, 0, 0)
	gt := goldenTable{t: Table{Services: []Service{svc(lvs.TCP, "192.0.2.100", 443, "wlc", gue, gre, ipip, nat)}}}

	want := "IP Virtual Server version 1.2.1 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n" +
		"TCP  192.0.2.100:443 wlc\n" +
		"  -> 192.0.2.41:443               Tunnel  gue:6080:remcsum 5      1          0         \n" +
		"  -> 192.0.2.42:443               Tunnel  gre:csum      4      0          2         \n" +
		"  -> 192.0.2.43:443               Tunnel  ipip          3      0          0         \n" +
		"  -> 192.0.2.44:443               Masq    n/a           2      0          0         \n"
	if diff := cmp.Diff(want, string(render(t, &gt, []string{"-Ln", "--tun-info", "--nosort"}))); diff != "" {
		t.Errorf("-Ln --tun-info (-want +got):\n%s", diff)
	}
	want = "-A -t 192.0.2.100:443 -s wlc\n" +
		"-a -t 192.0.2.100:443 -r 192.0.2.41:443 -i -w 5 --tun-type gue --tun-port 6080 --tun-remcsum\n" +
		"-a -t 192.0.2.100:443 -r 192.0.2.42:443 -i -w 4 --tun-type gre --tun-csum\n" +
		"-a -t 192.0.2.100:443 -r 192.0.2.43:443 -i -w 3 --tun-type ipip\n" +
		"-a -t 192.0.2.100:443 -r 192.0.2.44:443 -m -w 2\n"
	if diff := cmp.Diff(want, string(stripExtensions(render(t, &gt, []string{"-Sn"})))); diff != "" {
		t.Errorf("-Sn (-want +got):\n%s", diff)
	}
}
