package lab

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"
)

// More clients for persistence tests: the client namespace of a reference
// lab gets more addresses in its /24, and requests choose their source
// address.
//
//	client lvt-P-N-cli, lvteth0: 198.18.1.10/24 (ClientIP)
//	                             198.18.1.11/24, .12, ... (AddClientAddrs)

// AddClientAddrs adds n addresses to the client's link, 198.18.1.11 to
// 198.18.1.(10+n), in the client's /24 (1 <= n <= 89, below the VIP), and
// returns every client address, ClientIP first.
func (tp *Topology) AddClientAddrs(n int) []netip.Addr {
	l := tp.Lab
	l.t.Helper()
	if n < 1 || n > 89 {
		l.t.Fatalf("lab: AddClientAddrs(%d): want 1 to 89", n)
	}
	addrs := []netip.Addr{ClientIP}
	for i := 1; i <= n; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, 1, byte(10 + i)})
		l.Addr(tp.Client, GuestLink, a.String()+"/24")
		addrs = append(addrs, a)
	}
	return addrs
}

// GetFrom makes one HTTP GET of url from the client namespace with source
// address src, on a new TCP connection, and returns the name of the real
// server that answered (a lab server's X-Lab-Server) and the client address
// it saw (X-Lab-Client, ip:port).
func (tp *Topology) GetFrom(src netip.Addr, url string, timeout time.Duration) (server, client string, err error) {
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: DialContextFrom(tp.Client, src), DisableKeepAlives: true, Proxy: nil}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		return "", "", fmt.Errorf("GET %s from %s: %w", url, src, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", "", fmt.Errorf("GET %s from %s: body: %w", url, src, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("GET %s from %s: %s", url, src, resp.Status)
	}
	return resp.Header.Get("X-Lab-Server"), resp.Header.Get("X-Lab-Client"), nil
}

// ReloadLvsd rewrites the configuration file of the lvsd p (started by
// StartLvsd) with services, sends it SIGHUP and waits until it logs that it
// reloaded. A rejected reload fails the test.
func (tp *Topology) ReloadLvsd(p *Proc, services ...Service) {
	l := tp.Lab
	l.t.Helper()
	path := ""
	for i, a := range p.Args {
		if a == "-c" && i+1 < len(p.Args) {
			path = p.Args[i+1]
		}
	}
	if path == "" {
		l.t.Fatalf("lab: ReloadLvsd: %s was not started with -c FILE: %q", p.Name, p.Args)
	}
	if err := os.WriteFile(path, []byte(tp.Config(services...)), 0o644); err != nil {
		l.t.Fatalf("lab: ReloadLvsd: %v", err)
	}
	const done = "msg=reloaded"
	before := strings.Count(p.Output(), done)
	if err := syscall.Kill(-p.Pid(), syscall.SIGHUP); err != nil {
		l.t.Fatalf("lab: ReloadLvsd: SIGHUP to %s: %v", p.Name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.Output(), done) == before {
		out := p.Output()
		if strings.Contains(out, "reload rejected") || strings.Contains(out, "reload failed") {
			l.t.Fatalf("lab: lvsd rejected the reload:\n%s", tail(out, 4<<10))
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("lab: lvsd did not log %q within 10 s:\n%s", done, tail(out, 4<<10))
		}
		if !sleepCtx(l.t.Context(), 20*time.Millisecond) {
			l.t.Fatalf("lab: ReloadLvsd: %v", l.t.Context().Err())
		}
	}
}
