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
	"sync"
	"time"

	"github.com/lvsd/lvsd/config"
)

// httpChecker is HTTP_GET and SSL_GET: a GET of one path whose status is in
// the expected ranges and whose body, when asked, has the MD5 digest,
// holds the substring or matches the regular expression. One connection
// per check (Connection: close, then a RST), as keepalived. The request is
// written and the response read on the probe's own connection (no
// http.Transport, no pool, no goroutine per connection); a check of the
// status alone reads the status line only, into a pooled buffer, and
// allocates almost nothing of its own (docs/health.md has the figures).
type httpChecker struct {
	net      Net
	dst      netip.AddrPort
	tls      *tls.Config // nil for http
	req      []byte      // the whole request, built once
	keepReq  []byte      // the same without Connection: close (reuse_connection)
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
	h.keepReq = fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lvsd-health\r\nAccept: */*\r\n\r\n", path, host)
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
	// The connection is bound to ctx (see Net): no deadline to set. It
	// ends with a RST, also under TLS (no close_notify), as keepalived's
	// checks end.
	defer conn.Close()
	if h.tls != nil {
		tc := tls.Client(conn, h.tls)
		// Handshake, not HandshakeContext, which starts a goroutine to
		// watch ctx: the connection's own calls end with ctx.
		if err := tc.Handshake(); err != nil {
			return fail("http: tls: %w", err)
		}
		conn = tc
	}
	if _, err := conn.Write(h.req); err != nil {
		return fail("http: send: %w", err)
	}
	if h.digest == "" && h.contains == nil && h.re == nil {
		// Only the status matters, as keepalived's HTTP_GET without a
		// digest: read the status line and stop there.
		bp := lineBufs.Get().(*[]byte)
		code, err := readStatus(conn, *bp)
		lineBufs.Put(bp)
		if err != nil {
			return fail("http: response: %w", err)
		}
		if !statusIn(code, h.status) {
			return fail("http: status %d", code)
		}
		return pass
	}
	lr := &limitedReader{r: conn, n: maxHeader}
	br := bufio.NewReaderSize(lr, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fail("http: response: %w", err)
	}
	r, _ := h.judge(resp, lr)
	return r
}

// judge decides a check from resp, read through lr (whose limit it sets
// for the body): the status, then the body when a digest, a substring or
// a regular expression needs it. read is true when the body was read to
// its end (the connection may carry another request).
func (h *httpChecker) judge(resp *http.Response, lr *limitedReader) (r Result, read bool) {
	if !statusIn(resp.StatusCode, h.status) {
		return fail("http: status %d", resp.StatusCode), false
	}
	if h.digest == "" && h.contains == nil && h.re == nil {
		return pass, false
	}
	// The body has its own limit, not the headers'.
	lr.n = MaxBody + 1
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return fail("http: body: %w", err), false
	}
	if len(body) > MaxBody {
		return fail("http: body over %d bytes", MaxBody), false
	}
	if h.digest != "" {
		sum := md5.Sum(body)
		if got := hex.EncodeToString(sum[:]); got != h.digest {
			return fail("http: digest %s, want %s", got, h.digest), true
		}
	}
	if h.contains != nil && !bytes.Contains(body, h.contains) {
		return fail("http: body does not contain %q", h.contains), true
	}
	if h.re != nil && !h.re.Match(body) {
		return fail("http: body does not match %q", h.re), true
	}
	return pass, true
}

// maxStatusLine bounds the status line of a check that reads only it.
const maxStatusLine = 4096

// lineBufs holds the buffers status lines are read into (*[]byte of
// maxStatusLine bytes); a buffer is the reading probe's until it puts it
// back.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, maxStatusLine); return &b }}

var (
	errStatusLine = errors.New("malformed status line")
	errLongLine   = errors.New("status line too long")
)

// readStatus reads from r, into buf, up to the end of the first line, and
// returns the status code of that line: "HTTP/" major "." minor, a space,
// three digits, then a space and a reason phrase or nothing. What follows
// the line is not read. A line longer than buf fails.
func readStatus(r io.Reader, buf []byte) (int, error) {
	n := 0
	for {
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return parseStatus(bytes.TrimSuffix(buf[:i], []byte("\r")))
		}
		if n == len(buf) {
			return 0, errLongLine
		}
		m, err := r.Read(buf[n:])
		n += m
		if err != nil && m == 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

// parseStatus returns the code of a status line (without its line end).
func parseStatus(line []byte) (int, error) {
	// "HTTP/1.1 200" is the shortest.
	if len(line) < 12 || string(line[:5]) != "HTTP/" || !isDigit(line[5]) || line[6] != '.' || !isDigit(line[7]) ||
		line[8] != ' ' || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) || (len(line) > 12 && line[12] != ' ') {
		return 0, errStatusLine
	}
	return int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0'), nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

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
