// Package control is lvsd's control socket: a small HTTP/JSON API on a Unix
// socket that `lvsd list` (ipvsadm -Ln's counterpart) and other tools read.
//
// The server only reads: it asks its Source for a Status snapshot per
// request and never touches the packet path. The socket file is created
// with mode 0660 and removed when Serve returns.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// Status is a snapshot of a running director.
type Status struct {
	Version     string      `json:"version"`
	Config      string      `json:"config"`
	Services    []Service   `json:"services"`
	Interfaces  []Interface `json:"interfaces"`
	Connections int         `json:"connections"`
	// Table is the connection table's limit and defence counters.
	Table Table `json:"table"`
	// ConfigStale is true while the last reload was refused: the file on
	// disk is not what runs. LastReloadError says why.
	ConfigStale     bool   `json:"config_stale"`
	LastReloadError string `json:"last_reload_error,omitempty"`
	// ReloadFailures counts refused reloads since start.
	ReloadFailures uint64 `json:"reload_failures"`
}

// Table is the connection table's limit and what it did to stay under it.
type Table struct {
	// Max is [connections] max; Unestablished the connections that never
	// established (UDP flows, TCP handshakes), which reserve_established
	// bounds.
	Max           int `json:"max"`
	Unestablished int `json:"unestablished"`
	// Evicted: connections removed to make room for new ones; Refused:
	// new connections dropped with nothing to evict (table-full).
	Evicted uint64 `json:"evicted"`
	Refused uint64 `json:"refused"`
	// NodestExpired: connections removed because their real server was
	// (expire_nodest_conn); Reused: closed connections replaced by a new
	// SYN of the same client port.
	NodestExpired uint64 `json:"nodest_expired"`
	Reused        uint64 `json:"reused"`
	// SourceLimited and SourceRated: new connections refused by
	// per_source and per_source_rate.
	SourceLimited uint64 `json:"source_limited"`
	SourceRated   uint64 `json:"source_rated"`
}

// Service is a virtual service.
type Service struct {
	Name      string   `json:"name,omitempty"`
	Protocol  string   `json:"protocol"`
	Address   string   `json:"address"` // VIP:port
	Scheduler string   `json:"scheduler"`
	Flags     []string `json:"flags,omitempty"`
	Stats     Stats    `json:"stats"`
	Rates     Rates    `json:"rates"`
	Reals     []Real   `json:"reals"`
}

// Real is a real server of a service.
type Real struct {
	Address    string `json:"address"` // RIP:port
	Method     string `json:"method"`
	Weight     int32  `json:"weight"`
	ActiveConn int32  `json:"active_conns"`
	InactConn  int32  `json:"inactive_conns"`
	Available  bool   `json:"available"`
	Overloaded bool   `json:"overloaded"`
	Stats      Stats  `json:"stats"`
	Rates      Rates  `json:"rates"`
}

// Rates are IPVS-style rate estimates (2-second samples, moving average):
// connections, packets and bytes per second.
type Rates struct {
	CPS    uint64 `json:"cps"`
	InPPS  uint64 `json:"in_pps"`
	OutPPS uint64 `json:"out_pps"`
	InBPS  uint64 `json:"in_bps"`
	OutBPS uint64 `json:"out_bps"`
}

// Stats are cumulative counters.
type Stats struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"in_pkts"`
	OutPkts  uint64 `json:"out_pkts"`
	InBytes  uint64 `json:"in_bytes"`
	OutBytes uint64 `json:"out_bytes"`
}

// Interface holds one interface's fast-path and device counters.
type Interface struct {
	Name         string            `json:"name"`
	Type         string            `json:"type"` // tap, tun or packet`
	ForwardedIn  uint64            `json:"forwarded_in"`
	ForwardedOut uint64            `json:"forwarded_out"`
	ToStack      uint64            `json:"to_stack"`
	NewConns     uint64            `json:"new_conns"`
	Drops        map[string]uint64 `json:"drops"`
	RxFrames     uint64            `json:"rx_frames"`
	TxFrames     uint64            `json:"tx_frames"`
	RxErrors     uint64            `json:"rx_errors"`
	TxErrors     uint64            `json:"tx_errors"`
	// Queues are the frames per device queue (TAP queue or AF_PACKET
	// socket), by index; their sums are RxFrames and TxFrames.
	Queues []Queue `json:"queues"`
}

// Queue holds one device queue's frame counts.
type Queue struct {
	RxFrames uint64 `json:"rx_frames"`
	TxFrames uint64 `json:"tx_frames"`
}

// Source provides the snapshots the server returns.
type Source interface {
	Status() Status
}

// Serve answers requests on the Unix socket at path until ctx ends. A stale
// socket file (left by a crashed lvsd) is replaced; a live one is an error.
func Serve(ctx context.Context, path string, src Source) error {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another lvsd is listening", path)
	}
	// Only a stale socket is replaced; any other file at the path stays.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		os.Remove(path)
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
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(src.Status())
	})
	handleCapture(ctx, mux, src)
	handleTrace(ctx, mux, src)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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

// Get reads the status from the lvsd listening at path.
func Get(ctx context.Context, path string) (*Status, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://lvsd/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query lvsd at %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("query lvsd at %s: %s", path, resp.Status)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("query lvsd at %s: decode: %w", path, err)
	}
	return &st, nil
}
