package keepalived

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// TestConvertTunnel imports keepalived's tunnel options of lb_kind TUN
// (type, port, nocsum|csum|remcsum): the virtual server's are its real
// servers' default, a real server's own lb_kind sets its own (ipip unless
// it says otherwise); an option keepalived does not know is reported and
// the tunnel left at ipip.
func TestConvertTunnel(t *testing.T) {
	conf := `virtual_server 198.18.1.100 80 {
 lb_kind TUN type gue port 6080 remcsum
 real_server 198.18.2.11 80 {
 }
 real_server 198.18.2.12 80 {
  lb_kind TUN type gre csum
 }
 real_server 198.18.2.13 80 {
  lb_kind TUN
 }
 real_server 198.18.2.14 80 {
  lb_kind TUN type vxlan
 }
}
`
	out, notes, err := Convert("t.conf", []byte(conf), lab)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("imported.toml", out)
	if err != nil {
		t.Fatalf("the import does not pass lvsd check: %v\n%s", err, out)
	}
	want := []lvs.Tunnel{
		{Type: lvs.TunGUE, Port: 6080, Flags: lvs.TunRemCsum},
		{Type: lvs.TunGRE, Flags: lvs.TunCsum},
		{},
		{},
	}
	var got []lvs.Tunnel
	for _, r := range cfg.Services[0].Reals {
		got = append(got, r.Tunnel)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tunnels (-want +got):\n%s\n%s", diff, out)
	}
	var lines []string
	for _, n := range notes {
		lines = append(lines, n.String())
	}
	if diff := cmp.Diff([]string{"12: lb_kind: vxlan: not a tunnel type (ipip, gue, gre)"}, lines); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}
