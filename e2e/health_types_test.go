package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// selfSigned writes a self-signed certificate (its own CA) for names and
// ips, and its key, into dir; it returns the two paths.
func selfSigned(t *testing.T, dir, name string, names []string, ips []net.IP) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, DNSNames: names, IPAddresses: ips,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, key
}

// checkTable returns the lines of a [virtual_server.check] table.
func checkTable(kv ...string) []string {
	return append([]string{"", "  [virtual_server.check]"}, kv...)
}

// healthOf returns the health of every real server of the service at
// address (VIP:port) and protocol, by real server address.
func healthOf(st *control.Status, proto, address string) map[string]*control.Health {
	out := make(map[string]*control.Health)
	for _, s := range st.Services {
		if s.Protocol == proto && s.Address == address {
			for _, r := range s.Reals {
				out[r.Address] = r.Health
			}
		}
	}
	return out
}

// waitHealth polls the status until want (service -> state of all its
// real servers, or per real server with "addr=state") holds.
func waitHealth(t *testing.T, tp *lab.Topology, timeout time.Duration, ok func(*control.Status) string) *control.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// The control socket may come up just after the VIP answers.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		st, err := control.Get(ctx, tp.Control)
		cancel()
		why := fmt.Sprint("control socket: ", err)
		if err == nil {
			why = ok(st)
		}
		if why == "" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("health not as expected after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHealthCheckTypes runs every check type from lvsd's netstack against
// real servers in their namespaces (HTTP, HTTPS with a self-signed
// certificate, a UDP echo, a DNS server built on miekg/dns, ping, an exec
// script), each once where it must pass and once where it must fail.
func TestHealthCheckTypes(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	var ips []net.IP
	for _, r := range tp.Reals {
		ips = append(ips, r.Addr.AsSlice())
	}
	cert, key := selfSigned(t, l.Dir(), "rs", []string{"rs.lab.test"}, ips)
	other, _ := selfSigned(t, l.Dir(), "other", []string{"rs.lab.test"}, nil)
	for _, r := range tp.Reals {
		p := l.Start(r.NS, r.Name+"-https", bin.Labserver, "http", "-listen", ":8443", "-name", r.Name, "-cert", cert, "-key", key)
		if err := p.WaitOutput("listening", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	tp.StartUDP(bin, 5353)
	tp.StartDNS(bin, 5354)
	script := l.WriteFile("dynamic.sh", "#!/bin/sh\ncase \"$LVSD_RS_ADDR\" in\n198.18.2.11) exit 7;;\n198.18.2.12) exit 3;;\n*) exit 1;;\nesac\n")
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}

	fast := []string{`  interval = "300ms"`, `  timeout = "1s"`, `  rise = 1`, `  fall = 1`, `  warmup = "100ms"`}
	svc := func(proto string, port, rport uint16, check ...string) lab.Service {
		return lab.Service{Protocol: proto, Port: port, RealPort: rport, Scheduler: "wrr",
			Extra: checkTable(append(append([]string{}, fast...), check...)...)}
	}
	type want struct {
		proto, addr string
		state       string // of every real server
	}
	services := []lab.Service{
		svc("tcp", 80, 8080, `  type = "tcp"`),
		svc("tcp", 81, 8080, `  type = "http"`, `  contains = "rs"`),
		svc("tcp", 82, 8080, `  type = "http"`, `  status = ["500-599"]`),
		svc("tcp", 83, 8080, `  type = "tcp"`, `  port = 8089`),
		svc("tcp", 443, 8443, `  type = "https"`),
		svc("tcp", 444, 8443, `  type = "https"`, `  sni = "rs.lab.test"`, fmt.Sprintf(`  ca_file = %q`, cert)),
		svc("tcp", 445, 8443, `  type = "https"`, `  sni = "rs.lab.test"`, fmt.Sprintf(`  ca_file = %q`, other)),
		svc("tcp", 446, 8443, `  type = "https"`, `  sni = "wrong.lab.test"`, fmt.Sprintf(`  ca_file = %q`, cert)),
		svc("udp", 5353, 5353, `  type = "udp"`, `  payload = "hello"`, `  expect = "rs"`),
		svc("udp", 5355, 5353, `  type = "udp"`, `  payload = "hello"`, `  expect = "xx"`),
		// The real servers' kernels send ICMP errors at 1/s (icmp_ratelimit):
		// probes of a closed UDP port come once a second, and rise 5 keeps a
		// probe that got no ICMP error from bringing the server back.
		{Protocol: "udp", Port: 5356, Scheduler: "wrr", Extra: checkTable(`  type = "udp"`, `  payload = "hello"`,
			`  interval = "1s"`, `  timeout = "500ms"`, `  rise = 5`, `  fall = 1`, `  warmup = "100ms"`)},
		svc("udp", 53, 5354, `  type = "dns"`, `  query_type = "A"`, `  query_name = "lvsd.test"`),
		svc("udp", 54, 5354, `  type = "dns"`, `  query_type = "A"`, `  query_name = "nx.lab.test"`),
		svc("tcp", 90, 8080, `  type = "ping"`),
	}
	wants := []want{
		{"tcp", "198.18.1.100:80", "up"},
		{"tcp", "198.18.1.100:81", "up"},
		{"tcp", "198.18.1.100:82", "down"},   // 200 is not in 500-599
		{"tcp", "198.18.1.100:83", "down"},   // nothing listens on 8089: RST
		{"tcp", "198.18.1.100:443", "up"},    // self-signed, not verified (SSL_GET)
		{"tcp", "198.18.1.100:444", "up"},    // verified against its own certificate
		{"tcp", "198.18.1.100:445", "down"},  // another CA
		{"tcp", "198.18.1.100:446", "down"},  // a name the certificate does not hold
		{"udp", "198.18.1.100:5353", "up"},   // echo starts with the server's name
		{"udp", "198.18.1.100:5355", "down"}, // reply without the expected prefix
		{"udp", "198.18.1.100:5356", "down"}, // closed port: ICMP port unreachable
		{"udp", "198.18.1.100:53", "up"},
		{"udp", "198.18.1.100:54", "down"}, // NXDOMAIN
		{"tcp", "198.18.1.100:90", "up"},
	}
	exec := lab.Service{Port: 91, RealPort: 8080, Scheduler: "wrr",
		Extra: checkTable(append(append([]string{}, fast...), `  type = "exec"`, fmt.Sprintf(`  command = %q`, script), `  dynamic = true`)...)}
	services = append(services, exec)
	tp.StartLvsd(bin, lab.LvsdOptions{}, services...)

	st := waitHealth(t, tp, 20*time.Second, func(st *control.Status) string {
		var bad []string
		for _, w := range wants {
			hs := healthOf(st, w.proto, w.addr)
			if len(hs) != len(tp.Reals) {
				bad = append(bad, fmt.Sprintf("%s %s: %d real servers", w.proto, w.addr, len(hs)))
				continue
			}
			for ra, h := range hs {
				if h == nil || h.State != w.state || h.Checks == 0 {
					bad = append(bad, fmt.Sprintf("%s %s -> %s: %+v, want %s", w.proto, w.addr, ra, h, w.state))
				}
			}
		}
		ex := healthOf(st, "tcp", "198.18.1.100:91")
		for ra, want := range map[string]string{"198.18.2.11:8080": "up 5", "198.18.2.12:8080": "up 1", "198.18.2.13:8080": "down"} {
			got := "none"
			if h := ex[ra]; h != nil {
				got = h.State
				if h.Weight != nil {
					got += fmt.Sprintf(" %d", *h.Weight)
				}
			}
			if got != want {
				bad = append(bad, fmt.Sprintf("exec -> %s: %s, want %s", ra, got, want))
			}
		}
		return strings.Join(bad, "\n")
	})
	for _, w := range wants {
		for ra, h := range healthOf(st, w.proto, w.addr) {
			t.Logf("%s %s -> %s: %s (%s)", w.proto, w.addr, ra, h.State, h.LastError)
		}
	}

	// Dynamic weights (misc_dynamic: exit code - 2), seen in the status and
	// in the traffic: 30 requests to port 91 go 5:1 to rs1 and rs2.
	for _, s := range st.Services {
		if s.Address != "198.18.1.100:91" {
			continue
		}
		for _, r := range s.Reals {
			if h := r.Health; h == nil || (r.Address != "198.18.2.13:8080" && h.Weight == nil) {
				t.Errorf("exec -> %s: no dynamic weight in %+v", r.Address, h)
			}
		}
	}
	res := tp.Get(bin, "http://198.18.1.100:91/", 30)
	if res.OK != 30 || res.Servers["rs1"] != 25 || res.Servers["rs2"] != 5 || res.Servers["rs3"] != 0 {
		t.Errorf("30 requests with dynamic weights 5:1 and rs3 down: %+v", res.Servers)
	}
	// A service whose servers are all down answers nothing new: the status
	// check took them out.
	res = tp.Get(bin, "http://198.18.1.100:82/", 2, "-timeout", "1s")
	if res.OK != 0 {
		t.Errorf("service with every server down answered %d requests", res.OK)
	}

	// lvsd list keeps ipvsadm's lines; lvsd list -health shows the checks.
	list := l.Exec(tp.Director, bin.Lvsd, "list", "-control", tp.Control)
	if strings.Contains(list, "https") || strings.Contains(list, "status 200") {
		t.Errorf("lvsd list shows health details:\n%s", list)
	}
	hl := l.Exec(tp.Director, bin.Lvsd, "list", "-health", "-control", tp.Control)
	if !strings.Contains(hl, "http: status 200") || !strings.Contains(hl, "dns: rcode NXDOMAIN") {
		t.Errorf("lvsd list -health:\n%s", hl)
	}
	t.Logf("lvsd list -health:\n%s", hl)
}

// allUp reports "" when the n real servers of the service at address are
// checked and up.
func allUp(st *control.Status, address string, n int) string {
	hs := healthOf(st, "tcp", address)
	if len(hs) != n {
		return fmt.Sprintf("%s: %d real servers, want %d", address, len(hs), n)
	}
	for ra, h := range hs {
		if h == nil || h.State != "up" || h.Checks == 0 {
			return fmt.Sprintf("%s -> %s: %+v", address, ra, h)
		}
	}
	return ""
}
