package keepalived

import (
	"os"
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
	dns := cfg.Services[1]
	if dns.Proto != lvs.UDP || !dns.OnePacket || dns.Reals[0].Method != lvs.DR || dns.Reals[0].Weight != 1 {
		t.Errorf("dns: %+v", dns)
	}
	want := []string{
		"3: global_defs: no equivalent in lvsd (it balances; it holds no VRRP address, routes or global settings of keepalived)",
		"10: vrrp_instance: no equivalent in lvsd (it balances; it holds no VRRP address, routes or global settings of keepalived)",
		"21: delay_loop: not imported: write lvsd's check keys for it by hand (docs/health.md maps keepalived's)",
		"27: sorry_server: not imported: write lvsd's check keys for it by hand (docs/health.md maps keepalived's)",
		"33: HTTP_GET: checker not imported: write lvsd's check table for it by hand (docs/health.md maps keepalived's)",
		"45: inhibit_on_failure: not imported: write lvsd's check keys for it by hand (docs/health.md maps keepalived's)",
		"46: TCP_CHECK: checker not imported: write lvsd's check table for it by hand (docs/health.md maps keepalived's)",
		"59: MISC_CHECK: checker not imported: write lvsd's check table for it by hand (docs/health.md maps keepalived's)",
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

// FuzzConvert: no input panics the importer or makes it loop.
func FuzzConvert(f *testing.F) {
	for _, p := range []string{"testdata/nat.conf", "testdata/shapes.conf"} {
		data, _ := os.ReadFile(p)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		Convert("fuzz.conf", data, lab)
	})
}
