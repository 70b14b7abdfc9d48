package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// restartFlows is the number of keep-alive connections TestRestartSloppy
// follows across a kill -9 and restart of lvsd.
const restartFlows = 48

// keepConn is one HTTP/1.1 keep-alive connection from the client namespace
// to the VIP, written and read by hand so that a broken connection is an
// error and never a silent redial (as http.Transport's retry would be).
type keepConn struct {
	c      net.Conn
	r      *bufio.Reader
	server string // the real server that answered the first request
}

// openKeepConns opens n kept-alive connections to the VIP's port 80 with
// dial and asks one request on each; it returns them (closed when t ends)
// and how many each real server answered. when names the moment in a
// failure's message.
func openKeepConns(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error), n int, when string) ([]*keepConn, map[string]int) {
	t.Helper()
	conns := make([]*keepConn, 0, n)
	t.Cleanup(func() {
		for _, k := range conns {
			k.c.Close()
		}
	})
	servers := map[string]int{}
	for range n {
		c, err := dial(t.Context(), "tcp", lab.VIP.String()+":80")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		k := &keepConn{c: c, r: bufio.NewReader(c)}
		conns = append(conns, k)
		if k.server, err = k.ask(5 * time.Second); err != nil {
			t.Fatalf("request %s: %v", when, err)
		}
		servers[k.server]++
	}
	return conns, servers
}

// ask sends one request on the connection and returns the real server that
// answered.
func (k *keepConn) ask(timeout time.Duration) (string, error) {
	k.c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: lvsd\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return resp.Header.Get("X-Lab-Server"), nil
}

// kill9 kills lvsd (its process group) with SIGKILL, as a crash would, and
// waits until it is gone: no cleanup of its own runs.
func kill9(t *testing.T, p *lab.Proc) {
	t.Helper()
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 lvsd: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if exited, _ := p.Exited(); exited {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("lvsd still running 5 s after SIGKILL")
		}
	}
}

