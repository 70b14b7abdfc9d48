package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"time"

	"github.com/lvsd/lvsd/config"
)

// httpChecker is HTTP_GET and SSL_GET: a GET of one path whose status is in
// the expected ranges and whose body, when asked, has the MD5 digest,
// holds the substring or matches the regular expression. One connection
// per check (Connection: close), as keepalived. The request is written and
// the response read on the probe's own connection (no http.Transport, no
// pool, no goroutine per connection): a thousand checks a second cost
// little.
type httpChecker struct {
	net      Net
	dst      netip.AddrPort
	tls      *tls.Config // nil for http
	req      []byte      // the whole request, built once
	timeout  time.Duration
	status   []config.StatusRange
	digest   string
	contains []byte
	re       *regexp.Regexp
}

// maxHeader bounds the status line and headers of a response.
const maxHeader = 64 << 10

func newHTTPChecker(c *config.Check, dst netip.AddrPort, n Net) (*httpChecker, error) {
	h := &httpChecker{net: n, dst: dst, timeout: c.Timeout, status: c.Status, digest: c.Digest}
	if len(h.status) == 0 {
		h.status = config.DefaultStatus
	}
	if c.Contains != "" {
		h.contains = []byte(c.Contains)
	}
	if c.Regexp != "" {
		re, err := regexp.Compile(c.Regexp)
		if err != nil {
			return nil, fmt.Errorf("%w: regexp: %w", ErrConfig, err)
		}
		h.re = re
	}
	path := c.Path
	if path == "" {
		path = config.DefaultHTTPPath
	}
	host := c.Host
	if host == "" {
		host = dst.String()
		if dst.Addr().Is6() {
			host = netip.AddrPortFrom(dst.Addr(), dst.Port()).String()
		}
	}
	h.req = fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lvsd-health\r\nAccept: */*\r\nConnection: close\r\n\r\n", path, host)
	if c.Type == "https" {
		tc := &tls.Config{InsecureSkipVerify: true} // keepalived's SSL_GET does not verify
		tc.ServerName = c.SNI
		if tc.ServerName == "" {
			tc.ServerName = c.Host
		}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%w: ca_file: %w", ErrConfig, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: ca_file %s holds no PEM certificate", ErrConfig, c.CAFile)
			}
			tc.InsecureSkipVerify = false
			tc.RootCAs = pool
			if tc.ServerName == "" {
				// Verify the certificate against the address probed.
				tc.ServerName = dst.Addr().String()
			}
		}
		tc.NextProtos = []string{"http/1.1"}
		h.tls = tc
	}
	return h, nil
}

func (h *httpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, h.timeout)
	defer cancel()
	conn, err := h.net.DialTCP(ctx, h.dst)
	if err != nil {
		return fail("http: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// The context may end before the deadline (lvsd stops).
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if h.tls != nil {
		tc := tls.Client(conn, h.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail("http: tls: %w", err)
		}
		conn = tc
	}
	if _, err := conn.Write(h.req); err != nil {
		return fail("http: send: %w", err)
	}
	lr := &limitedReader{r: conn, n: maxHeader}
	br := bufio.NewReaderSize(lr, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fail("http: response: %w", err)
	}
	if !statusIn(resp.StatusCode, h.status) {
		return fail("http: status %d", resp.StatusCode)
	}
	if h.digest == "" && h.contains == nil && h.re == nil {
		return pass
	}
	// The body has its own limit, not the headers'.
	lr.n = MaxBody + 1
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return fail("http: body: %w", err)
	}
	if len(body) > MaxBody {
		return fail("http: body over %d bytes", MaxBody)
	}
	if h.digest != "" {
		sum := md5.Sum(body)
		if got := hex.EncodeToString(sum[:]); got != h.digest {
			return fail("http: digest %s, want %s", got, h.digest)
		}
	}
	if h.contains != nil && !bytes.Contains(body, h.contains) {
		return fail("http: body does not contain %q", h.contains)
	}
	if h.re != nil && !h.re.Match(body) {
		return fail("http: body does not match %q", h.re)
	}
	return pass
}

func statusIn(code int, rs []config.StatusRange) bool {
	for _, r := range rs {
		if code >= r.Lo && code <= r.Hi {
			return true
		}
	}
	return false
}

// limitedReader reads at most n more bytes from r, then fails: a server
// that sends endless headers is cut off.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errTooLong
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

var errTooLong = errors.New("response too long")
