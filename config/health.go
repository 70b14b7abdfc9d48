package config

import (
	"net/netip"
	"time"
)

// Check is the health check of one real server: the `check` table of its
// virtual server, with the keys of the real server's own `check` table
// replacing the service's one by one. Each field names the keepalived
// keyword it stands for (docs/health.md has the full mapping).
type Check struct {
	// Type is one of tcp (TCP_CHECK), http (HTTP_GET), https (SSL_GET),
	// udp (UDP_CHECK), dns (DNS_CHECK), exec (MISC_CHECK), ping
	// (PING_CHECK).
	Type string
	// Addr and Port are the address probed (connect_ip, connect_port); the
	// zero values mean the real server's own. Port is never 0 after
	// validation for the types that use one (all but exec and ping).
	Addr netip.Addr
	Port uint16

	// Interval is the time between two checks (delay_loop).
	Interval time.Duration
	// Timeout bounds one check: connect, request and reply (connect_timeout;
	// misc_timeout for exec).
	Timeout time.Duration
	// Rise is how many consecutive successes bring a down server up; Fall
	// how many consecutive failures take an up server down (keepalived's
	// retry is Fall - 1).
	Rise, Fall int
	// DelayBeforeRetry is the delay after a failure of an up server before
	// the next check, instead of Interval (delay_before_retry).
	DelayBeforeRetry time.Duration
	// Warmup is the upper bound of the random delay before the first check
	// (warmup), so that many checks do not fire together.
	Warmup time.Duration
	// ThroughVIP (tcp, http and https; dr and tun real servers) probes the
	// virtual address through the forwarding path, as Seesaw's DSR and TUN
	// check modes: the connection to the VIP goes to the real server's MAC
	// (dr) or inside IPIP (tun). The real server must answer for the VIP
	// to pass.
	ThroughVIP bool
	// ReuseConnection (http and https) keeps the connection to the server
	// open between checks and sends each request on it (HTTP/1.1
	// keep-alive), as Envoy's reuse_connection; keepalived has no
	// equivalent (a connection per check, lvsd's default).
	ReuseConnection bool
	// Alpha starts the server down until its first success (alpha).
	Alpha bool
	// InhibitOnFailure sets a failed server's weight to 0 instead of
	// removing it (inhibit_on_failure).
	InhibitOnFailure bool
	// NotifyUp and NotifyDown are commands run (by /bin/sh -c, without
	// waiting) when the server goes up or down (notify_up, notify_down).
	NotifyUp, NotifyDown string

	// HTTP and HTTPS (url { path, status_code, digest }, virtualhost).
	Path   string
	Host   string        // Host header; empty: the probed address
	Status []StatusRange // expected status codes; default 200-299
	// Digest is the MD5 of the body, lower-case hex, as genhash prints it;
	// empty for none.
	Digest string
	// Contains is a substring the body must hold; Regexp a regular
	// expression (Go syntax) it must match. Empty for none.
	Contains, Regexp string
	// SNI is the TLS server name (sni / enable_sni); empty: Host, else
	// none for an address.
	SNI string
	// CAFile is a PEM file of CAs to verify the server's certificate
	// against; without it the certificate is not verified (as keepalived's
	// SSL_GET, which does not verify).
	CAFile string

	// UDP (payload, require_reply).
	Payload []byte
	// Expect is a prefix the reply must start with; a reply is required
	// when Expect is set or RequireReply is true.
	Expect       []byte
	RequireReply bool

	// DNS (type, name).
	QueryType string // A, AAAA, NS, SOA, MX, TXT, CNAME, PTR, SRV; default SOA
	QueryName string // fully qualified; default "."

	// Exec (misc_path, misc_dynamic). Command is run by /bin/sh -c with
	// LVSD_RS_ADDR, LVSD_RS_PORT, LVSD_VS_ADDR, LVSD_VS_PORT in its
	// environment.
	Command string
	Dynamic bool
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Lo, Hi int }

// Health holds a virtual server's keys around checks that are not per real
// server.
type Health struct {
	// Check is the service's own `check` table, resolved as a real server
	// without a `check` of its own gets it (its port 0: the real server's):
	// the check of each real server added later, at run time (lvsd adm -a)
	// or by a reload, that the file does not give one. nil: none.
	Check *Check
	// SorryServer receives new connections while no real server of the
	// service is up (sorry_server); invalid: none. Its port is the
	// service's when the file gives none. It is forwarded to by NAT.
	SorryServer netip.AddrPort
	// Quorum is the minimum total weight of the up real servers
	// (quorum); 0 is none. Hysteresis is keepalived's hysteresis: the
	// quorum is lost below Quorum - Hysteresis and regained at
	// Quorum + Hysteresis.
	Quorum, Hysteresis int
	// QuorumUp and QuorumDown are commands run without waiting when the
	// quorum is gained or lost (quorum_up, quorum_down).
	QuorumUp, QuorumDown string
	// Passive is the passive detection of the service's real servers.
	Passive Passive
}

// Check defaults; the example file documents the same values.
const (
	DefaultCheckInterval  = 5 * time.Second // keepalived's delay_loop is 60 s
	DefaultCheckTimeout   = 3 * time.Second // keepalived's connect_timeout is 5 s
	DefaultCheckRise      = 1               // keepalived: back at the first success
	DefaultCheckFall      = 2               // keepalived: retry 1
	DefaultRetryDelay     = 1 * time.Second // keepalived's delay_before_retry
	DefaultDNSQueryType   = "SOA"
	DefaultDNSQueryName   = "."
	DefaultHTTPPath       = "/"
	maxCheckRiseFall      = 100
	maxCheckPayload       = 1024
	maxCheckStringSetting = 4096
)

// DefaultStatus is the default expected HTTP status range.
var DefaultStatus = []StatusRange{{Lo: 200, Hi: 299}}

// Passive is a virtual server's passive health detection (the `passive`
// table): its real servers' failed handshakes, which the fast path counts
// (conntrack/failures.go), eject a server for a back-off, as HAProxy's
// `observe layer4` with `error-limit` and `on-error mark-down`, and
// Envoy's outlier detection. Off unless Enabled.
type Passive struct {
	Enabled bool
	// Failures is how many failures within Interval eject a real server
	// (HAProxy's error-limit; Envoy's consecutive_gateway_failure).
	Failures int
	// Interval is the window failures are counted in (Envoy's interval).
	Interval time.Duration
	// BaseEjection is the first ejection's length; each ejection of the
	// same server doubles it, up to MaxEjection (Envoy's
	// base_ejection_time and max_ejection_time). A server that stays in
	// service for MaxEjection after its return starts again from
	// BaseEjection.
	BaseEjection, MaxEjection time.Duration
	// MaxEjectedPercent bounds the share of a service's real servers
	// ejected at once (Envoy's max_ejection_percent); whatever it says,
	// passive detection never takes out a service's last server in
	// service.
	MaxEjectedPercent int
}

// Passive detection defaults; the example file documents the same values.
const (
	DefaultPassiveFailures     = 5
	DefaultPassiveInterval     = 10 * time.Second
	DefaultPassiveBaseEjection = 30 * time.Second
	DefaultPassiveMaxEjection  = 300 * time.Second
	DefaultPassiveMaxEjected   = 50
)
