package conntrack

import "time"

// Default timeouts, IPVS's (tcp_timeouts and udp_timeouts). ipvsadm --set
// changes three of them: "tcp" is ESTABLISHED's, "tcpfin" is FIN_WAIT's
// (and only FIN_WAIT's: TIME_WAIT keeps its 120 s), "udp" is UDP's.
const (
	DefaultTCPTimeout    = 900 * time.Second // ESTABLISHED (ipvsadm "tcp")
	DefaultTCPFinTimeout = 120 * time.Second // FIN_WAIT (ipvsadm "tcpfin")
	DefaultUDPTimeout    = 300 * time.Second // UDP (ipvsadm "udp")

	TCPNoneTimeout      = 2 * time.Second
	TCPSynSentTimeout   = 120 * time.Second
	TCPSynTimeout       = 60 * time.Second // SYN_RECV
	TCPTimeWaitTimeout  = 120 * time.Second
	TCPCloseTimeout     = 10 * time.Second
	TCPCloseWaitTimeout = 60 * time.Second
	TCPLastAckTimeout   = 30 * time.Second
	TCPListenTimeout    = 120 * time.Second
	TCPSynAckTimeout    = 120 * time.Second
)

// MaxTimeout is the longest timeout the table keeps: last-seen times are
// 32-bit milliseconds, compared modulo 2^32, so no timeout may reach half
// of that range. Longer settings are clamped to it.
const MaxTimeout = 24 * 24 * time.Hour

// Timeouts are the idle timeouts a table's configuration may change, the
// one value that Options.Timeouts and SetTimeouts take. A zero (or
// negative) field keeps the default in Options and the current value in
// SetTimeouts, as ipvsadm --set does with 0. Values are clamped to
// [1 ms, MaxTimeout]. The other TCP states keep IPVS's fixed timeouts
// (SYN_SENT 120 s, CLOSE_WAIT 60 s, LAST_ACK 30 s, ...).
type Timeouts struct {
	// TCP, TCPFin and UDP are what ipvsadm --set tcp tcpfin udp sets: the
	// timeouts of an ESTABLISHED TCP connection, of one in FIN_WAIT, of a
	// UDP (or other non-TCP) flow.
	TCP, TCPFin, UDP time.Duration
	// TCPTimeWait and TCPClose are lvsd's extension, as Linux 2.4's
	// timeout_timewait and timeout_close sysctls: TIME_WAIT's 120 s and
	// CLOSE's 10 s, where closed connections wait.
	TCPTimeWait, TCPClose time.Duration
	// TCPSynRecv is SYN_RECV's 60 s (lvsd's extension, as Linux 2.4's
	// timeout_synrecv): how long a client's SYN holds an entry while the
	// handshake is incomplete.
	TCPSynRecv time.Duration
}

// DefaultTimeouts returns IPVS's defaults of every field of Timeouts.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCP:         DefaultTCPTimeout,
		TCPFin:      DefaultTCPFinTimeout,
		UDP:         DefaultUDPTimeout,
		TCPTimeWait: TCPTimeWaitTimeout,
		TCPClose:    TCPCloseTimeout,
		TCPSynRecv:  TCPSynTimeout,
	}
}

// Timeouts returns the timeouts the table applies now.
func (t *Table) Timeouts() Timeouts {
	to := t.to.Load()
	d := func(s State) time.Duration { return time.Duration(to[s]) * time.Millisecond }
	return Timeouts{
		TCP:         d(StateEstablished),
		TCPFin:      d(StateFinWait),
		UDP:         d(StateUDP),
		TCPTimeWait: d(StateTimeWait),
		TCPClose:    d(StateClose),
		TCPSynRecv:  d(StateSynRecv),
	}
}

// SetTimeouts changes the idle timeouts; a zero (or negative) field keeps
// the current one. A connection's timeout is looked up when its timer
// fires, so existing connections get the new value too, at the latest when
// their old one would have ended.
func (t *Table) SetTimeouts(nt Timeouts) {
	for {
		old := t.to.Load()
		to := old.with(nt)
		if t.to.CompareAndSwap(old, &to) {
			return
		}
	}
}

// stateMs are the idle timeouts of every state in milliseconds. A published
// value is never modified (Table.to swaps whole copies).
type stateMs [numStates]uint32

func defaultStateMs() stateMs {
	var t stateMs
	for s, d := range map[State]time.Duration{
		StateNone:        TCPNoneTimeout,
		StateEstablished: DefaultTCPTimeout,
		StateSynSent:     TCPSynSentTimeout,
		StateSynRecv:     TCPSynTimeout,
		StateFinWait:     DefaultTCPFinTimeout,
		StateTimeWait:    TCPTimeWaitTimeout,
		StateClose:       TCPCloseTimeout,
		StateCloseWait:   TCPCloseWaitTimeout,
		StateLastAck:     TCPLastAckTimeout,
		StateListen:      TCPListenTimeout,
		StateSynAck:      TCPSynAckTimeout,
		StateUDP:         DefaultUDPTimeout,
	} {
		t[s] = msOf(d)
	}
	return t
}

// msOf converts a timeout to milliseconds, clamped to (0, MaxTimeout].
func msOf(d time.Duration) uint32 {
	d = min(max(d, time.Millisecond), MaxTimeout)
	return uint32(d / time.Millisecond)
}

// with returns t with the fields of nt that are above 0.
func (t stateMs) with(nt Timeouts) stateMs {
	for _, f := range [...]struct {
		s State
		d time.Duration
	}{
		{StateEstablished, nt.TCP},
		{StateFinWait, nt.TCPFin},
		{StateUDP, nt.UDP},
		{StateTimeWait, nt.TCPTimeWait},
		{StateClose, nt.TCPClose},
		{StateSynRecv, nt.TCPSynRecv},
	} {
		if f.d > 0 {
			t[f.s] = msOf(f.d)
		}
	}
	return t
}
