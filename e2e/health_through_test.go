package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// TestHealthThroughVIP checks DR and TUN real servers through the
// forwarding path (check.through_vip): rs1 (DR) and rs3 (TUN, decapsulated
// by `lvsd realserver`) hold the VIP and pass; rs2 (DR) lost the VIP from
// its lo and fails, while the plain tcp check of its RIP (port 81's
// service) still passes. Traffic to the VIP then avoids rs2, and once the
// VIP is back on rs2's lo the through-the-path check brings it back; losing
// it again takes rs2 out within the interval and the timeout. Port 82's
// service does the same with http checks through the path (whole
// connections from lvsd's through stack), and port 83's with https checks
// (a TLS handshake and a GET to VIP:443 through each real server, whose
// lab server serves HTTPS there), with the same outcome.
func TestHealthThroughVIP(t *testing.T) {
	lab.Skip(t)
	t.Parallel()
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	dt := l.DirectLab(lab.RealDR, lab.RealDR, lab.RealTUNLvsd)
	dt.StartHTTP(bin, 80)
	cert, key := selfSigned(t, l.Dir(), "vip", []string{"vip.lab.test"}, nil)
	for _, r := range dt.Reals {
		p := l.Start(r.NS, r.Name+"-https", bin.Labserver, "http", "-listen", ":443", "-cert", cert, "-key", key, "-name", r.Name)
		if err := p.WaitOutput("listening", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	dt.StartRealservers(bin)
	rs2 := dt.Reals[1]
	vip := lab.VIP.String() + "/32"
	l.IP(rs2.NS, "addr", "del", vip, "dev", "lo")

	fast := []string{`  interval = "300ms"`, `  timeout = "1s"`, `  rise = 1`, `  fall = 1`, `  warmup = "100ms"`, `  type = "tcp"`}
	through := dt.Service(lab.Service{Protocol: "tcp", Port: 80, Scheduler: "rr", Method: "dr",
		Extra: checkTable(append(append([]string{}, fast...), `  through_vip = true`)...)})
	plain := dt.Service(lab.Service{Protocol: "tcp", Port: 81, Scheduler: "rr", Method: "dr",
		Extra: checkTable(append(append([]string{}, fast...), `  port = 80`)...)})
	// Port 82's service checks the same path with whole HTTP requests: a
	// GET to VIP:80 through each real server.
	httpThrough := dt.Service(lab.Service{Protocol: "tcp", Port: 82, Scheduler: "rr", Method: "dr",
		Extra: checkTable(append(append([]string{}, fast[:len(fast)-1]...), `  type = "http"`, `  port = 80`, `  path = "/"`, `  through_vip = true`)...)})
	httpsThrough := dt.Service(lab.Service{Protocol: "tcp", Port: 83, Scheduler: "rr", Method: "dr",
		Extra: checkTable(append(append([]string{}, fast[:len(fast)-1]...), `  type = "https"`, `  port = 443`, `  path = "/"`, `  through_vip = true`)...)})
	dt.StartLvsd(bin, lab.LvsdOptions{}, through, plain, httpThrough, httpsThrough)

	states := func(want map[string]string) func(*control.Status) string {
		return func(st *control.Status) string {
			var bad []string
			for key, w := range want {
				addr, ra, _ := strings.Cut(key, " ")
				h := healthOf(st, "tcp", addr)[ra]
				if h == nil || h.State != w || h.Checks == 0 {
					bad = append(bad, fmt.Sprintf("%s -> %s: %+v, want %s", addr, ra, h, w))
				}
			}
			return strings.Join(bad, "\n")
		}
	}
	st := waitHealth(t, dt.Topology, 20*time.Second, states(map[string]string{
		"198.18.1.100:80 198.18.1.21:80": "up",
		"198.18.1.100:80 198.18.1.22:80": "down", // no VIP on lo: the SYN to the VIP is not its
		"198.18.1.100:80 198.18.1.23:80": "up",   // TUN: inside IPIP
		"198.18.1.100:81 198.18.1.21:81": "up",
		"198.18.1.100:81 198.18.1.22:81": "up", // its RIP answers all the same
		"198.18.1.100:81 198.18.1.23:81": "up",
		"198.18.1.100:82 198.18.1.21:82": "up",
		"198.18.1.100:82 198.18.1.22:82": "down", // the GET to the VIP through it gets no answer
		"198.18.1.100:82 198.18.1.23:82": "up",   // a whole connection inside IPIP
		"198.18.1.100:83 198.18.1.21:83": "up",   // TLS to VIP:443 through it
		"198.18.1.100:83 198.18.1.22:83": "down",
		"198.18.1.100:83 198.18.1.23:83": "up", // TLS inside IPIP
	}))
	if h := healthOf(st, "tcp", "198.18.1.100:80")["198.18.1.22:80"]; h != nil {
		t.Logf("rs2 through the VIP: %s (%s)", h.State, h.LastError)
	}
	if h := healthOf(st, "tcp", "198.18.1.100:82")["198.18.1.22:82"]; h == nil || !strings.Contains(h.LastError, "http") {
		t.Errorf("rs2's http check through the VIP: %+v, want an http failure", h)
	} else {
		t.Logf("rs2's http check through the VIP: %s (%s)", h.State, h.LastError)
	}
	if h := healthOf(st, "tcp", "198.18.1.100:83")["198.18.1.22:83"]; h == nil || !strings.Contains(h.LastError, "http") {
		t.Errorf("rs2's https check through the VIP: %+v, want an http failure", h)
	} else {
		t.Logf("rs2's https check through the VIP: %s (%s)", h.State, h.LastError)
	}
	res := dt.Get(bin, "http://198.18.1.100:80/", 20, "-timeout", "2s")
	if res.OK != 20 || res.Servers["rs2"] != 0 {
		t.Errorf("20 requests with rs2 down: %d ok, by server %v", res.OK, res.Servers)
	}

	l.IP(rs2.NS, "addr", "add", vip, "dev", "lo")
	waitHealth(t, dt.Topology, 10*time.Second, states(map[string]string{
		"198.18.1.100:80 198.18.1.22:80": "up",
		"198.18.1.100:82 198.18.1.22:82": "up",
		"198.18.1.100:83 198.18.1.22:83": "up",
	}))
	res = dt.Get(bin, "http://198.18.1.100:80/", 30, "-timeout", "2s")
	if res.OK != 30 || res.Servers["rs2"] == 0 {
		t.Errorf("30 requests with rs2 back: %d ok, by server %v", res.OK, res.Servers)
	}

	// Losing the VIP while up: detected within interval + timeout.
	start := time.Now()
	l.IP(rs2.NS, "addr", "del", vip, "dev", "lo")
	waitHealth(t, dt.Topology, 10*time.Second, states(map[string]string{
		"198.18.1.100:80 198.18.1.22:80": "down",
		"198.18.1.100:81 198.18.1.22:81": "up",
		"198.18.1.100:82 198.18.1.22:82": "down",
		"198.18.1.100:83 198.18.1.22:83": "down",
	}))
	took := time.Since(start)
	t.Logf("rs2 down %v after losing the VIP (interval 300ms, timeout 1s, fall 1)", took.Round(10*time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("losing the VIP detected after %v, want about interval + timeout (1.3 s)", took)
	}
}

// TestHealthThroughVIP6 is the DR case over IPv6: the probe to VIP6 goes to
// the real server's MAC; rs2 without VIP6 on its lo fails it while its RIP
// passes a plain check, rs1 with VIP6 passes; the same with http checks
// through the path (port 82's service).
func TestHealthThroughVIP6(t *testing.T) {
	lab.Skip(t)
	t.Parallel()
	bin := lab.BuildBinaries(t)
	l := lab.New(t)
	dt := l.DirectLab6(lab.RealDR, lab.RealDR)
	dt.StartHTTP(bin, 80)
	rs2 := dt.Reals[1]
	l.IP(rs2.NS, "-6", "addr", "del", lab.VIP6.String()+"/128", "dev", "lo")

	fast := []string{`  interval = "300ms"`, `  timeout = "1s"`, `  rise = 1`, `  fall = 1`, `  warmup = "100ms"`, `  type = "tcp"`}
	through := dt.Service(lab.Service{Protocol: "tcp", VIP: lab.VIP6, Port: 80, Scheduler: "rr", Method: "dr",
		Extra: checkTable(append(append([]string{}, fast...), `  through_vip = true`)...)})
	plain := dt.Service(lab.Service{Protocol: "tcp", VIP: lab.VIP6, Port: 81, Scheduler: "rr", Method: "dr",
		Extra: checkTable(append(append([]string{}, fast...), `  port = 80`)...)})
	httpThrough := dt.Service(lab.Service{Protocol: "tcp", VIP: lab.VIP6, Port: 82, Scheduler: "rr", Method: "dr",
		Extra: checkTable(append(append([]string{}, fast[:len(fast)-1]...), `  type = "http"`, `  port = 80`, `  through_vip = true`)...)})
	dt.StartLvsd(bin, lab.LvsdOptions{}, through, plain, httpThrough)

	vip := "[" + lab.VIP6.String() + "]"
	rs := func(i int, port string) string { return "[" + dt.Reals[i].Addr6.String() + "]:" + port }
	want := map[[2]string]string{
		{vip + ":80", rs(0, "80")}: "up",
		{vip + ":80", rs(1, "80")}: "down",
		{vip + ":81", rs(0, "81")}: "up",
		{vip + ":81", rs(1, "81")}: "up",
		{vip + ":82", rs(0, "82")}: "up",   // a GET of [VIP6]:80 through it
		{vip + ":82", rs(1, "82")}: "down", // no answer for VIP6
	}
	st := waitHealth(t, dt.Topology, 20*time.Second, func(st *control.Status) string {
		var bad []string
		for k, w := range want {
			h := healthOf(st, "tcp", k[0])[k[1]]
			if h == nil || h.State != w || h.Checks == 0 {
				bad = append(bad, fmt.Sprintf("%s -> %s: %+v, want %s", k[0], k[1], h, w))
			}
		}
		// Down for the right reason: its MAC is known, the SYN to VIP6
		// got no answer.
		if h := healthOf(st, "tcp", vip+":80")[rs(1, "80")]; h == nil || !strings.Contains(h.LastError, "deadline exceeded") {
			bad = append(bad, fmt.Sprintf("rs2 through VIP6: %+v, want a probe without answer", h))
		}
		return strings.Join(bad, "\n")
	})
	if h := healthOf(st, "tcp", vip+":80")[rs(1, "80")]; h != nil {
		t.Logf("rs2 through VIP6: %s (%s)", h.State, h.LastError)
	}
}