// TestRestartSloppy measures the share of established NAT flows that
// continue when lvsd is killed with SIGKILL and started again without its
// connection table: restartFlows HTTP keep-alive connections, each asked
// once before the kill and once after the restart on the same socket, and
// one download in progress across it. A flow continues when its request
// after the restart is answered by the same real server on the same
// connection.
//
// With sloppy_tcp, the first segment of each flow after the restart is
// scheduled: maglev (mh with mh-port, hashing the client's address and
// port) sends it back to its real server, and every flow continues; rr
// sends most flows elsewhere, where the real server, which has no such
// socket, resets them. Without sloppy_tcp the netstack resets every flow.
// The shares are logged and stated in docs/conntrack.md.
func TestRestartSloppy(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)

	tests := []struct {
		name      string
		sched     string
		extra     []string
		sloppy    bool
		min, max  int // bounds on the flows (of restartFlows) that continue
		transfers bool
	}{
		{name: "sloppy mh", sched: "mh", extra: []string{`scheduler_flags = ["mh-port"]`}, sloppy: true, min: restartFlows, max: restartFlows, transfers: true},
		// rr after a restart gives each flow its old server about one time
		// in three; the bounds leave room for chance.
		{name: "sloppy rr", sched: "rr", sloppy: true, min: 1, max: restartFlows * 2 / 3},
		{name: "no sloppy mh", sched: "mh", extra: []string{`scheduler_flags = ["mh-port"]`}, sloppy: false, min: 0, max: 0},
	}
	// Each case's flows come from a client address of their own: a flow of
	// an earlier case that a restart cut off leaves its socket established
	// on its real server, and a new flow on the same client port would meet
	// that socket's challenge ACKs instead of a SYN-ACK.
	clients := tp.AddClientAddrs(len(tests) - 1)
	for i, tt := range tests {
		dial := lab.DialContextFrom(tp.Client, clients[i])
		t.Run(tt.name, func(t *testing.T) {
			tp.Globals = []string{"[sysctl]", fmt.Sprintf("sloppy_tcp = %t", tt.sloppy)}
			svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: tt.sched, Method: "nat", Extra: tt.extra}
			p := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)

			conns, servers := openKeepConns(t, dial, restartFlows, "before the restart")
			t.Logf("before the restart: %d flows on %v", restartFlows, servers)

			// Transfers in progress across the restart, paced so that
			// they are mid-flow when lvsd dies: an upload, whose client
			// keeps sending, and a download, whose client only
			// acknowledges.
			const size = 32 << 20
			upDone, downDone := make(chan error, 1), make(chan error, 1)
			if tt.transfers {
				up, err := dial(t.Context(), "tcp", lab.VIP.String()+":80")
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer up.Close()
				down, err := dial(t.Context(), "tcp", lab.VIP.String()+":80")
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer down.Close()
				go func() { upDone <- slowUpload(up, size) }()
				go func() { downDone <- slowDownload(down, size) }()
				time.Sleep(300 * time.Millisecond)
			}

			kill9(t, p)
			p = tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
			defer p.Stop()

			// Flows resume in an order of their own, not the one in which
			// they were scheduled (with rr, the same order would make the
			// shares all or nothing).
			kept := 0
			var lost []string
			for _, i := range rand.Perm(len(conns)) {
				k := conns[i]
				got, err := k.ask(5 * time.Second)
				switch {
				case err == nil && got == k.server:
					kept++
				case err == nil:
					lost = append(lost, fmt.Sprintf("flow %d: answered by %s, was %s", i, got, k.server))
				default:
					lost = append(lost, fmt.Sprintf("flow %d (%s): %v", i, k.server, err))
				}
			}
			t.Logf("%s: %d of %d established flows continued after kill -9 and restart (%.0f%%)",
				tt.name, kept, restartFlows, 100*float64(kept)/restartFlows)
			if kept < tt.min || kept > tt.max {
				t.Errorf("%d flows continued, want %d to %d; lost:\n%s", kept, tt.min, tt.max, strings.Join(lost, "\n"))
			}
			if tt.transfers {
				if err := <-upDone; err != nil {
					t.Errorf("upload across the restart: %v", err)
				} else {
					t.Logf("%s: a %d MiB upload across the restart completed", tt.name, size>>20)
				}
				// A download whose client had nothing to send while lvsd
				// was down stays stalled: the real server's retransmissions
				// match no connection, and sloppy_tcp schedules only the
				// client's segments, as in IPVS. Whether the client's
				// window updates fell in the outage is timing, so the
				// outcome is logged, not required (docs/conntrack.md).
				if err := <-downDone; err != nil {
					t.Logf("%s: the download across the restart did not continue: %v", tt.name, err)
				} else {
					t.Logf("%s: the download across the restart completed", tt.name)
				}
			}
			if err := p.Stop(); err != nil {
				t.Error(err)
			}
		})
	}
}

// slowUpload posts size bytes to /upload on c at about 16 MiB/s and checks
// that the real server received them all.
func slowUpload(c net.Conn, size int) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: lvsd\r\nContent-Length: %d\r\n\r\n", size); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	for n := 0; n < size; n += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", n, size, err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(strings.TrimSpace(string(body)), fmt.Sprintf(" %d", size)) {
		return fmt.Errorf("server answered %q, want %d bytes received", body, size)
	}
	return nil
}

// slowDownload fetches /bytes?n=size on c and reads the body at about
// 16 MiB/s, checking its length.
func slowDownload(c net.Conn, size int) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /bytes?n=%d HTTP/1.1\r\nHost: lvsd\r\n\r\n", size); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf := make([]byte, 256<<10)
	n := 0
	for {
		m, err := resp.Body.Read(buf)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", n, size, err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	if n != size {
		return fmt.Errorf("got %d bytes, want %d", n, size)
	}
	return nil
}
