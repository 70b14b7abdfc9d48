package health

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lvsd/lvsd/config"
)

func target(t *testing.T, addr string) Target {
	t.Helper()
	return Target{Real: mustAP(addr), Virtual: mustAP("192.0.2.100:80")}
}

func runCheck(t *testing.T, c *config.Check, tg Target) Result {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	ch, err := NewChecker(c, tg, hostNet{})
	if err != nil {
		t.Fatal(err)
	}
	return ch.Check(context.Background())
}

// closedPort returns a loopback port with nothing listening.
func closedPort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := c.LocalAddr().String()
		c.Close()
		return a
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func TestTCPCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if r := runCheck(t, &config.Check{Type: "tcp"}, target(t, l.Addr().String())); r.Err != nil {
		t.Errorf("listening port: %v", r.Err)
	}
	if r := runCheck(t, &config.Check{Type: "tcp"}, target(t, closedPort(t, "tcp"))); r.Err == nil {
		t.Error("closed port passed")
	}
	// connect_port overrides the real server's port.
	ap := mustAP(l.Addr().String())
	if r := runCheck(t, &config.Check{Type: "tcp", Port: ap.Port()}, target(t, "127.0.0.1:1")); r.Err != nil {
		t.Errorf("check port: %v", r.Err)
	}
}

func TestHTTPCheck(t *testing.T) {
	body := "hello from rs1\n"
	sum := md5.Sum([]byte(body))
	digest := hex.EncodeToString(sum[:])
	var gotHost string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost = r.Host
		switch r.URL.Path {
		case "/":
			fmt.Fprint(w, body)
		case "/missing":
			http.NotFound(w, r)
		case "/huge":
			chunk := strings.Repeat("x", 64<<10)
			for i := 0; i < 100; i++ { // 6.4 MB
				if _, err := fmt.Fprint(w, chunk); err != nil {
					return
				}
			}
		case "/redirect":
			http.Redirect(w, r, "/", http.StatusFound)
		}
	}))
	defer srv.Close()
	tg := target(t, srv.Listener.Addr().String())
	tests := []struct {
		name string
		c    config.Check
		ok   bool
	}{
		{"default path and status", config.Check{}, true},
		{"404 is out of 200-299", config.Check{Path: "/missing"}, false},
		{"404 in its own range", config.Check{Path: "/missing", Status: []config.StatusRange{{Lo: 200, Hi: 200}, {Lo: 404, Hi: 404}}}, true},
		{"redirect is judged by its status", config.Check{Path: "/redirect"}, false},
		{"redirect accepted", config.Check{Path: "/redirect", Status: []config.StatusRange{{Lo: 300, Hi: 399}}}, true},
		{"digest", config.Check{Digest: digest}, true},
		{"wrong digest", config.Check{Digest: strings.Repeat("0", 32)}, false},
		{"substring", config.Check{Contains: "from rs1"}, true},
		{"missing substring", config.Check{Contains: "from rs2"}, false},
		{"regexp", config.Check{Regexp: `rs[0-9]+`}, true},
		{"regexp no match", config.Check{Regexp: `^rs`}, false},
		{"body over the limit", config.Check{Path: "/huge", Contains: "y"}, false},
		{"huge body without body checks", config.Check{Path: "/huge"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Type = "http"
			r := runCheck(t, &c, tg)
			if (r.Err == nil) != tc.ok {
				t.Errorf("passed=%v (%v), want %v", r.Err == nil, r.Err, tc.ok)
			}
		})
	}
	runCheck(t, &config.Check{Type: "http", Host: "www.example.test"}, tg)
	if gotHost != "www.example.test" {
		t.Errorf("Host header %q, want www.example.test", gotHost)
	}
}

// TestHTTPSilentServer: a server that accepts and never answers, or
// answers forever, fails within the timeout.
func TestHTTPSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	r := runCheck(t, &config.Check{Type: "http", Timeout: 300 * time.Millisecond}, target(t, l.Addr().String()))
	if r.Err == nil {
		t.Fatal("silent server passed")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("check took %v, timeout 300ms", d)
	}
}

func TestHTTPSCheck(t *testing.T) {
	var gotSNI string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotSNI = r.TLS.ServerName
		fmt.Fprint(w, "secure")
	}))
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	other := filepath.Join(dir, "other.pem")
	otherCA(t, other)

	tg := target(t, srv.Listener.Addr().String())
	tests := []struct {
		name string
		c    config.Check
		ok   bool
	}{
		{"no verification (SSL_GET)", config.Check{}, true},
		{"verified against its CA (httptest's cert holds example.com)", config.Check{CAFile: ca, SNI: "example.com"}, true},
		{"verified against its CA, wrong name", config.Check{CAFile: ca, SNI: "www.other.test"}, false},
		{"verified against another CA", config.Check{CAFile: other, SNI: "example.com"}, false},
		{"substring over TLS", config.Check{Contains: "secure"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Type = "https"
			r := runCheck(t, &c, tg)
			if (r.Err == nil) != tc.ok {
				t.Errorf("passed=%v (%v), want %v", r.Err == nil, r.Err, tc.ok)
			}
		})
	}
	runCheck(t, &config.Check{Type: "https", SNI: "sni.example.test"}, tg)
	if gotSNI != "sni.example.test" {
		t.Errorf("SNI %q, want sni.example.test", gotSNI)
	}
	if _, err := NewChecker(&config.Check{Type: "https", CAFile: filepath.Join(dir, "none.pem")}, tg, hostNet{}); !errors.Is(err, ErrConfig) {
		t.Errorf("missing CA file: %v, want ErrConfig", err)
	}
}

