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

// Capturer is a Source that can capture frames (the director).
type Capturer interface {
	// StartCapture arms a capture on every interface and returns it with
	// the function that disarms it.
	StartCapture(capture.Options) (*capture.Capture, func(), error)
}

// ErrCaptureBusy is a Capturer's answer while another capture runs: wait
// for it to end.
var ErrCaptureBusy = errors.New("another capture is running")

// Trailers of a capture response: the frames written and missed.
const (
	TrailerWritten = "Lvsd-Capture-Written"
	TrailerMissed  = "Lvsd-Capture-Missed"
	TrailerError   = "Lvsd-Capture-Error"
)

// CaptureParams are a capture request's parameters.
type CaptureParams struct {
	Filter   string        // capture.ParseFilter's syntax; "" for every frame
	Duration time.Duration // 0: until the client goes away
	SnapLen  int           // 0: the default
}

// handleCapture serves POST /v1/capture when src can capture: it streams
// pcapng (capture.Capture.WriteTo) until the duration ends, lvsd stops or
// the client goes away (its connection closes, a write fails); then the
// capture is disarmed. A filter that does not parse is a 400 naming the
// word; a second capture while one runs is a 409.
func handleCapture(ctx context.Context, mux *http.ServeMux, src Source) {
	cs, ok := src.(Capturer)
	if !ok {
		return
	}
	mux.HandleFunc("POST /v1/capture", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f, err := capture.ParseFilter(q.Get("filter"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var dur time.Duration
		if v := q.Get("duration"); v != "" {
			if dur, err = time.ParseDuration(v); err != nil || dur < 0 {
				http.Error(w, fmt.Sprintf("duration %q: not a duration", v), http.StatusBadRequest)
				return
			}
		}
		snap := 0
		if v := q.Get("snaplen"); v != "" {
			if snap, err = strconv.Atoi(v); err != nil || snap < 64 || snap > 65535+14 {
				http.Error(w, fmt.Sprintf("snaplen %q: not in 64..65549", v), http.StatusBadRequest)
				return
			}
		}
		c, stop, err := cs.StartCapture(capture.Options{Filter: f, SnapLen: snap})
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, ErrCaptureBusy) {
				code = http.StatusConflict
			}
			http.Error(w, err.Error(), code)
			return
		}
		defer stop()
		cctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		if dur > 0 {
			cctx, cancel = context.WithTimeout(cctx, dur)
			defer cancel()
		}
		// lvsd stopping ends the capture too (Shutdown does not cancel
		// the requests it waits for).
		go func() {
			select {
			case <-ctx.Done():
				cancel()
			case <-cctx.Done():
			}
		}()
		w.Header().Set("Trailer", TrailerWritten+", "+TrailerMissed+", "+TrailerError)
		w.Header().Set("Content-Type", "application/x-pcapng")
		w.WriteHeader(http.StatusOK)
		st, err := c.WriteTo(cctx, &flushWriter{w: w, rc: http.NewResponseController(w)})
		w.Header().Set(TrailerWritten, strconv.FormatUint(st.Written, 10))
		w.Header().Set(TrailerMissed, strconv.FormatUint(st.Missed, 10))
		if err != nil {
			w.Header().Set(TrailerError, err.Error())
		}
	})
}

// flushWriter sends every write to the client at once: the pcapng writer
// buffers, and flushes when the ring is drained.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f *flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// CaptureStream is a capture in progress, read by a client.
type CaptureStream struct {
	// Body is the pcapng stream; close it to stop the capture.
	Body io.ReadCloser
	resp *http.Response
}

// Result returns the frames written and missed, from the trailers; valid
// after Body was read to its end.
func (s *CaptureStream) Result() (written, missed uint64, err error) {
	written, _ = strconv.ParseUint(s.resp.Trailer.Get(TrailerWritten), 10, 64)
	missed, _ = strconv.ParseUint(s.resp.Trailer.Get(TrailerMissed), 10, 64)
	if e := s.resp.Trailer.Get(TrailerError); e != "" {
		err = errors.New(e)
	}
	return written, missed, err
}

// Capture starts a capture on the lvsd listening at path.
func Capture(ctx context.Context, path string, p CaptureParams) (*CaptureStream, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	q := url.Values{}
	q.Set("filter", p.Filter)
	if p.Duration > 0 {
		q.Set("duration", p.Duration.String())
	}
	if p.SnapLen > 0 {
		q.Set("snaplen", strconv.Itoa(p.SnapLen))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://lvsd/v1/capture?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("capture at %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadRequest {
			return nil, &BadRequestError{Msg: string(trimNL(b))}
		}
		return nil, fmt.Errorf("capture at %s: %s: %s", path, resp.Status, trimNL(b))
	}
	return &CaptureStream{Body: resp.Body, resp: resp}, nil
}

// BadRequestError is lvsd's refusal of a request's parameters, such as a
// filter that does not parse.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
