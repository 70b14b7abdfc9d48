package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// serverReadyTimeout bounds the wait for a lab server to listen.
const serverReadyTimeout = 10 * time.Second

// StartHTTP runs `labserver http -listen :PORT -name rsN` in each real
// server's namespace and waits until each listens. It returns the servers
// in Reals order.
func (tp *Topology) StartHTTP(bin Binaries, port int) []*Proc {
	tp.Lab.t.Helper()
	return tp.startServers(bin, "http", port)
}

// StartUDP runs `labserver udp -listen :PORT -name rsN` (an echo server) in
// each real server's namespace and waits until each listens.
func (tp *Topology) StartUDP(bin Binaries, port int) []*Proc {
	tp.Lab.t.Helper()
	return tp.startServers(bin, "udp", port)
}

func (tp *Topology) startServers(bin Binaries, kind string, port int) []*Proc {
	l := tp.Lab
	l.t.Helper()
	var ps []*Proc
	for _, r := range tp.Reals {
		ps = append(ps, l.Start(r.NS, r.Name+"-"+kind, bin.Labserver, kind, "-listen", fmt.Sprintf(":%d", port), "-name", r.Name))
	}
	for _, p := range ps {
		if err := p.WaitOutput("listening", serverReadyTimeout); err != nil {
			l.t.Fatalf("lab: %v", err)
		}
	}
	return ps
}

// GetResult is the outcome of `labserver get -json` (the JSON summary it
// prints last; its field names are the lab server's).
type GetResult struct {
	Requests int `json:"requests"`
	OK       int `json:"ok"`
	Failed   int `json:"failed"`
	// Servers counts the answers per real-server name.
	Servers map[string]int `json:"servers"`
	// Clients counts the answers per client IP as the real servers saw it.
	Clients map[string]int `json:"clients"`
	// Errors holds the first errors, in order.
	Errors []string `json:"errors,omitempty"`
	// Events, with -events, has every request's start (seconds since the
	// first) and answering server ("" when it failed), in order.
	Events []GetEvent `json:"events,omitempty"`

	// Output is everything the command printed: one line per request, then
	// the summary.
	Output string `json:"-"`
	// Err is the command's error (nil when every request succeeded).
	Err error `json:"-"`
}

// GetEvent is one request of a `labserver get -events` run.
type GetEvent struct {
	T      float64 `json:"t"`
	Server string  `json:"s"`
}

// ParseGetResult reads the summary that `labserver get -json` prints last
// in out.
func ParseGetResult(out string) (GetResult, error) {
	var res GetResult
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := ""
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], `{"requests":`) {
			last = lines[i]
			break
		}
	}
	if err := json.Unmarshal([]byte(last), &res); err != nil || res.Requests == 0 {
		return res, fmt.Errorf("no summary in the output (%v)", err)
	}
	res.Output = out
	return res, nil
}

// Get runs `labserver get -url URL -n N -json args...` in ns: N sequential
// requests, each on a new connection. It fails the test only if the command
// did not run or printed no summary; the caller checks the counts.
func (l *Lab) Get(ns NS, bin Binaries, url string, n int, args ...string) GetResult {
	l.t.Helper()
	argv := append([]string{bin.Labserver, "get", "-url", url, "-n", fmt.Sprint(n), "-json"}, args...)
	// Generous: a request normally takes a millisecond; a first SYN dropped
	// while lvsd resolves a real server's MAC costs a retransmission (1 s).
	timeout := time.Minute + time.Duration(n)*100*time.Millisecond
	out, err := l.TryExec(ns, timeout, argv...)
	// The summary is the last line of stdout; stderr (merged in out) may
	// follow it.
	res, perr := ParseGetResult(out)
	if perr != nil {
		l.t.Fatalf("lab: %s: %v; command error: %v; output:\n%s", strings.Join(argv, " "), perr, err, tail(out, 16<<10))
	}
	res.Err = err
	return res
}

// Get runs labserver get from the topology's client namespace.
func (tp *Topology) Get(bin Binaries, url string, n int, args ...string) GetResult {
	tp.Lab.t.Helper()
	return tp.Lab.Get(tp.Client, bin, url, n, args...)
}

// UDPSend runs `labserver udp-send -addr ADDR -msg MSG` in ns and returns the
// echo it printed (its last line; earlier lines report retries). On failure
// the error holds the whole output.
func (l *Lab) UDPSend(ns NS, bin Binaries, addr, msg string) (string, error) {
	out, err := l.TryExec(ns, 30*time.Second, bin.Labserver, "udp-send", "-addr", addr, "-msg", msg)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1], nil
}

// Ping runs `ping -c COUNT -W 2 ADDR` in ns and returns its output.
func (l *Lab) Ping(ns NS, addr string, count int) (string, error) {
	return l.TryExec(ns, time.Duration(count)*3*time.Second+10*time.Second,
		"ping", "-n", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", addr)
}

// Neighbor returns the link address and state of addr in ns's neighbour
// table (`ip neigh show ADDR`), or two empty strings if it has no entry.
func (l *Lab) Neighbor(ns NS, addr string) (mac, state string) {
	l.t.Helper()
	out := strings.TrimSpace(l.IP(ns, "neigh", "show", addr))
	if out == "" {
		return "", ""
	}
	// 198.18.1.100 dev lvteth0 lladdr 02:00:5e:10:00:01 REACHABLE
	f := strings.Fields(strings.Split(out, "\n")[0])
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			mac = f[i+1]
		}
	}
	return mac, f[len(f)-1]
}

// HTTPClient returns an HTTP client whose connections are made from ns, one
// per request (no keep-alive), with a per-request timeout. URLs must use IP
// addresses.
func HTTPClient(ns NS, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       DialContext(ns),
			DisableKeepAlives: true,
			Proxy:             nil,
		},
	}
}

// KeepAlive is an HTTP client from a namespace that keeps one connection
// open across requests (HTTP keep-alive): the tests that follow one
// long-lived TCP connection through lvsd ask over it. Make one with
// Lab.KeepAlive.
type KeepAlive struct {
	c *http.Client
}

// KeepAlive returns a KeepAlive client from ns with a per-request timeout;
// its connection is closed at the lab's teardown (or by Close). At most one
// connection is open at a time: a request after a failed one dials anew.
func (l *Lab) KeepAlive(ns NS, timeout time.Duration) *KeepAlive {
	k := &KeepAlive{c: &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: DialContext(ns), MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, Proxy: nil}}}
	l.t.Cleanup(k.Close)
	return k
}

// Get asks url (an IP address, not a name) over the kept connection and
// returns the answering lab server's name and the client address it saw
// (its X-Lab-Server and X-Lab-Client headers), with the body read, so that
// the connection can carry the next request.
func (k *KeepAlive) Get(url string) (server, client string, err error) {
	resp, err := k.c.Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", "", err
	}
	return resp.Header.Get("X-Lab-Server"), resp.Header.Get("X-Lab-Client"), nil
}

// Close closes the idle connection.
func (k *KeepAlive) Close() { k.c.CloseIdleConnections() }
