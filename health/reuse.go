package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/lvsd/lvsd/config"
)

// An http or https check with reuse_connection keeps its connection to the
// server open between checks and sends each GET on it (HTTP/1.1 keep-alive),
// as Envoy's health checker does by default (its reuse_connection). What a
// check decides is what the check on a connection of its own decides:
//   - the kept connection is one the server may have closed while idle (its
//     keep-alive timeout, a restart): when it fails before the response's
//     first byte (a write error, EOF, a RST), or answers 408 Request
//     Timeout, the check dials a new connection at once and decides on it,
//     within the same timeout;
//   - any failure, a response with Connection: close (or an HTTP/1.0
//     answer without keep-alive), a body that cannot be read to its end
//     within MaxBody, bytes after the response, or the timeout end the
//     connection: the next check dials;
//   - a connection is used for checks for maxConnAge after its dial, then
//     the next check dials a new one, so that a server that stops
//     accepting connections (a full backlog, a firewall rule for new
//     connections) while it still answers on an old one fails within
//     maxConnAge plus its fall.

// maxConnAge is how long a kept connection serves checks after its dial.
const maxConnAge = 30 * time.Second

// keptHTTP is an httpChecker that keeps its connection between checks.
// It is used by its monitor's goroutine only (Checker's contract), which
// calls Close when the monitor stops.
type keptHTTP struct {
	h   *httpChecker
	req []byte // the request, without Connection: close

	// conn is the kept connection (a *tls.Conn over raw for https), nil
	// between connections; raw is the Net's connection under it, which
	// Close ends with a RST.
	conn, raw net.Conn
	// done is the Done channel of the context of the Check that dialled
	// conn: conn is bound to a child of that context (cancel ends the
	// child); a Check with another context dials anew. (A channel rather
	// than the context: any context compares safely by its channel.)
	done   <-chan struct{}
	cancel context.CancelFunc
	// timer cancels conn's context at a check's timeout; fired is set
	// (by the check, from Stop's result) once it did, and the connection
	// is then dead.
	timer *time.Timer
	// br reads conn, through lr, which bounds each response.
	br      *bufio.Reader
	lr      limitedReader
	dialled time.Time
	// now is the clock of maxConnAge (time.Now; tests move it).
	now func() time.Time
}

func newKeptHTTP(h *httpChecker) *keptHTTP {
	return &keptHTTP{h: h, req: h.keepReq, now: time.Now}
}

// errIdle408 is a 408 Request Timeout on a kept connection: the server
// timed the idle connection out.
var errIdle408 = errors.New("response: 408 on a kept connection")

func (k *keptHTTP) Check(ctx context.Context) Result {
	timeout := k.h.timeout
	if timeout <= 0 {
		timeout = config.DefaultCheckTimeout
	}
	deadline := k.now().Add(timeout)
	if k.conn != nil && (k.done != ctx.Done() || k.now().Sub(k.dialled) >= maxConnAge) {
		k.Close()
	}
	if k.conn != nil {
		r, err := k.exchange(timeout, true)
		if err == nil {
			return r
		}
		// Stale: dial again within what is left of the timeout.
		k.Close()
		if timeout = deadline.Sub(k.now()); timeout <= 0 {
			return fail("http: %w", context.DeadlineExceeded)
		}
	}
	if r, ok := k.dial(ctx, timeout); !ok {
		return r
	}
	if timeout = deadline.Sub(k.now()); timeout <= 0 {
		k.Close()
		return fail("http: %w", context.DeadlineExceeded)
	}
	r, err := k.exchange(timeout, false)
	if err != nil {
		// A new connection has no stale state: what ended it is the
		// server's doing, and fails the check.
		k.Close()
		return fail("http: %w", err)
	}
	return r
}

