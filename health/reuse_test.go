package health

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvsd/lvsd/config"
)

// connServer is an httptest server that counts the connections it accepted
// and those still open.
type connServer struct {
	*httptest.Server
	accepted, open atomic.Int64
	requests       atomic.Int64
	closed         chan struct{} // a token per connection closed
}

func newConnServer(t *testing.T, tls bool, h http.HandlerFunc) *connServer {
	return newConnServerIdle(t, tls, h, 0)
}

// newConnServerIdle is newConnServer with the server's idle timeout (0:
// none).
func newConnServerIdle(t *testing.T, tls bool, h http.HandlerFunc, idle time.Duration) *connServer {
	t.Helper()
	s := &connServer{closed: make(chan struct{}, 1000)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.accepted.Add(1)
			s.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.open.Add(-1)
			s.closed <- struct{}{}
		}
	}
	s.Config.IdleTimeout = idle
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *connServer) addr() netip.AddrPort {
	return netip.MustParseAddrPort(s.Listener.Addr().String())
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func okHandler(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }

func keptChecker(t *testing.T, c *config.Check, dst netip.AddrPort) *keptHTTP {
	t.Helper()
	c.ReuseConnection = true
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	ch, err := NewChecker(c, Target{Real: dst}, hostNet{})
	if err != nil {
		t.Fatal(err)
	}
	k, ok := ch.(*keptHTTP)
	if !ok {
		t.Fatalf("reuse_connection gave a %T", ch)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// One connection serves every check, over http and https, for a check of
// the status alone, of a body with Content-Length, and of a chunked body.
func TestReuseOneConnection(t *testing.T) {
	chunked := func(w http.ResponseWriter, _ *http.Request) {
		for range 3 {
			fmt.Fprintln(w, "part ok")
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
	}
	for _, tc := range []struct {
		name  string
		tls   bool
		check config.Check
		h     http.HandlerFunc
	}{
		{"http status", false, config.Check{Type: "http"}, okHandler},
		{"http contains, length", false, config.Check{Type: "http", Contains: "ok"}, okHandler},
		{"http status, chunked", false, config.Check{Type: "http"}, chunked},
		{"http regexp, chunked", false, config.Check{Type: "http", Regexp: "(?s)part ok.*part ok"}, chunked},
		{"https status", true, config.Check{Type: "https"}, okHandler},
		{"https digest", true, config.Check{Type: "https", Digest: md5hex("digest body")},
			func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "digest body") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newConnServer(t, tc.tls, tc.h)
			k := keptChecker(t, &tc.check, s.addr())
			ctx := context.Background()
			for i := range 5 {
				if r := k.Check(ctx); r.Err != nil {
					t.Fatalf("check %d: %v", i, r.Err)
				}
			}
			if got := s.accepted.Load(); got != 1 {
				t.Errorf("5 checks on %d connections, want 1", got)
			}
			if got := s.requests.Load(); got != 5 {
				t.Errorf("%d requests, want 5", got)
			}
		})
	}
}

// A server that closes its idle connections (its keep-alive timeout) fails
// no check: each check finds the kept connection closed and dials again.
func TestReuseServerClosesIdle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close func(s *connServer)
	}{
		{"idle timeout (FIN)", func(s *connServer) { time.Sleep(150 * time.Millisecond) }},
		{"reset", func(s *connServer) { s.CloseClientConnections() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newConnServerIdle(t, false, okHandler, 50*time.Millisecond)
			k := keptChecker(t, &config.Check{Type: "http", Fall: 1}, s.addr())
			for i := range 4 {
				if r := k.Check(context.Background()); r.Err != nil {
					t.Fatalf("check %d after the server closed the idle connection: %v", i, r.Err)
				}
				<-s.closedAfter(tc.close)
			}
			if got := s.accepted.Load(); got != 4 {
				t.Errorf("%d connections for 4 checks each after a close, want 4", got)
			}
		})
	}
}

