package conntrack

import "fmt"

// State is a connection's protocol state. TCP connections move through
// IPVS's TCP states (ip_vs_proto_tcp.c), numbered as the kernel numbers them
// so that the transition tables below read like the kernel's; every other
// protocol stays in StateUDP.
type State uint32

// Connection states. The first eleven are IPVS's IP_VS_TCP_S_* in kernel
// order.
const (
	StateNone        State = iota // entry created, no segment accounted yet
	StateEstablished              // handshake completed: the only active state
	StateSynSent                  // the real server's SYN seen first (output table)
	StateSynRecv                  // the client's SYN seen
	StateFinWait                  // a FIN seen after the real server's (or, input-only, the client's) FIN
	StateTimeWait                 // both sides closed
	StateClose                    // an RST seen, or a segment without flags
	StateCloseWait                // the client's FIN seen on an established connection
	StateLastAck                  // the real server's FIN after CLOSE_WAIT
	StateListen                   // kept for fidelity: IPVS sets it only for FTP data; never entered here
	StateSynAck                   // secure_tcp: SYN-ACK seen, or a SYN on a closed connection (input-only)
	StateUDP                      // UDP and any non-TCP protocol: no state machine
	stateDead                     // removed from the table; no further transitions
	numStates
)

// numTCPStates is IP_VS_TCP_S_LAST: the states the TCP tables index.
const numTCPStates = int(StateSynAck) + 1

var stateNames = [numStates]string{
	StateNone:        "NONE",
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN_SENT",
	StateSynRecv:     "SYN_RECV",
	StateFinWait:     "FIN_WAIT",
	StateTimeWait:    "TIME_WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE_WAIT",
	StateLastAck:     "LAST_ACK",
	StateListen:      "LISTEN",
	StateSynAck:      "SYNACK",
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
// ActiveConns. As IPVS (set_tcp_state and IP_VS_CONN_F_INACTIVE), only an
// ESTABLISHED TCP connection is active; every other state, UDP included, is
// inactive.
func (s State) Active() bool { return s == StateEstablished }

// halfOpen reports whether a connection in state s has not completed a
// handshake: the first to be evicted when the table is full.
func (s State) halfOpen() bool {
	switch s {
	case StateNone, StateSynSent, StateSynRecv, StateSynAck, StateListen:
		return true
	}
	return false
}

// closed reports whether a connection in state s is over (both sides closed
// or reset): evicted after half-open ones when the table is full, and a new
// SYN on it schedules a new connection.
func (s State) closed() bool { return s == StateTimeWait || s == StateClose }

// TCP header flag bits, as in the 14th byte of the TCP header.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagACK = 0x10
)

// Dir is the direction of a segment as IPVS's state tables see it.
type Dir uint8

// Directions (IP_VS_DIR_*).
const (
	// DirInput: from the client, on a connection whose replies pass the
	// director (NAT).
	DirInput Dir = iota
	// DirOutput: from the real server (NAT replies).
	DirOutput
	// DirInputOnly: from the client, on a connection whose replies bypass
	// the director (DR, TUN: IP_VS_CONN_F_NOOUTPUT), so that the client's
	// segments alone must drive the state.
	DirInputOnly
	numDirs
)

// event is the segment's row in a state table: IPVS's tcp_state_idx, which
// looks at RST first, then SYN, FIN and ACK.
type event uint8

const (
	evSYN event = iota
	evFIN
	evACK
	evRST
	numEvents
	evNone // no flag at all: IPVS moves such a connection to CLOSE
)

func eventOf(flags uint8) event {
	switch {
	case flags&FlagRST != 0:
		return evRST
	case flags&FlagSYN != 0:
		return evSYN
	case flags&FlagFIN != 0:
		return evFIN
	case flags&FlagACK != 0:
		return evACK
	}
	return evNone
}

// stateTable gives the next state by direction, event and current state.
type stateTable [numDirs][numEvents][numTCPStates]State

// Short names, so that each row below lines up with the kernel's table
// (columns: NO ES SS SR FW TW CL CW LA LI SA).
const (
	sNO = StateNone
	sES = StateEstablished
	sSS = StateSynSent
	sSR = StateSynRecv
	sFW = StateFinWait
	sTW = StateTimeWait
	sCL = StateClose
	sCW = StateCloseWait
	sLA = StateLastAck
	sLI = StateListen
	sSA = StateSynAck
)

// tcpStates is IPVS's tcp_states: the table used normally.
var tcpStates = stateTable{
	DirInput: {
		evSYN: {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
		evFIN: {sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW},
		evACK: {sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		evRST: {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR},
	},
	DirOutput: {
		evSYN: {sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR},
		evFIN: {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
		evACK: {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
		evRST: {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
	},
	DirInputOnly: {
		evSYN: {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
		evFIN: {sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW},
		evACK: {sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		evRST: {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
}

// tcpStatesDoS is IPVS's tcp_states_dos, used with secure_tcp: a client's
// ACK alone no longer establishes a NAT connection (the real server must
// answer first), so that a spoofed handshake cannot make entries active and
// long-lived.
var tcpStatesDoS = stateTable{
	DirInput: {
		evSYN: {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSA},
		evFIN: {sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sSA},
		evACK: {sCL, sES, sSS, sSR, sFW, sTW, sCL, sCW, sCL, sLI, sSA},
		evRST: {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
	DirOutput: {
		evSYN: {sSS, sES, sSS, sSA, sSS, sSS, sSS, sSS, sSS, sLI, sSA},
		evFIN: {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
		evACK: {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
		evRST: {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
	},
	DirInputOnly: {
		evSYN: {sSA, sES, sES, sSR, sSA, sSA, sSA, sSA, sSA, sSA, sSA},
		evFIN: {sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW},
		evACK: {sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		evRST: {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
}

// NextTCP returns the state that follows s when a segment with flags
// (FlagSYN, ...) passes in direction dir, per IPVS's set_tcp_state: the
// table row is chosen by RST, then SYN, FIN, ACK; a segment with none of
// them moves the connection to CLOSE, as in the kernel. secure selects
// IPVS's secure_tcp table (tcp_states_dos). Non-TCP states are returned
// unchanged.
func NextTCP(s State, flags uint8, dir Dir, secure bool) State {
	if int(s) >= numTCPStates || dir >= numDirs {
		return s
	}
	ev := eventOf(flags)
	if ev == evNone {
		return StateClose
	}
	if secure {
		return tcpStatesDoS[dir][ev][s]
	}
	return tcpStates[dir][ev][s]
}