// dial opens a new kept connection within timeout (the TLS handshake
// included); it returns false and the check's failure when it cannot.
func (k *keptHTTP) dial(ctx context.Context, timeout time.Duration) (Result, bool) {
	cctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(timeout, cancel)
	conn, err := k.h.net.DialTCP(cctx, k.h.dst)
	if err != nil {
		timer.Stop()
		cancel()
		return fail("http: %w", timeoutErr(err, cctx)), false
	}
	k.conn, k.raw, k.done, k.cancel, k.timer = conn, conn, ctx.Done(), cancel, timer
	k.dialled = k.now()
	if k.h.tls != nil {
		tc := tls.Client(conn, k.h.tls)
		// The raw connection is bound to cctx, which the timer cancels:
		// Handshake needs no context of its own.
		if err := tc.Handshake(); err != nil {
			k.Close()
			return fail("http: tls: %w", timeoutErr(err, cctx)), false
		}
		k.conn = tc
	}
	k.lr = limitedReader{r: k.conn}
	if k.br == nil {
		k.br = bufio.NewReaderSize(&k.lr, 4096)
	} else {
		k.br.Reset(&k.lr)
	}
	return pass, true
}

// exchange sends the request on the kept connection and judges the
// response, within timeout. It returns a non-nil error (and closes
// nothing) only when the connection ended before the response began: the
// caller may dial again. Otherwise the result is the check's, and the
// connection is kept only when it may carry the next request.
func (k *keptHTTP) exchange(timeout time.Duration, reused bool) (Result, error) {
	k.timer.Reset(timeout)
	r, keep, err := k.roundTrip(reused)
	if !k.timer.Stop() {
		// The timeout fired (or is firing): the connection's context is
		// cancelled, whatever the result.
		keep = false
		if r.Err != nil || err != nil {
			r, err = fail("http: response: %w", context.DeadlineExceeded), nil
		}
	}
	if !keep && err == nil {
		k.Close()
	}
	return r, err
}

// roundTrip writes the request and reads the response. keep is true when
// the connection may carry another request; err is not nil (and names the
// step) when the connection ended before the response began. reused is
// true when the connection carried an earlier request.
func (k *keptHTTP) roundTrip(reused bool) (r Result, keep bool, err error) {
	if _, err := k.conn.Write(k.req); err != nil {
		return Result{}, false, fmt.Errorf("send: %w", err)
	}
	k.lr.n = maxHeader
	if _, err := k.br.Peek(1); err != nil {
		return Result{}, false, fmt.Errorf("response: %w", err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return fail("http: response: %w", err), false, nil
	}
	if resp.StatusCode == http.StatusRequestTimeout && reused {
		// The server timed the idle connection out and said so before
		// closing it (as net/http's Transport, take it as a closed idle
		// connection, not as the answer to this request).
		return Result{}, false, errIdle408
	}
	r, read := k.h.judge(resp, &k.lr)
	if r.Err != nil {
		return r, false, nil
	}
	if !read {
		// A status-only check judges the status line alone, as on a
		// connection of its own; the body is read only to reuse the
		// connection, which ends when it cannot be.
		k.lr.n = MaxBody + 1
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBody+1))
		if err != nil || n > MaxBody {
			return r, false, nil
		}
	}
	// A response ends at its length, its last chunk or the connection's
	// end; anything after it is not an answer to a request of ours.
	return r, !resp.Close && k.br.Buffered() == 0, nil
}

// Close ends the kept connection, if any, with a RST. The monitor calls
// it when it stops; Check calls it for a connection it drops.
func (k *keptHTTP) Close() error {
	if k.conn == nil {
		return nil
	}
	k.timer.Stop()
	k.cancel()
	k.raw.Close()
	k.conn, k.raw, k.done, k.cancel, k.timer = nil, nil, nil, nil, nil
	return nil
}

// timeoutErr is err, or context.DeadlineExceeded when ctx was cancelled
// (by the check's timer: the check timed out).
func timeoutErr(err error, ctx context.Context) error {
	if ctx.Err() != nil {
		return context.DeadlineExceeded
	}
	return err
}
