package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvsd/lvsd/config"
)

// dialThroughNet plays the forwarding path for http checks: a connection
// through a real server that holds the VIP reaches srv (a loopback
// server); through one that does not, nothing answers. It records every
// dial.
type dialThroughNet struct {
	hostNet
	srv     string              // host:port of the server behind the VIP
	holders map[netip.Addr]bool // the real servers that hold the VIP

	mu  sync.Mutex
	got []string
}

func (n *dialThroughNet) DialThrough(ctx context.Context, rip netip.Addr, vip netip.AddrPort, tunnel bool) (net.Conn, error) {
	n.mu.Lock()
	n.got = append(n.got, rip.String()+" "+vip.String()+map[bool]string{true: " tun", false: " dr"}[tunnel])
	n.mu.Unlock()
	if !n.holders[rip] {
		<-ctx.Done() // the SYN is dropped: no answer until the timeout
		return nil, ctx.Err()
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", n.srv)
}

// TestHTTPThroughChecker: an http or https check with through_vip sends
// its request to the VIP (with check.port when set, its Host header the
// VIP's) along the real server's path, never to its RIP: a real server
// that holds the VIP passes; one that does not fails at the timeout,
// although its RIP (the plain Net) would answer.
func TestHTTPThroughChecker(t *testing.T) {
	var (
		mu    sync.Mutex
		hosts []string
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		w.Write([]byte("healthy"))
	})
	for _, typ := range []string{"http", "https"} {
		t.Run(typ, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(handler)
			if typ == "https" {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			mu.Lock()
			hosts = nil
			mu.Unlock()
			n := &dialThroughNet{srv: srv.Listener.Addr().String(),
				holders: map[netip.Addr]bool{netip.MustParseAddr("192.0.2.11"): true}}
			c := &config.Check{Type: typ, ThroughVIP: true, Contains: "healthy", Timeout: 300 * time.Millisecond}
			good := Target{Real: mustAP("192.0.2.11:8080"), Virtual: mustAP("192.0.2.100:80")}
			ch, err := NewChecker(c, good, n)
			if err != nil {
				t.Fatal(err)
			}
			if r := ch.Check(context.Background()); r.Err != nil {
				t.Errorf("through a server with the VIP: %v", r.Err)
			}
			withPort := *c
			withPort.Port = 8443
			bad := Target{Real: mustAP("192.0.2.12:8080"), Virtual: mustAP("192.0.2.100:80"), Tunnel: true}
			ch, err = NewChecker(&withPort, bad, n)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := ch.Check(context.Background())
			if r.Err == nil || !errors.Is(r.Err, context.DeadlineExceeded) || !strings.Contains(r.Err.Error(), "through 192.0.2.12") {
				t.Errorf("through a server without the VIP: %v, want a timeout through 192.0.2.12", r.Err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the failing check took %v, beyond its timeout", d)
			}
			want := []string{"192.0.2.11 192.0.2.100:80 dr", "192.0.2.12 192.0.2.100:8443 tun"}
			if strings.Join(n.got, ",") != strings.Join(want, ",") {
				t.Errorf("dials %v, want %v", n.got, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(hosts) != 1 || hosts[0] != "192.0.2.100:80" {
				t.Errorf("Host headers %v, want the VIP's", hosts)
			}
		})
	}
	// A Net without connections through the fast path cannot run it.
	if _, err := NewChecker(&config.Check{Type: "http", ThroughVIP: true}, Target{Real: mustAP("192.0.2.11:80"), Virtual: mustAP("192.0.2.100:80")}, &throughNet{}); !errors.Is(err, ErrConfig) {
		t.Errorf("http through_vip over a Net without DialThrough: %v, want ErrConfig", err)
	}
}
