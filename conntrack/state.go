package conntrack

import (
	"fmt"
	"time"
)

// State is a connection's protocol state. TCP connections move through the
// first five; other protocols stay in StateUDP.
//
// This is a minimal subset of IPVS's TCP states (ip_vs_proto_tcp.c): enough to
// count active and inactive connections as IPVS does and to choose a timeout.
// FIN_WAIT, TIME_WAIT, CLOSE_WAIT and LAST_ACK are folded into StateFinWait.
type State uint32

// Connection states.
const (
	StateNone        State = iota // TCP entry created, no segment accounted yet
	StateSynRecv                  // the client's SYN was seen (IPVS SYN_RECV)
	StateEstablished              // the handshake completed (IPVS ESTABLISHED)
	StateFinWait                  // a FIN was seen in either direction
	StateClose                    // an RST was seen in either direction (IPVS CLOSE)
	StateUDP                      // UDP (and any non-TCP protocol): no state
	stateDead                     // removed from the table; no further transitions
	numStates
)

var stateNames = [numStates]string{
	StateNone:        "NONE",
	StateSynRecv:     "SYN_RECV",
	StateEstablished: "ESTABLISHED",
	StateFinWait:     "FIN_WAIT",
	StateClose:       "CLOSE",
	StateUDP:         "UDP",
	stateDead:        "EXPIRED",
}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state-%d", uint32(s))
}

// Active reports whether a connection in state s counts in its destination's
// ActiveConns (IPVS: only ESTABLISHED TCP connections are active).
func (s State) Active() bool { return s == StateEstablished }

// TCP header flag bits, as in the 14th byte of the TCP header.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagACK = 0x10
)

// nextTCP returns the state after a segment with flags, coming from the client
// (fromClient) or from the real server. It follows IPVS's table in priority
// order RST, SYN, FIN, ACK, simplified to the states above.
func nextTCP(s State, flags uint8, fromClient bool) State {
	switch {
	case flags&FlagRST != 0:
		return StateClose
	case flags&FlagSYN != 0:
		// A client's SYN (re)opens the connection; IPVS keeps ESTABLISHED.
		// The server's SYN-ACK leaves the state as it is.
		if fromClient && s != StateEstablished {
			return StateSynRecv
		}
		return s
	case flags&FlagFIN != 0:
		if s == StateClose {
			return s
		}
		return StateFinWait
	case flags&FlagACK != 0:
		if s == StateNone || s == StateSynRecv {
			return StateEstablished
		}
		return s
	}
	return s
}

// Default timeouts, IPVS's. ipvsadm --set changes the first three; the
// others are fixed in IPVS too.
const (
	DefaultTCPTimeout    = 900 * time.Second // ESTABLISHED (ipvsadm "tcp")
	DefaultTCPFinTimeout = 120 * time.Second // after a FIN (ipvsadm "tcpfin")
	DefaultUDPTimeout    = 300 * time.Second // UDP (ipvsadm "udp")
	TCPSynTimeout        = 60 * time.Second  // SYN_RECV
	TCPCloseTimeout      = 10 * time.Second  // CLOSE, after an RST
	// noneTimeout is IPVS's timeout for TCP NONE (a created entry that saw no
	// segment; normally left at once by the first Update).
	noneTimeout = 2 * time.Second
)

// timeouts are the idle timeouts of every state in nanoseconds.
type timeouts [numStates]int64

func defaultTimeouts() timeouts {
	var t timeouts
	t[StateNone] = int64(noneTimeout)
	t[StateSynRecv] = int64(TCPSynTimeout)
	t[StateEstablished] = int64(DefaultTCPTimeout)
	t[StateFinWait] = int64(DefaultTCPFinTimeout)
	t[StateClose] = int64(TCPCloseTimeout)
	t[StateUDP] = int64(DefaultUDPTimeout)
	t[stateDead] = 0
	return t
}

// set changes the ipvsadm-settable timeouts; a value of 0 or less keeps the
// current one, as with ipvsadm --set.
func (t *timeouts) set(tcp, tcpFin, udp time.Duration) {
	for _, v := range []struct {
		s State
		d time.Duration
	}{{StateEstablished, tcp}, {StateFinWait, tcpFin}, {StateUDP, udp}} {
		if v.d > 0 {
			t[v.s] = int64(v.d)
		}
	}
}