// closedAfter runs close and returns a channel that is closed once the
// server saw a connection close.
func (s *connServer) closedAfter(close func(*connServer)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		close(s)
		select {
		case <-s.closed:
		case <-time.After(5 * time.Second):
		}
		// Let the FIN or RST reach the client's side.
		time.Sleep(10 * time.Millisecond)
		done <- struct{}{}
	}()
	return done
}

// A 408 Request Timeout on a kept connection is the server timing it out,
// not an answer: the check dials again and passes. On a new connection it
// fails the check.
func TestReuse408OnIdle(t *testing.T) {
	var n atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			first := n.Add(1) == 1
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for i := 0; ; i++ {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if first && i == 1 {
						c.Write([]byte("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
						return
					}
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"))
				}
			})
		}
	}()
	k := keptChecker(t, &config.Check{Type: "http"}, netip.MustParseAddrPort(ln.Addr().String()))
	for i := range 3 {
		if r := k.Check(context.Background()); r.Err != nil {
			t.Fatalf("check %d: %v", i, r.Err)
		}
	}
	if got := n.Load(); got != 2 {
		t.Errorf("%d connections, want 2 (one again after the 408)", got)
	}
	k.Close() // the server's goroutine ends with it
}

// A response with Connection: close ends the kept connection; a status
// outside the range fails the check and ends it too.
func TestReuseConnectionClose(t *testing.T) {
	var status atomic.Int64
	status.Store(200)
	s := newConnServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(int(status.Load()))
	})
	k := keptChecker(t, &config.Check{Type: "http", Path: "/close"}, s.addr())
	for i := range 3 {
		if r := k.Check(context.Background()); r.Err != nil {
			t.Fatalf("check %d: %v", i, r.Err)
		}
	}
	if got := s.accepted.Load(); got != 3 {
		t.Errorf("%d connections for 3 answers with Connection: close, want 3", got)
	}
	k2 := keptChecker(t, &config.Check{Type: "http"}, s.addr())
	status.Store(503)
	for i := range 2 {
		if r := k2.Check(context.Background()); r.Err == nil || !strings.Contains(r.Err.Error(), "status 503") {
			t.Fatalf("check %d of a 503: %v", i, r.Err)
		}
	}
	if got := s.accepted.Load(); got != 5 {
		t.Errorf("%d connections, want 5: a failed check ends its connection", got)
	}
}

// A connection serves checks for maxConnAge after its dial: then the next
// check dials, so a server that stops accepting is still found out.
func TestReuseMaxAge(t *testing.T) {
	s := newConnServer(t, false, okHandler)
	k := keptChecker(t, &config.Check{Type: "http"}, s.addr())
	now := time.Now()
	k.now = func() time.Time { return now }
	for range 3 {
		if r := k.Check(context.Background()); r.Err != nil {
			t.Fatal(r.Err)
		}
		now = now.Add(maxConnAge / 4)
	}
	if got := s.accepted.Load(); got != 1 {
		t.Fatalf("%d connections within maxConnAge, want 1", got)
	}
	now = now.Add(maxConnAge)
	if r := k.Check(context.Background()); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := s.accepted.Load(); got != 2 {
		t.Errorf("%d connections after maxConnAge, want 2", got)
	}
	<-s.closedAfter(func(*connServer) {}) // the old one was closed
}

// A server that stops answering on the kept connection fails at the
// timeout; the connection is dropped and the next check dials.
func TestReuseTimeout(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	s := newConnServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			<-release
		}
		okHandler(w, r)
	})
	defer close(release)
	k := keptChecker(t, &config.Check{Type: "http", Timeout: 200 * time.Millisecond}, s.addr())
	if r := k.Check(context.Background()); r.Err != nil {
		t.Fatal(r.Err)
	}
	hang.Store(true)
	start := time.Now()
	r := k.Check(context.Background())
	if r.Err == nil || !strings.Contains(r.Err.Error(), "deadline exceeded") {
		t.Fatalf("a server that does not answer: %v, want a timeout", r.Err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the check took %v, timeout 200ms", d)
	}
	if k.conn != nil {
		t.Error("the connection is kept after a timeout")
	}
	hang.Store(false)
	if r := k.Check(context.Background()); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := s.accepted.Load(); got != 2 {
		t.Errorf("%d connections, want 2", got)
	}
}

