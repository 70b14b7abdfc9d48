package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestConntrackPathMTU checks path-MTU discovery through lvsd in NAT mode:
// the real server sits behind a router whose far link has an MTU of 1400,
// lower than any endpoint's, so the client's full-size segments make the
// router send ICMP fragmentation-needed to the client, through lvsd. lvsd
// must forward it with the outer source and the quoted packet rewritten
// from RIP:rport to VIP:vport (checksums included), or the client never
// learns the path MTU and the upload stalls.
func TestConntrackPathMTU(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{Reals: 1})
	const farMTU = 1400
	far := tp.AddRoutedReal("rsm", farMTU)
	srv := l.Start(far.NS, "rsm-http", bin.Labserver, "http", "-listen", ":8080", "-name", far.Name)
	if err := srv.WaitOutput("listening", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr", Method: "nat"}
	tp.WithReals([]lab.Real{far}, func() { tp.StartLvsd(bin, lab.LvsdOptions{}, svc) })

	// 4 MiB up: full-size segments from the client, too big for the far
	// link.
	const size = 4 << 20
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext(tp.Client), DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	start := time.Now()
	resp, err := hc.Post(vipURL+"upload", "application/octet-stream", bytes.NewReader(make([]byte, size)))
	if err != nil {
		t.Fatalf("upload of %d bytes through a %d-byte link: %v (the client never learned the path MTU?)\nclient's route to the VIP: %s",
			size, farMTU, err, l.IP(tp.Client, "route", "get", lab.VIP.String()))
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("uploaded %d bytes in %v: %s", size, time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(body)))
	if want := fmt.Sprintf(" %d", size); resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), far.Name+" "+lab.ClientIP.String()+":") || !strings.HasSuffix(strings.TrimSpace(string(body)), want) {
		t.Errorf("upload answer %s %q, want %s from %s, %d bytes", resp.Status, body, far.Name, lab.ClientIP, size)
	}
	// The client's kernel took the MTU from the relayed ICMP error: it
	// came from the VIP and quoted the client's own packet to VIP:80.
	route := l.IP(tp.Client, "route", "get", lab.VIP.String())
	if !strings.Contains(route, fmt.Sprintf("mtu %d", farMTU)) {
		t.Errorf("client's route to the VIP has no learned MTU %d:\n%s", farMTU, route)
	}
}
