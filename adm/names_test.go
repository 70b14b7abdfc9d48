package adm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/lvs"
)

func TestFileNames(t *testing.T) {
	dir := t.TempDir()
	services := filepath.Join(dir, "services")
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(services, []byte("# comment\nhttp\t80/tcp\twww # WorldWideWeb\ndomain\t53/udp\nhttps 443/tcp\n"), 0o644)
	os.WriteFile(hosts, []byte("192.0.2.100 web.example web\n2001:db8::1 six.example\n"), 0o644)
	n := LoadNames(services, hosts)

	p := &Parser{Ports: n.Port, Hosts: n.Addr}
	c, err := p.Parse(strings.Fields("-A -t 192.0.2.100:www"))
	if err != nil || c.Svc.Port != 80 {
		t.Fatalf("-t 192.0.2.100:www: %+v %v", c, err)
	}
	c, err = p.Parse(strings.Fields("-A -t web:http"))
	if err != nil || c.Svc.Addr != ip("192.0.2.100") || c.Svc.Port != 80 {
		t.Fatalf("-t web:http: %+v %v", c, err)
	}
	// Listings without -n print names, as ipvsadm; with -n numbers.
	tab := &Table{Services: []Service{svc(lvs.TCP, "192.0.2.100", 80, "rr", dest("192.0.2.21", 443, lvs.NAT, 1, 0, 0))}}
	var b bytes.Buffer
	(&Printer{Names: n}).WriteList(&b, tab, 0)
	if !strings.Contains(b.String(), "\nTCP  web.example:http rr\n  -> 192.0.2.21:https ") {
		t.Errorf("without -n:\n%s", b.String())
	}
	b.Reset()
	(&Printer{Names: n}).WriteList(&b, tab, FmtNumeric)
	if !strings.Contains(b.String(), "\nTCP  192.0.2.100:80 rr\n") {
		t.Errorf("with -n:\n%s", b.String())
	}
	if n.Service(53, lvs.TCP) != "" || n.Service(53, lvs.UDP) != "domain" {
		t.Errorf("the protocol of a service name is not kept apart")
	}
	if missing := LoadNames(filepath.Join(dir, "none"), filepath.Join(dir, "none")); missing.Host(ip("192.0.2.100")) != "" {
		t.Errorf("a missing file resolved a name")
	}
}

// TestLvsdListing: --lvsd adds lvsd's own fields under the lines, which
// stay ipvsadm's.
func TestLvsdListing(t *testing.T) {
	s := mark(svc(lvs.TCP, "192.0.2.100", 80, "rr", dest("192.0.2.21", 0, lvs.DR, 1, 0, 0), dest("192.0.2.22", 0, lvs.DR, 1, 0, 0)), 4, 80, 443)
	s.Name = "web"
	s.Dests[0].Down = true
	s.Dests[1].Overloaded = true
	var b bytes.Buffer
	(&Printer{}).WriteList(&b, &Table{Services: []Service{s}}, FmtNumeric|FmtLvsd)
	want := "FWM  4 rr\n  # name web, TCP 192.0.2.100:80,443, interface lvt0\n" +
		"  -> 192.0.2.21:0                 Route   1      0          0         \n     # down\n" +
		"  -> 192.0.2.22:0                 Route   1      0          0         \n     # overloaded\n"
	if !strings.HasSuffix(b.String(), want) {
		t.Errorf("--lvsd:\n%s\nwant the end:\n%s", b.String(), want)
	}
}

// TestListingLeavesOutDownServers: a server its check took out is not in
// ipvsadm's listing (keepalived would have run ipvsadm -d), is in --lvsd's,
// marked, and in -S's, so that -S | -R gives back the configured table.
func TestListingLeavesOutDownServers(t *testing.T) {
	s := svc(lvs.TCP, "192.0.2.100", 80, "rr", dest("192.0.2.21", 80, lvs.NAT, 1, 0, 0), dest("192.0.2.22", 80, lvs.NAT, 1, 0, 0))
	s.Dests[0].Down = true
	tab := &Table{Services: []Service{s}}
	for _, c := range []struct {
		f        Format
		wantDown bool
	}{{FmtNumeric, false}, {FmtNumeric | FmtLvsd, true}, {FmtNumeric | FmtRule, true}} {
		var b bytes.Buffer
		(&Printer{}).WriteList(&b, tab, c.f)
		if got := strings.Contains(b.String(), "192.0.2.21"); got != c.wantDown {
			t.Errorf("format %#x lists the down server: %v, want %v:\n%s", c.f, got, c.wantDown, b.String())
		}
		if !strings.Contains(b.String(), "192.0.2.22") {
			t.Errorf("format %#x leaves out the live server:\n%s", c.f, b.String())
		}
	}
}
