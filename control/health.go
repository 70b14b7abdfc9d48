package control

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Health is the state of one real server's health check.
type Health struct {
	// Check is its type (tcp, http, https, udp, dns, exec, ping).
	Check string `json:"check"`
	// State is "up" or "down".
	State string `json:"state"`
	// Checks counts the probes since the check (re)started.
	Checks uint64 `json:"checks"`
	// LastResult is "ok", "failed" or "" before the first probe;
	// LastError says why the last probe failed.
	LastResult string `json:"last_result"`
	LastError  string `json:"last_error,omitempty"`
	// ConsecutiveOK and ConsecutiveFailed are the current runs.
	ConsecutiveOK     int `json:"consecutive_ok"`
	ConsecutiveFailed int `json:"consecutive_failed"`
	// LastChange is the time of the last transition (or of the check's
	// start); LastCheck of the last probe (zero before any).
	LastChange time.Time `json:"last_change"`
	LastCheck  time.Time `json:"last_check,omitzero"`
	// TransitionsUp and TransitionsDown count the transitions to up and to
	// down of the server's checks since it was added: they go on across a
	// restart of its check (counters never go down).
	TransitionsUp   uint64 `json:"transitions_up"`
	TransitionsDown uint64 `json:"transitions_down"`
	// ChecksTotal counts the probes of the server's checks since it was
	// added: Checks restarts with its check, ChecksTotal goes on (a
	// counter: it never goes down).
	ChecksTotal uint64 `json:"checks_total"`
	// Weight is the last dynamic weight of an exec check, when it gave one.
	Weight *int32 `json:"dynamic_weight,omitempty"`
	// Passive is the state of the server's passive detection, when its
	// service has it. Check is "" when the server has passive detection
	// and no check.
	Passive *Passive `json:"passive,omitempty"`
}

// Passive is the state of one real server's passive detection.
type Passive struct {
	// State is "in" (in service as far as passive detection goes) or
	// "ejected" (until Until).
	State string    `json:"state"`
	Until time.Time `json:"until,omitzero"`
	// Ejections counts the ejections of the current back-off series.
	Ejections int `json:"ejections"`
	// EjectionsTotal counts every ejection since passive detection started
	// for the server (a counter: it never goes down).
	EjectionsTotal uint64 `json:"ejections_total"`
	// Failures counts the failed handshakes seen since detection started;
	// WindowFailures those of the current window.
	Failures       uint64 `json:"failures"`
	WindowFailures uint64 `json:"window_failures"`
	// Held counts the times the threshold was crossed but the ejection was
	// refused by max_ejected_percent or to keep a server in service.
	Held uint64 `json:"held"`
}

// WriteHealth prints each real server's health check: lvsd's own listing
// (`lvsd list -health`), apart from the ipvsadm-shaped ones.
func WriteHealth(w io.Writer, st *Status, now time.Time) {
	fmt.Fprintf(w, "lvsd %s (connections=%d)\n", st.Version, st.Connections)
	fmt.Fprintf(w, "Prot LocalAddress:Port\n")
	fmt.Fprintf(w, "  -> %-28s %-5s %-5s %-8s %-6s %-10s %s\n", "RemoteAddress:Port", "Check", "State", "Checks", "Run", "Since", "LastError")
	for _, s := range st.Services {
		fmt.Fprintf(w, "%-4s %s\n", strings.ToUpper(s.Protocol), s.Address)
		for _, r := range s.Reals {
			h := r.Health
			if h == nil {
				fmt.Fprintf(w, "  -> %-28s %-5s %s\n", r.Address, "-", "up")
				continue
			}
			run := fmt.Sprintf("ok %d", h.ConsecutiveOK)
			if h.ConsecutiveFailed > 0 {
				run = fmt.Sprintf("fail %d", h.ConsecutiveFailed)
			}
			if h.Check == "" {
				fmt.Fprintf(w, "  -> %-28s %-5s %s\n", r.Address, "-", h.State)
			} else {
				since := now.Sub(h.LastChange).Truncate(time.Second).String()
				line := fmt.Sprintf("  -> %-28s %-5s %-5s %-8d %-6s %-10s %s", r.Address, h.Check, h.State, h.Checks, run, since, h.LastError)
				fmt.Fprintln(w, strings.TrimRight(line, " "))
			}
			if p := h.Passive; p != nil {
				fmt.Fprintf(w, "     passive %s failures %d (window %d) ejections %d held %d", p.State, p.Failures, p.WindowFailures, p.Ejections, p.Held)
				if p.State == "ejected" {
					fmt.Fprintf(w, " for %s", p.Until.Sub(now).Truncate(time.Second))
				}
				fmt.Fprintln(w)
			}
		}
	}
}
