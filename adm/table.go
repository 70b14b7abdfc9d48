package adm

import (
	"net/netip"
	"time"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/lvs"
)

// Table is what the listings print: the running services with their
// counters, the global timeouts, and (for -c) the connections.
type Table struct {
	// Size is the connection table size ipvsadm prints in its first line
	// ("IP Virtual Server version 1.2.1 (size=4096)"); DefaultSize when
	// zero.
	Size     int
	Services []Service
	Timeouts config.Timeouts
}

// DefaultSize is the size IPVS reports with its default conn_tab_bits (12).
const DefaultSize = 4096

// Service is one virtual service with its counters.
type Service struct {
	config.Service
	Stats Counters
	// Rates are the rate estimates: Conns is connections per second,
	// the packets and bytes are per second.
	Rates Counters
	Dests []Dest
}

// Dest is one real server with its counters.
type Dest struct {
	config.Real
	ActiveConns, InactConns, PersistConns uint32
	Stats, Rates                          Counters
	// Down: out of scheduling (a failed health check); Overloaded: over
	// its upper threshold. Shown only with FmtLvsd.
	Down, Overloaded bool
}

// Counters are IPVS's five counters (ip_vs_stats_user).
type Counters struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
}

// Conn is one entry of the connection table, as /proc/net/ip_vs_conn
// shows it.
type Conn struct {
	Proto                 lvs.Proto
	Client, Virtual, Dest netip.AddrPort
	State                 string // IPVS's state name: ESTABLISHED, UDP, NONE...
	Expires               time.Duration
	PEName, PEData        string // persistence engine; empty without one
}

// protoNum is the IP protocol number ipvsadm sorts by.
func protoNum(p lvs.Proto) int {
	switch p {
	case lvs.TCP:
		return 6
	case lvs.UDP:
		return 17
	case lvs.SCTP:
		return 132
	}
	return 0
}

// protoName is ipvsadm's protocol_name.
func protoName(p lvs.Proto) string {
	switch p {
	case lvs.TCP:
		return "TCP"
	case lvs.UDP:
		return "UDP"
	case lvs.SCTP:
		return "SCTP"
	}
	return "?"
}
