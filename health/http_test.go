package health

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lvsd/lvsd/config"
)

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		code int // 0: malformed
	}{
		{"with reason", "HTTP/1.1 200 OK", 200},
		{"without reason", "HTTP/1.1 503", 503},
		{"HTTP/1.0", "HTTP/1.0 404 Not Found", 404},
		{"long reason", "HTTP/1.1 302 " + strings.Repeat("x", 500), 302},
		{"two-digit code", "HTTP/1.1 20 OK", 0},
		{"four-digit code", "HTTP/1.1 2000 OK", 0},
		{"no space", "HTTP/1.1200 OK", 0},
		{"not HTTP", "ICY 200 OK", 0},
		{"lower case", "http/1.1 200 OK", 0},
		{"letters in the code", "HTTP/1.1 2x0 OK", 0},
		{"empty", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := parseStatus([]byte(tc.line))
			if tc.code == 0 {
				if err == nil {
					t.Fatalf("%q: code %d, want an error", tc.line, code)
				}
				return
			}
			if err != nil || code != tc.code {
				t.Fatalf("%q: %d, %v; want %d", tc.line, code, err, tc.code)
			}
		})
	}
}

// failAfter fails the test if anything reads it: readStatus must stop at
// the end of the status line.
type failAfter struct{ t *testing.T }

func (f failAfter) Read([]byte) (int, error) {
	f.t.Error("read past the status line")
	return 0, io.EOF
}

func TestReadStatus(t *testing.T) {
	buf := make([]byte, 64)
	// One byte at a time, and nothing after the line is read.
	r := iotest.OneByteReader(io.MultiReader(strings.NewReader("HTTP/1.1 204 No Content\r\n"), failAfter{t}))
	if code, err := readStatus(r, buf); err != nil || code != 204 {
		t.Fatalf("readStatus: %d, %v; want 204", code, err)
	}
	// A bare LF ends the line too.
	if code, err := readStatus(strings.NewReader("HTTP/1.0 200 OK\nServer: x\n\n"), buf); err != nil || code != 200 {
		t.Fatalf("readStatus with LF: %d, %v; want 200", code, err)
	}
	if _, err := readStatus(strings.NewReader("HTTP/1.1 200 "+strings.Repeat("x", 100)+"\r\n"), buf); !errors.Is(err, errLongLine) {
		t.Fatalf("a line longer than the buffer: %v, want %v", err, errLongLine)
	}
	if _, err := readStatus(strings.NewReader("HTTP/1.1 200 OK"), buf); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("EOF before the line end: %v, want unexpected EOF", err)
	}
	if _, err := readStatus(iotest.ErrReader(errors.New("reset")), buf); err == nil || err.Error() != "reset" {
		t.Fatalf("a read error: %v, want it passed on", err)
	}
}

// The status-only path allocates nothing of its own per check: the line
// buffer comes from a pool.
func TestReadStatusAllocs(t *testing.T) {
	const line = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	var r strings.Reader
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(line)
		bp := lineBufs.Get().(*[]byte)
		code, err := readStatus(&r, *bp)
		lineBufs.Put(bp)
		if err != nil || code != 200 {
			t.Fatal(code, err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per status line, want 0", allocs)
	}
}

// A status-only check reads the status line and nothing more: a server
// that sends its status line and then nothing (never its headers' end)
// passes at once rather than at the timeout, as keepalived.
func TestHTTPCheckStatusLineOnly(t *testing.T) {
	c := &config.Check{Type: "http", Timeout: 5 * time.Second}
	ch, err := NewChecker(c, Target{Real: netip.MustParseAddrPort("192.0.2.11:80")}, replyNet{[]byte("HTTP/1.1 200 OK\r\nX-Slow: ")})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if r := ch.Check(context.Background()); r.Err != nil {
		t.Fatalf("check: %v", r.Err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("check took %v", d)
	}
	ch, _ = NewChecker(c, Target{Real: netip.MustParseAddrPort("192.0.2.11:80")}, replyNet{[]byte("HTTP/1.1 500 Oops\r\n\r\n")})
	if r := ch.Check(context.Background()); r.Err == nil || !strings.Contains(r.Err.Error(), "status 500") {
		t.Fatalf("a 500: %v, want status 500", r.Err)
	}
}

// FuzzStatusLine checks parseStatus against net/http: a line it accepts is
// one http.ReadResponse accepts, with the same code.
func FuzzStatusLine(f *testing.F) {
	f.Add("HTTP/1.1 200 OK")
	f.Add("HTTP/1.0 503")
	f.Add("HTTP/2.0 200 OK")
	f.Add("HTTP/1.1 99 x")
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\r\n") {
			return
		}
		code, err := parseStatus([]byte(line))
		if err != nil {
			return
		}
		resp, herr := http.ReadResponse(bufio.NewReader(strings.NewReader(line+"\r\n\r\n")), nil)
		if herr != nil {
			t.Fatalf("%q: code %d, but net/http: %v", line, code, herr)
		}
		if resp.StatusCode != code {
			t.Fatalf("%q: code %d, net/http %d", line, code, resp.StatusCode)
		}
	})
}
