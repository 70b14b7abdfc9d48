package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/lvsd/lvsd/capture"
)

// Tracer is a Source that can trace frames (the director).
type Tracer interface {
	// StartTrace arms a trace of the next n frames matching filter
	// (capture.ParseFilter's syntax).
	StartTrace(filter string, n int) (TraceSession, error)
}

// TraceSession is a trace in progress.
type TraceSession interface {
	// Next waits for the next traced frame's explanation.
	Next(ctx context.Context) (string, error)
	// Stop disarms the trace.
	Stop()
}

// PacketTracer is a Source that can explain a described packet (the
// director).
type PacketTracer interface {
	// TracePacket builds the packet p describes, runs it through the
	// fast path's decisions without committing any (no connection,
	// template or scheduler state changes) and explains them. An error
	// of type *PacketError is the caller's (an unknown interface, a
	// packet that cannot be built).
	TracePacket(p PacketDesc) (string, error)
}

// handleTrace serves POST /v1/trace?filter=F&count=N&timeout=D: it
// writes the explanation of each of the next N frames matching F as it
// comes, and ends after N frames, after D (default 60 s), when lvsd stops
// or when the client goes away; the trace is then disarmed.
//
// With packet=DESC instead (ParsePacket's syntax), it writes the
// explanation of the described packet, which lvsd builds and does not
// forward.
func handleTrace(ctx context.Context, mux *http.ServeMux, src Source) {
	ts, ok := src.(Tracer)
	if !ok {
		return
	}
	mux.HandleFunc("POST /v1/trace", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Has("packet") {
			tracePacket(w, src, q.Get("packet"))
			return
		}
		n := 1
		if v := q.Get("count"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				http.Error(w, fmt.Sprintf("count %q: not a number", v), http.StatusBadRequest)
				return
			}
		}
		if n < 1 || n > 1000 {
			http.Error(w, fmt.Sprintf("count %d: not in 1..1000", n), http.StatusBadRequest)
			return
		}
		timeout := time.Minute
		if v := q.Get("timeout"); v != "" {
			var err error
			if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 {
				http.Error(w, fmt.Sprintf("timeout %q: not a duration", v), http.StatusBadRequest)
				return
			}
		}
		sess, err := ts.StartTrace(q.Get("filter"), n)
		if err != nil {
			var fe *capture.FilterError
			code := http.StatusConflict
			if errors.As(err, &fe) {
				code = http.StatusBadRequest
			}
			http.Error(w, err.Error(), code)
			return
		}
		defer sess.Stop()
		tctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		go func() {
			select {
			case <-ctx.Done():
				cancel()
			case <-tctx.Done():
			}
		}()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		rc.Flush()
		for range n {
			s, err := sess.Next(tctx)
			if err != nil {
				fmt.Fprintf(w, "trace ended: %v\n", err)
				return
			}
			if _, err := io.WriteString(w, s); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	})
}

// Trace asks the lvsd at path for a trace; the explanations are copied to
// out as they come.
func Trace(ctx context.Context, path, filter string, n int, timeout time.Duration, out io.Writer) error {
	q := url.Values{}
	q.Set("filter", filter)
	q.Set("count", strconv.Itoa(n))
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	err := postTrace(ctx, path, q, out)
	if ctx.Err() != nil {
		return nil // the caller ended a live trace: not an error
	}
	return err
}

// postTrace posts a trace request with the query q to the lvsd at path and
// copies the answer to out. A refused request (400) is a BadRequestError.
func postTrace(ctx context.Context, path string, q url.Values, out io.Writer) error {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://lvsd/v1/trace?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("trace at %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusBadRequest {
			return &BadRequestError{Msg: string(trimNL(b))}
		}
		return fmt.Errorf("trace at %s: %s: %s", path, resp.Status, trimNL(b))
	}
	_, err = io.Copy(out, resp.Body)
	return err
}
