package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lvsd/lvsd/adm"
)

// Admin runs the changing side of the socket.
type Admin interface {
	// Adm runs an ipvsadm command line (stdin: the lines of -R) for the
	// client described by who; program names it in messages.
	Adm(program string, args, stdin []string, who string) adm.Result
	// Dump is the running table as TOML.
	Dump() []byte
	// Discard drops the runtime changes: the file runs again.
	Discard() error
}

// Options configure ServeOptions. Zero values take the defaults noted.
type Options struct {
	Path   string
	Source Source
	// Admin serves lvsd adm and the running table; nil makes a socket that
	// only gives the status.
	Admin Admin
	// Group owns the socket (a name or a numeric gid): its members may
	// read. "" keeps lvsd's own group.
	Group string
	// MaxConns bounds open connections (default 64).
	MaxConns int
	// IdleTimeout closes a connection without a request for that long
	// (default 30 s); a client that sends nothing after connecting is
	// closed after HeaderTimeout (default 5 s).
	IdleTimeout, HeaderTimeout time.Duration
	// MaxRequest bounds a request body (default 64 MiB: a -R of 100 000
	// rules is about 6 MiB).
	MaxRequest int64
	Logger     *slog.Logger
}

// Peer is the process at the other end of a connection.
type Peer struct {
	UID, GID uint32
	PID      int32
	Known    bool // false where SO_PEERCRED could not be read
}

func (p Peer) String() string {
	if !p.Known {
		return "unknown peer"
	}
	return fmt.Sprintf("uid %d pid %d", p.UID, p.PID)
}

// mayChange: root and lvsd's own uid.
func (p Peer) mayChange() bool { return p.Known && (p.UID == 0 || p.UID == uint32(os.Getuid())) }

type peerKey struct{}

// AdmRequest is the body of POST /v1/adm.
type AdmRequest struct {
	Program string   `json:"program,omitempty"`
	Args    []string `json:"args"`
	Stdin   []string `json:"stdin,omitempty"`
}

// AdmResponse is what the command printed and its exit status.
type AdmResponse struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
}

// ErrInUse means another lvsd serves the socket.
var ErrInUse = errors.New("another lvsd is listening")

// Live reports whether an lvsd answers on the socket at path.
func Live(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ServeOptions serves the control socket until ctx ends. A stale socket
// file (left by a crashed lvsd) is replaced; a live one is ErrInUse.
func ServeOptions(ctx context.Context, o Options) error {
	if o.MaxConns <= 0 {
		o.MaxConns = 64
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = 5 * time.Second
	}
	if o.MaxRequest <= 0 {
		o.MaxRequest = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	path := o.Path
	if Live(path) {
		return fmt.Errorf("control socket %s: %w", path, ErrInUse)
	}
	// Only a stale socket is replaced; any other file at the path stays.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		os.Remove(path)
	}
	gid := -1
	if o.Group != "" {
		g, err := lookupGroup(o.Group)
		if err != nil {
			return fmt.Errorf("control socket group %q: %w", o.Group, err)
		}
		gid = g
	}
	// Listen creates the socket with the process umask; 0o117 makes it
	// 0660 from the start rather than after a window.
	old := syscall.Umask(0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer os.Remove(path)
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return fmt.Errorf("control socket group: %w", err)
		}
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", h.status)
	handleCapture(ctx, mux, o.Source)
	handleTrace(ctx, mux, o.Source)
	if o.Admin != nil {
		mux.HandleFunc("POST /v1/adm", h.adm)
		mux.HandleFunc("GET /v1/config", h.config)
		mux.HandleFunc("POST /v1/discard", h.discard)
	}
	tr := &tracker{max: o.MaxConns, conns: make(map[net.Conn]*connInfo), log: o.Logger}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: o.HeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ConnState:         tr.state,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
		ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done: // Serve failed: nothing left to shut down
			return
		}
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

func lookupGroup(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

type handler struct{ o Options }

func peer(r *http.Request) Peer {
	p, _ := r.Context().Value(peerKey{}).(Peer)
	return p
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(h.o.Source.Status())
}

// refuse answers a request that is not served, and logs it.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h.o.Logger.Warn("control request refused", "client", peer(r).String(), "path", r.URL.Path, "status", code, "reason", msg)
	http.Error(w, msg, code)
}

func (h *handler) adm(w http.ResponseWriter, r *http.Request) {
	var req AdmRequest
	body := http.MaxBytesReader(w, r.Body, h.o.MaxRequest)
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", h.o.MaxRequest))
			return
		}
		h.refuse(w, r, http.StatusBadRequest, "malformed request: "+err.Error())
		return
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", h.o.MaxRequest))
		return
	}
	p := peer(r)
	// Judged by the command alone: a line the parser would refuse must
	// not slip through a check that parsed it differently.
	if cmd := adm.CommandOf(req.Args); (cmd.Mutates() || cmd == adm.CmdStartDaemon || cmd == adm.CmdStopDaemon) && !p.mayChange() {
		h.o.Logger.Warn("control request refused", "client", p.String(), "path", r.URL.Path, "reason", "not root or lvsd's user", "args", req.Args)
		writeJSON(w, http.StatusForbidden, AdmResponse{Stderr: "Permission denied (you must be root)\n", Code: adm.ExitFailed})
		return
	}
	res := h.o.Admin.Adm(req.Program, req.Args, req.Stdin, p.String())
	writeJSON(w, http.StatusOK, AdmResponse{Stdout: res.Stdout, Stderr: res.Stderr, Code: res.Code})
}

func (h *handler) config(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/toml")
	w.Write(h.o.Admin.Dump())
}

func (h *handler) discard(w http.ResponseWriter, r *http.Request) {
	p := peer(r)
	if !p.mayChange() {
		h.refuse(w, r, http.StatusForbidden, "Permission denied (you must be root)")
		return
	}
	if err := h.o.Admin.Discard(); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	h.o.Logger.Info("runtime changes discarded", "client", p.String())
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// tracker bounds open connections: over max, the connection idle the
// longest (one that has not sent a request, or waits between two) is
// closed; if every other one is busy, the new one is.
type tracker struct {
	max int
	log *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]*connInfo // guarded by mu
}

type connInfo struct {
	idle  bool
	since time.Time
}

func (t *tracker) state(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateNew:
		t.conns[c] = &connInfo{idle: true, since: time.Now()}
		if len(t.conns) > t.max {
			var victim net.Conn
			var oldest time.Time
			for o, ci := range t.conns {
				if o != c && ci.idle && (victim == nil || ci.since.Before(oldest)) {
					victim, oldest = o, ci.since
				}
			}
			if victim == nil {
				victim = c
			}
			delete(t.conns, victim)
			victim.Close()
			t.log.Debug("control connection closed: too many", "max", t.max)
		}
	case http.StateActive:
		if ci := t.conns[c]; ci != nil {
			ci.idle = false
		}
	case http.StateIdle:
		if ci := t.conns[c]; ci != nil {
			ci.idle, ci.since = true, time.Now()
		}
	case http.StateHijacked, http.StateClosed:
		delete(t.conns, c)
	}
}
