package e2e

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestPersistNAT checks persistence (ipvsadm -p, -M) end to end, with four
// client addresses (198.18.1.10-13) and round robin over three real servers:
//
//   - VIP:80, persistence 3 s per client address (/32): each client's
//     connections stay on one real server, and the clients spread over all
//     three (rr would otherwise alternate every connection);
//   - VIP:81, the same with netmask 255.255.255.252: .10 and .11 share a
//     server, .12 and .13 another;
//   - once a client's connections are gone (tcp_fin is 1 s; the test waits
//     for lvsd's connection count, from its control socket, to reach 0) and
//     its template has run out, its next connection is scheduled again: rr
//     moves every client to the next server.
func TestPersistNAT(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	clients := tp.AddClientAddrs(3)
	tp.StartHTTP(bin, 8080)
	// Closed connections leave the table a second after their FIN, so that
	// templates are no longer held by them.
	// IPVS keeps a closed connection 120 s in TIME_WAIT whatever tcp_fin
	// says: tcp_time_wait shortens that.
	tp.Globals = []string{"[timeouts]", `tcp_fin = "1s"`, `tcp_time_wait = "1s"`}
	const timeout = 3 * time.Second
	perClient := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr", Method: "nat",
		Extra: []string{`persistence_timeout = 3`}}
	perNet := lab.Service{Port: 81, RealPort: 8080, Scheduler: "rr", Method: "nat",
		Extra: []string{`persistence_timeout = "3s"`, `persistence_netmask = "255.255.255.252"`}}
	// The readiness probe connects to VIP:80 from 198.18.1.10: the first rr
	// choice becomes .10's template.
	tp.StartLvsd(bin, lab.LvsdOptions{}, perClient, perNet)

	get := func(src netip.Addr, port string) string {
		t.Helper()
		server, client, err := tp.GetFrom(src, "http://"+net.JoinHostPort(lab.VIP.String(), port)+"/", 5*time.Second)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if host, _, _ := strings.Cut(client, ":"); host != src.String() {
			t.Errorf("%s saw the client as %s, want %s (NAT keeps the client's address)", server, client, src)
		}
		return server
	}
	servers := func(port string, rounds int) map[netip.Addr]string {
		t.Helper()
		got := map[netip.Addr]string{}
		for r := range rounds {
			for _, c := range clients {
				s := get(c, port)
				if r > 0 && s != got[c] {
					t.Errorf("port %s: %s's connection %d went to %s, its earlier ones to %s", port, c, r, s, got[c])
				}
				got[c] = s
			}
		}
		return got
	}

	start := time.Now()
	byClient := servers("80", 4)
	distinct := map[string]bool{}
	for _, s := range byClient {
		distinct[s] = true
	}
	t.Logf("VIP:80, one template per client: %v", byClient)
	if len(distinct) != 3 {
		t.Errorf("four clients on %d real servers, want all 3 (rr per client)", len(distinct))
	}

	byNet := servers("81", 2)
	t.Logf("VIP:81, one template per /30: %v", byNet)
	if byNet[clients[0]] != byNet[clients[1]] || byNet[clients[2]] != byNet[clients[3]] {
		t.Errorf("clients of one /30 on different servers: %v", byNet)
	}
	if byNet[clients[0]] == byNet[clients[2]] {
		t.Errorf("the two /30 networks share server %s; rr should give them two", byNet[clients[0]])
	}

	// Templates run out 3 s after their last use once no connection holds
	// them. Connections leave the table 1-2 s after their FIN (later if a
	// segment is retransmitted); a template still holding one when its timer
	// runs out is restarted for 3 s. So: wait until lvsd has no connection,
	// then for the timeout and a sweep (expiry runs every second).
	deadline := time.Now().Add(15 * time.Second)
	for tp.Status().Connections > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("lvsd still has %d connections 15 s after the last request:\n%s", tp.Status().Connections,
				l.Exec(tp.Director, bin.Lvsd, "adm", "--control", tp.Control, "-L", "-c", "-n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(timeout + 1500*time.Millisecond)
	moved := 0
	for _, c := range clients {
		if s := get(c, "80"); s != byClient[c] {
			moved++
		}
	}
	// rr continues from where it was: with four clients over three servers
	// every client lands on the server after its old one.
	if moved != len(clients) {
		t.Errorf("after the templates expired %d of %d clients moved, want all", moved, len(clients))
	}
	t.Logf("whole test body took %v", time.Since(start).Round(time.Millisecond))
}
