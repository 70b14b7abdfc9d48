// Package control is lvsd's control socket: a small HTTP/JSON API on a Unix
// socket for `lvsd list`, `lvsd adm` (ipvsadm's command line) and other
// tools.
//
// Reading (the status, listings, the running table) is for anyone who may
// open the socket: it is created 0660, owned by lvsd's user and a group the
// operator chooses. Changing (ipvsadm's mutating commands, discarding
// runtime changes) is for root and lvsd's own uid only, as the kernel reads
// them from the connection (SO_PEERCRED). The server never touches the
// packet path: it asks its Source and Admin, and the socket file is removed
// when Serve returns.
//
// The server bounds what a client can hold: connections idle past a
// timeout are closed, at most MaxConns are open (the longest idle is
// closed to make room, so the status always answers), and requests larger
// than MaxRequest are refused.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
	// Neighbors counts the real servers' (and gateways') MACs the
	// netstack reported unreachable.
	Neighbors Neighbors `json:"neighbors"`
	// ConfigStale is true while the last reload was refused: the file on
	// disk is not what runs. LastReloadError says why.
	ConfigStale     bool   `json:"config_stale"`
	LastReloadError string `json:"last_reload_error,omitempty"`
	// ReloadFailures counts refused reloads since start.
	ReloadFailures uint64 `json:"reload_failures"`
	// RestartNeeded says why the last reload, which applied the virtual
	// servers, needs a restart for its interface changes; "" otherwise. Such
	// a reload is not stale.
	RestartNeeded string `json:"restart_needed,omitempty"`
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
	// RSTOutOfWindow: RST segments dropped outside their receiver's window
	// (check_rst).
	RSTOutOfWindow uint64 `json:"rst_out_of_window"`
}

// Neighbors are the fast path's neighbour events: Lost counts neighbours
// reported unreachable whose last MAC the fast path kept while resolving
// them again; Failed those unreachable long enough to be cleared
// (no-neighbor drops follow); Unconfirmed how many are lost now.
type Neighbors struct {
	Lost        uint64 `json:"lost"`
	Failed      uint64 `json:"failed"`
	Unconfirmed int    `json:"unconfirmed"`
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
	// PersistConns counts the persistence templates bound to the server.
	PersistConns int32 `json:"persist_conns"`
	Available    bool  `json:"available"`
	Overloaded   bool  `json:"overloaded"`
	Stats        Stats `json:"stats"`
	Rates        Rates `json:"rates"`
	// Health is the state of the real server's health check; nil when it
	// is not checked.
	Health *Health `json:"health,omitempty"`
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

// Interface holds one interface's state, fast-path and device counters.
type Interface struct {
	Name string `json:"name"`
	Type string `json:"type"` // tap, tun or packet`
	// State is "up", or "lost" while the device is gone (on_loss =
	// reattach: until it is opened again); Reattached counts the times it
	// was.
	State        string `json:"state"`
	Reattached   uint64 `json:"reattached,omitempty"`
	ForwardedIn  uint64 `json:"forwarded_in"`
	ForwardedOut uint64 `json:"forwarded_out"`
	ToStack      uint64 `json:"to_stack"`
	NewConns     uint64 `json:"new_conns"`
	// FragsHeld counts the fragments kept for reassembly, Reassembled the
	// datagrams completed from them (forward.Counters).
	FragsHeld   uint64 `json:"frags_held"`
	Reassembled uint64 `json:"reassembled"`
	// SynCookies counts the SYN-ACKs the SYN proxy answered SYNs with,
	// SynproxyOpened the connections it opened on a valid cookie
	// (services with synproxy = true; docs/defence.md).
	SynCookies     uint64 `json:"syn_cookies,omitempty"`
	SynproxyOpened uint64 `json:"synproxy_opened,omitempty"`
	// NeighborHeld counts the frames that waited for a real server's (or
	// gateway's) MAC while it was resolved, NeighborSent those sent once it
	// was; the others were dropped (drops no-neighbor, neighbor-queue-full).
	NeighborHeld uint64            `json:"neighbor_held,omitempty"`
	NeighborSent uint64            `json:"neighbor_sent,omitempty"`
	Drops        map[string]uint64 `json:"drops"`
	RxFrames     uint64            `json:"rx_frames"`
	TxFrames     uint64            `json:"tx_frames"`
	RxErrors     uint64            `json:"rx_errors"`
	TxErrors     uint64            `json:"tx_errors"`
	// KernelDrops and KernelSYN are the frames the kernel dropped before
	// lvsd read them (a full socket buffer), in the established and the SYN
	// queue of a packet interface (docs/defence.md); 0 for TAP and TUN.
	KernelDrops uint64 `json:"kernel_drops"`
	KernelSYN   uint64 `json:"kernel_syn_drops"`
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

// Serve answers status requests on the Unix socket at path until ctx
// ends: a read-only socket with the default limits (ServeOptions).
func Serve(ctx context.Context, path string, src Source) error {
	return ServeOptions(ctx, Options{Path: path, Source: src})
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

// client returns an HTTP client for the socket at path.
func client(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// Adm sends an ipvsadm command line to the lvsd at path.
func Adm(ctx context.Context, path string, req AdmRequest) (*AdmResponse, error) {
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://lvsd/v1/adm", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := client(path).Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("query lvsd at %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusForbidden {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("query lvsd at %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	var out AdmResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("query lvsd at %s: decode: %w", path, err)
	}
	return &out, nil
}

// GetConfig reads the running table as TOML from the lvsd at path.
func GetConfig(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://lvsd/v1/config", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client(path).Do(req)
	if err != nil {
		return nil, fmt.Errorf("query lvsd at %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("query lvsd at %s: %s %s", path, resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}

// Discard asks the lvsd at path to drop its runtime changes.
func Discard(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://lvsd/v1/discard", nil)
	if err != nil {
		return err
	}
	resp, err := client(path).Do(req)
	if err != nil {
		return fmt.Errorf("query lvsd at %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("lvsd at %s: %s", path, bytes.TrimSpace(msg))
	}
	return nil
}
