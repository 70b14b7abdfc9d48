package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestTUN6Lab runs HTTP over an IPv6 VIP whose real server gets its
// packets inside IPv6 (IPv6-in-IPv6, ip_vs_tunnel_xmit_v6) from the DIP on
// its subnet, decapsulated by `lvsd realserver`: 20 GETs succeed, and a
// 1 MiB upload completes, its segments (1500 bytes, over the tunnel's 1460)
// answered with ICMPv6 packet-too-big from the VIP, after which the client
// sends smaller ones. Before IPv6 TUN existed every packet was dropped as
// unsupported.
func TestTUN6Lab(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	dt := l.DirectLab6(lab.RealTUNLvsd)
	dt.StartHTTP(bin, 80)
	rs := dt.StartRealservers(bin)
	svc := dt.Service(lab.Service{Protocol: "tcp", Port: 80, Scheduler: "rr", VIP: lab.VIP6})
	dt.StartLvsd(bin, lab.LvsdOptions{}, svc)
	url := "http://" + net.JoinHostPort(lab.VIP6.String(), "80") + "/"

	res := dt.Get(bin, url, 20)
	if res.OK != 20 || res.Servers["rs1"] != 20 {
		t.Fatalf("GET over the IPv6 tunnel: %d of 20 ok, servers %v: %v\n%s", res.OK, res.Servers, res.Err, res.Output)
	}
	if res.Clients[lab.ClientIP6.String()] != 20 {
		t.Errorf("the real server saw clients %v, want %s", res.Clients, lab.ClientIP6)
	}
	up := dt.Get(bin, url+"upload", 1, "-upload", "1048576")
	if up.OK != 1 {
		t.Fatalf("1 MiB upload over the IPv6 tunnel failed: %v\n%s", up.Err, up.Output)
	}
	if out := l.IP(dt.Client, "-6", "route", "get", lab.VIP6.String()); !strings.Contains(out, "mtu 1460") {
		t.Errorf("the client's route to the VIP learnt no MTU of 1460:\n%s", out)
	}
	st := dt.Status()
	if st.Interfaces[0].Drops["unsupported"] != 0 || st.Interfaces[0].Drops["too-big"] == 0 {
		t.Errorf("drops: %v; want no unsupported, some too-big", st.Interfaces[0].Drops)
	}
	counts := lab.RealserverCounts(t, rs["rs1"])
	if counts["injected"] < 40 || counts["not-director"] != 0 || counts["malformed"] != 0 {
		t.Errorf("lvsd realserver counted %v", counts)
	}
}
