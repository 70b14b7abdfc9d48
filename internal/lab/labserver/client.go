package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// summary is what `get -json` prints last, on one line. internal/lab's
// GetResult decodes it: keep the JSON names in step.
type summary struct {
	Requests int            `json:"requests"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	Servers  map[string]int `json:"servers"`
	Clients  map[string]int `json:"clients"`
	Errors   []string       `json:"errors,omitempty"`
	// Events, with -events, is every request's outcome in order: its start
	// in seconds since the first and the answering server ("" failed).
	Events []event `json:"events,omitempty"`
}

type event struct {
	T float64 `json:"t"`
	S string  `json:"s"`
}

// maxErrors caps summary.Errors.
const maxErrors = 10

func runGet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("labserver get", flag.ContinueOnError)
	url := fs.String("url", "", "URL to request (required)")
	n := fs.Int("n", 1, "number of sequential requests")
	closeConns := fs.Bool("close", true, "one TCP connection per request (no keep-alive); -close=false reuses connections")
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of each request")
	upload := fs.Int64("upload", -1, "POST this many bytes instead of GET (to /upload)")
	asJSON := fs.Bool("json", false, "print a JSON summary as the last line")
	rate := fs.Float64("rate", 0, "start requests at this rate per second (0: back to back)")
	events := fs.Bool("events", false, "with -json, list every request's time and server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *n < 1 {
		return errors.New("need -url and -n >= 1")
	}
	client := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: *closeConns,
			DialContext:       (&net.Dialer{Timeout: *timeout}).DialContext,
		},
	}
	sum := summary{Servers: map[string]int{}, Clients: map[string]int{}}
	begin := time.Now()
	for i := 1; i <= *n && ctx.Err() == nil; i++ {
		if *rate > 0 {
			// Paced: request i starts at (i-1)/rate, or at once when late.
			at := begin.Add(time.Duration(float64(i-1) / *rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		sum.Requests++
		t := time.Since(begin).Seconds()
		line, server, clientAddr, err := request(ctx, client, *url, *upload)
		if *events {
			s := server
			if err != nil {
				s = ""
			}
			sum.Events = append(sum.Events, event{T: t, S: s})
		}
		if err != nil {
			sum.Failed++
			if len(sum.Errors) < maxErrors {
				sum.Errors = append(sum.Errors, fmt.Sprintf("request %d: %v", i, err))
			}
			fmt.Printf("%d error: %v\n", i, err)
			continue
		}
		sum.OK++
		sum.Servers[server]++
		if host, _, err := net.SplitHostPort(clientAddr); err == nil {
			sum.Clients[host]++
		} else {
			sum.Clients[clientAddr]++
		}
		fmt.Printf("%d %s\n", i, line)
	}
	if *asJSON {
		b, _ := json.Marshal(sum)
		fmt.Printf("%s\n", b)
	} else {
		fmt.Fprintf(os.Stderr, "%d requests: %d ok, %d failed; per server: %v\n", sum.Requests, sum.OK, sum.Failed, sum.Servers)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if sum.Failed > 0 {
		return fmt.Errorf("%d of %d requests failed", sum.Failed, sum.Requests)
	}
	return nil
}

// request makes one request and returns the line to print, the answering
// server's name and the client address it saw.
func request(ctx context.Context, client *http.Client, url string, upload int64) (line, server, clientAddr string, err error) {
	method, body := http.MethodGet, io.Reader(nil)
	if upload >= 0 {
		method, body = http.MethodPost, io.LimitReader(zeros{}, upload)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return "", "", "", err
	}
	if upload >= 0 {
		req.ContentLength = upload
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return "", "", "", err
	}
	defer resp.Body.Close()
	// Keep a short prefix to print; count the rest.
	head := make([]byte, 256)
	k, err := io.ReadFull(resp.Body, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", "", "", fmt.Errorf("read body: %w", err)
	}
	rest, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return "", "", "", fmt.Errorf("read body after %d bytes: %w", int64(k)+rest, err)
	}
	total := int64(k) + rest
	if resp.StatusCode != http.StatusOK {
		return "", "", "", fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(head[:k])))
	}
	if resp.ContentLength >= 0 && resp.ContentLength != total {
		return "", "", "", fmt.Errorf("body has %d bytes, Content-Length %d", total, resp.ContentLength)
	}
	server, clientAddr = resp.Header.Get(headerServer), resp.Header.Get(headerClient)
	if server == "" {
		// Not a lab server: take "<name> <client>" from the body.
		if f := strings.Fields(string(head[:k])); len(f) >= 2 {
			server, clientAddr = f[0], f[1]
		}
	}
	if upload >= 0 {
		f := strings.Fields(string(head[:k]))
		if len(f) < 3 || f[2] != strconv.FormatInt(upload, 10) {
			return "", "", "", fmt.Errorf("upload of %d bytes: server answered %q", upload, strings.TrimSpace(string(head[:k])))
		}
	}
	line = fmt.Sprintf("%s %s", server, clientAddr)
	switch {
	case upload >= 0:
		line += fmt.Sprintf(" (sent %d bytes in %v)", upload, time.Since(start).Round(time.Microsecond))
	case total > int64(len(head)):
		line += fmt.Sprintf(" (received %d bytes in %v)", total, time.Since(start).Round(time.Microsecond))
	}
	return line, server, clientAddr, nil
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func runUDPSend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("labserver udp-send", flag.ContinueOnError)
	addr := fs.String("addr", "", "HOST:PORT to send to (required)")
	msg := fs.String("msg", "hello", "message")
	timeout := fs.Duration("timeout", time.Second, "wait for the echo this long per try")
	tries := fs.Int("tries", 5, "send at most this many times")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		return errors.New("need -addr")
	}
	c, err := net.Dial("udp", *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 65536)
	var lastErr error
	for try := 1; try <= *tries && ctx.Err() == nil; try++ {
		if _, err := c.Write([]byte(*msg)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(*timeout))
		n, err := c.Read(buf)
		if err != nil {
			// A timeout, or an ICMP error (connection refused) while the
			// path comes up: try again.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("no echo within %v", *timeout)
			}
			fmt.Fprintf(os.Stderr, "try %d: %v\n", try, err)
			lastErr = err
			if !sleepCtx(ctx, *timeout/4) {
				break
			}
			continue
		}
		fmt.Printf("%s\n", buf[:n])
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("no echo from %s after %d tries: %w", *addr, *tries, lastErr)
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