// A dead server is taken down within fall checks, as without reuse; and
// the monitor's end closes its kept connection.
func TestReuseServerDies(t *testing.T) {
	s := newConnServer(t, false, okHandler)
	c := &config.Check{Type: "http", Interval: 30 * time.Millisecond, Timeout: time.Second, Fall: 2, Rise: 1,
		Warmup: 10 * time.Millisecond, ReuseConnection: true}
	sink := newFakeSink()
	m := NewManager[string](sink, Options{Net: hostNet{}})
	m.Sync([]Spec[string]{{Key: "rs", Target: Target{Real: s.addr()}, Check: c}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	for {
		st, _ := m.Status("rs")
		if st.Checks >= 5 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.accepted.Load(); got != 1 {
		t.Errorf("%d connections for 5 checks, want 1", got)
	}
	s.Close() // listener and connections
	st0, _ := m.Status("rs")
	select {
	case call := <-sink.ch:
		if call.up {
			t.Fatalf("edge %+v, want down", call)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dead server is not taken down")
	}
	st, _ := m.Status("rs")
	// The check under way at the kill may pass; then fall failures.
	if n := st.Checks - st0.Checks; n > uint64(c.Fall)+1 {
		t.Errorf("down after %d checks, fall %d", n, c.Fall)
	}
	cancel()
	<-done
}

// The monitor's end closes the kept connection (its server sees the close).
func TestReuseMonitorStopCloses(t *testing.T) {
	s := newConnServer(t, false, okHandler)
	c := &config.Check{Type: "http", Interval: 20 * time.Millisecond, Timeout: time.Second, Fall: 1, Rise: 1,
		Warmup: 10 * time.Millisecond, ReuseConnection: true}
	m := NewManager[string](newFakeSink(), Options{Net: hostNet{}})
	m.Sync([]Spec[string]{{Key: "rs", Target: Target{Real: s.addr()}, Check: c}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	for st, _ := m.Status("rs"); st.Checks < 3; st, _ = m.Status("rs") {
		time.Sleep(10 * time.Millisecond)
	}
	if s.open.Load() != 1 {
		t.Fatalf("%d open connections, want 1", s.open.Load())
	}
	cancel()
	<-done
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the kept connection is still open after the monitor stopped")
	}
}

// A connection is bound to the context of the Check that dialled it: a
// Check with another context (another monitor's) dials its own.
func TestReuseOtherContextDials(t *testing.T) {
	s := newConnServer(t, false, okHandler)
	k := keptChecker(t, &config.Check{Type: "http"}, s.addr())
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	for i, ctx := range []context.Context{ctx1, ctx1, ctx2, ctx2} {
		if r := k.Check(ctx); r.Err != nil {
			t.Fatalf("check %d: %v", i, r.Err)
		}
	}
	if got := s.accepted.Load(); got != 2 {
		t.Errorf("%d connections for two contexts, want 2", got)
	}
}

// A new connection that the server closes before answering fails the
// check (no second dial), with a one-line error naming the step.
func TestReuseNewConnectionClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	k := keptChecker(t, &config.Check{Type: "http"}, netip.MustParseAddrPort(ln.Addr().String()))
	r := k.Check(context.Background())
	if r.Err == nil {
		t.Fatal("passed with a server that closes every connection")
	}
	if msg := r.Err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "http: ") {
		t.Errorf("error %q, want one line starting with http: ", msg)
	}
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections for one check, want 1", n)
	}
}
