package health

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
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
// per check (no keep-alive), as keepalived.
type httpChecker struct {
	client   *http.Client
	url      string
	host     string
	timeout  time.Duration
	status   []config.StatusRange
	digest   string
	contains []byte
	re       *regexp.Regexp
}

func newHTTPChecker(c *config.Check, dst netip.AddrPort, n Net) (*httpChecker, error) {
	h := &httpChecker{host: c.Host, timeout: c.Timeout, status: c.Status, digest: c.Digest}
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
	tr := &http.Transport{
		// Every connection leaves from the netstack, whatever the URL says.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return n.DialTCP(ctx, dst)
		},
		DisableKeepAlives:  true,
		DisableCompression: true,
		// Headers are bounded too: a server sending endless headers fails.
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      false,
	}
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
		tr.TLSClientConfig = tc
		// No HTTP/2: one request, one connection, closed after.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	scheme := "http"
	if c.Type == "https" {
		scheme = "https"
	}
	h.url = scheme + "://" + dst.String() + path
	h.client = &http.Client{
		Transport: tr,
		// A redirect is an answer, judged by its status like any other.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h, nil
}

func (h *httpChecker) Check(ctx context.Context) Result {
	ctx, cancel := withTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return fail("http: %w", err)
	}
	if h.host != "" {
		req.Host = h.host
	}
	req.Header.Set("User-Agent", "lvsd-health")
	resp, err := h.client.Do(req)
	if err != nil {
		return fail("http: %w", err)
	}
	defer resp.Body.Close()
	if !statusIn(resp.StatusCode, h.status) {
		return fail("http: status %d", resp.StatusCode)
	}
	if h.digest == "" && h.contains == nil && h.re == nil {
		return pass
	}
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