// otherCA writes a fresh self-signed CA certificate that signed nothing.
func otherCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lvsd-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, DNSNames: []string{"example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func udpServer(t *testing.T, reply func([]byte) []byte) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				c.WriteTo(r, from)
			}
		}
	}()
	return c.LocalAddr().String()
}

func TestUDPCheck(t *testing.T) {
	echo := udpServer(t, func(b []byte) []byte { return append([]byte("pong "), b...) })
	silent := udpServer(t, func([]byte) []byte { return nil })
	closed := closedPort(t, "udp")
	short := 300 * time.Millisecond
	tests := []struct {
		name string
		addr string
		c    config.Check
		ok   bool
	}{
		{"reply with the expected prefix", echo, config.Check{Payload: []byte("x"), Expect: []byte("pong")}, true},
		{"reply with another prefix", echo, config.Check{Payload: []byte("x"), Expect: []byte("PONG")}, false},
		{"any reply", echo, config.Check{Payload: []byte("x"), RequireReply: true}, true},
		{"silence when a reply is required", silent, config.Check{Payload: []byte("x"), RequireReply: true, Timeout: short}, false},
		{"silence when no reply is required", silent, config.Check{Payload: []byte("x"), Timeout: short}, true},
		{"port unreachable", closed, config.Check{Payload: []byte("x"), Timeout: short}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Type = "udp"
			r := runCheck(t, &c, target(t, tc.addr))
			if (r.Err == nil) != tc.ok {
				t.Errorf("passed=%v (%v), want %v", r.Err == nil, r.Err, tc.ok)
			}
		})
	}
}

func TestDNSCheck(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc("lvsd.test.", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR("lvsd.test. 60 IN A 192.0.2.53")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	addr := pc.LocalAddr().String()
	tests := []struct {
		name string
		c    config.Check
		ok   bool
	}{
		{"answer", config.Check{QueryType: "A", QueryName: "lvsd.test"}, true},
		{"no answer section", config.Check{QueryType: "MX", QueryName: "lvsd.test."}, false},
		{"NXDOMAIN", config.Check{QueryType: "A", QueryName: "other.test"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Type = "dns"
			r := runCheck(t, &c, target(t, addr))
			if (r.Err == nil) != tc.ok {
				t.Errorf("passed=%v (%v), want %v", r.Err == nil, r.Err, tc.ok)
			}
		})
	}
}

func TestExecCheck(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "env")
	tests := []struct {
		name    string
		command string
		dynamic bool
		ok      bool
		weight  int32
	}{
		{"exit 0", "exit 0", false, true, -1},
		{"exit 1", "exit 1", false, false, -1},
		{"exit 5 without dynamic", "exit 5", false, false, -1},
		{"exit 5 with dynamic: weight 3", "exit 5", true, true, 3},
		{"exit 1 with dynamic", "exit 1", true, false, -1},
		{"environment", `test "$LVSD_RS_ADDR:$LVSD_RS_PORT" = 192.0.2.11:8080 && env > ` + env, false, true, -1},
		{"megabytes of output", "head -c 20000000 /dev/zero; exit 0", false, true, -1},
		{"missing command", "/nonexistent/lvsd-check", false, false, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCheck(t, &config.Check{Type: "exec", Command: tc.command, Dynamic: tc.dynamic},
				Target{Real: mustAP("192.0.2.11:8080"), Virtual: mustAP("192.0.2.100:80")})
			if (r.Err == nil) != tc.ok || r.Weight != tc.weight {
				t.Errorf("passed=%v (%v) weight %d, want %v weight %d", r.Err == nil, r.Err, r.Weight, tc.ok, tc.weight)
			}
		})
	}
	// A command that hangs, with a child that would hold its output: both
	// are killed at the timeout.
	start := time.Now()
	r := runCheck(t, &config.Check{Type: "exec", Command: "sleep 30 & sleep 30", Timeout: 200 * time.Millisecond},
		Target{Real: mustAP("192.0.2.11:80")})
	if r.Err == nil {
		t.Error("hanging command passed")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("hanging command took %v, timeout 200ms", d)
	}
}

func TestPingCheck(t *testing.T) {
	tg := Target{Real: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.11"), 0)}
	ch, err := NewChecker(&config.Check{Type: "ping"}, tg, hostNet{})
	if err != nil {
		t.Fatal(err)
	}
	if r := ch.Check(context.Background()); r.Err != nil {
		t.Errorf("ping answered: %v", r.Err)
	}
	ch, _ = NewChecker(&config.Check{Type: "ping"}, tg, hostNet{pingErr: errors.New("timeout")})
	if r := ch.Check(context.Background()); r.Err == nil {
		t.Error("unanswered ping passed")
	}
}

func TestNewCheckerErrors(t *testing.T) {
	for _, c := range []config.Check{
		{Type: "tcp"}, // port 0 target
		{Type: "gopher"},
		{Type: "exec"},
		{Type: "dns", QueryType: "BOGUS"},
		{Type: "http", Regexp: "("},
	} {
		if _, err := NewChecker(&c, Target{Real: mustAP("192.0.2.11:0")}, hostNet{}); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
}
