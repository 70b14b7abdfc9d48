package conntrack

import (
	"fmt"
	"testing"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// seg is one segment of a flow: its flags, whose it is, and what the table
// must show afterwards (per the kernel's tcp_states / tcp_states_dos).
type seg struct {
	flags      uint8
	fromClient bool
	want       State
	timeout    time.Duration
	conns      conns // the real server's active and inactive counts
}

const (
	syn    = FlagSYN
	synack = FlagSYN | FlagACK
	ack    = FlagACK
	fin    = FlagFIN | FlagACK
	rst    = FlagRST
	rstack = FlagRST | FlagACK
)

// cli and srv: a segment from the client and from the real server.
const cli, srv = true, false

var (
	act   = conns{Active: 1}
	inact = conns{Inactive: 1}
)

// TestTCPFlows walks TCP flows segment by segment through the table and
// checks state, timeout and the real server's active/inactive counts after
// each, against IPVS's tables: the full table for NAT (both directions
// seen), the input-only table for DR and TUN, and the secure_tcp tables.
func TestTCPFlows(t *testing.T) {
	tests := []struct {
		name   string
		method lvs.Method
		secure bool
		segs   []seg
	}{
		{"nat: handshake, data, client closes first", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act}, // data
			{ack, srv, StateEstablished, DefaultTCPTimeout, act}, // data
			{fin, cli, StateCloseWait, TCPCloseWaitTimeout, inact},
			{ack, srv, StateCloseWait, TCPCloseWaitTimeout, inact},
			{fin, srv, StateTimeWait, TCPTimeWaitTimeout, inact},
			{ack, cli, StateTimeWait, TCPTimeWaitTimeout, inact},
		}},
		{"nat: real server closes first", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{fin, srv, StateFinWait, DefaultTCPFinTimeout, inact},
			{ack, cli, StateFinWait, DefaultTCPFinTimeout, inact},
			{ack, srv, StateFinWait, DefaultTCPFinTimeout, inact}, // more data from the server
			{fin, cli, StateTimeWait, TCPTimeWaitTimeout, inact},
			{ack, srv, StateTimeWait, TCPTimeWaitTimeout, inact},
		}},
		{"nat: simultaneous close", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{fin, cli, StateCloseWait, TCPCloseWaitTimeout, inact},
			{fin, srv, StateTimeWait, TCPTimeWaitTimeout, inact},
			{ack, cli, StateTimeWait, TCPTimeWaitTimeout, inact},
			{ack, srv, StateTimeWait, TCPTimeWaitTimeout, inact},
		}},
		{"nat: retransmitted SYN and SYN-ACK", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{synack, srv, StateEstablished, DefaultTCPTimeout, act}, // late retransmission
			{syn, cli, StateEstablished, DefaultTCPTimeout, act},
		}},
		{"nat: real server resets", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{rstack, srv, StateClose, TCPCloseTimeout, inact},
			{ack, cli, StateClose, TCPCloseTimeout, inact},
			{fin, cli, StateClose, TCPCloseTimeout, inact},
		}},
		{"nat: client resets", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{rst, cli, StateClose, TCPCloseTimeout, inact},
		}},
		{"nat: port closed on the real server", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{rstack, srv, StateClose, TCPCloseTimeout, inact},
			{syn, cli, StateSynRecv, TCPSynTimeout, inact}, // the client tries again
		}},
		{"nat: a client's RST in SYN_RECV is ignored (IPVS)", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{rst, cli, StateSynRecv, TCPSynTimeout, inact},
		}},
		{"nat: a segment without flags closes (IPVS)", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{0, cli, StateClose, TCPCloseTimeout, inact},
		}},
		{"nat: real server speaks first", lvs.NAT, false, []seg{
			{synack, srv, StateSynSent, TCPSynSentTimeout, inact},
			{ack, cli, StateSynSent, TCPSynSentTimeout, inact},
		}},
		{"nat: real server resets a half-closed connection", lvs.NAT, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{fin, cli, StateCloseWait, TCPCloseWaitTimeout, inact},
			{ack, srv, StateCloseWait, TCPCloseWaitTimeout, inact},
			{rst, srv, StateClose, TCPCloseTimeout, inact},
		}},
		{"dr: handshake, data, close (input only)", lvs.DR, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{fin, cli, StateFinWait, DefaultTCPFinTimeout, inact},
			{ack, cli, StateFinWait, DefaultTCPFinTimeout, inact}, // the client acks the server's FIN
		}},
		{"dr: retransmits and reset", lvs.DR, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{syn, cli, StateEstablished, DefaultTCPTimeout, act},
			{rst, cli, StateClose, TCPCloseTimeout, inact},
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{fin, cli, StateTimeWait, TCPTimeWaitTimeout, inact},
		}},
		{"tun: a reply seen ends input-only (NOOUTPUT cleared)", lvs.TUN, false, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{synack, srv, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{fin, cli, StateCloseWait, TCPCloseWaitTimeout, inact}, // the full table's answer
		}},
		{"nat secure_tcp: the real server must answer", lvs.NAT, true, []seg{
			{syn, cli, StateSynRecv, TCPSynTimeout, inact},
			{ack, cli, StateSynRecv, TCPSynTimeout, inact}, // a spoofed handshake stays half-open
			{synack, srv, StateSynAck, TCPSynAckTimeout, inact},
			{ack, cli, StateSynAck, TCPSynAckTimeout, inact},
			{ack, srv, StateEstablished, DefaultTCPTimeout, act},
			{fin, cli, StateCloseWait, TCPCloseWaitTimeout, inact},
		}},
		{"dr secure_tcp", lvs.DR, true, []seg{
			{syn, cli, StateSynAck, TCPSynAckTimeout, inact},
			{ack, cli, StateEstablished, DefaultTCPTimeout, act},
			{fin, cli, StateFinWait, DefaultTCPFinTimeout, inact},
			{syn, cli, StateSynAck, TCPSynAckTimeout, inact},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{}
			tab := New(Options{Clock: c.now, SecureTCP: tt.secure})
			in := tuple(lvs.TCP, "192.0.2.10", 40000, "192.0.2.100", 80)
			d := dest("192.0.2.21", 80, tt.method)
			e, _, err := tab.Insert(&in, d, nil, lvs.MAC{}, c.now())
			if err != nil {
				t.Fatal(err)
			}
			if e.State() != StateNone || connsOf(d) != inact || e.Expires(c.now()) != TCPNoneTimeout {
				t.Fatalf("new entry: %v %+v %v; want NONE, inactive, 2s", e.State(), connsOf(d), e.Expires(c.now()))
			}
			for i, s := range tt.segs {
				c.advance(10 * time.Millisecond)
				tab.Update(e, s.flags, s.fromClient, c.now())
				got := fmt.Sprintf("%v %v %+v", e.State(), e.Expires(c.now()), connsOf(d))
				want := fmt.Sprintf("%v %v %+v", s.want, s.timeout, s.conns)
				if got != want {
					dir := "from the real server"
					if s.fromClient {
						dir = "from the client"
					}
					t.Fatalf("segment %d (%s %s): got %s, want %s", i, flagNames(s.flags), dir, got, want)
				}
			}
		})
	}
}

func flagNames(f uint8) string {
	s := ""
	for _, b := range []struct {
		bit  uint8
		name string
	}{{FlagSYN, "S"}, {FlagACK, "A"}, {FlagFIN, "F"}, {FlagRST, "R"}} {
		if f&b.bit != 0 {
			s += b.name
		}
	}
	if s == "" {
		return "."
	}
	return s
}

// TestTCPTables checks properties of the transcribed tables that a typo
// would break: every cell is a TCP state, and neither a FIN nor an RST ever
// establishes a connection.
func TestTCPTables(t *testing.T) {
	for _, tab := range []*stateTable{&tcpStates, &tcpStatesDoS} {
		for dir := range numDirs {
			for ev := range numEvents {
				for s := range numTCPStates {
					n := tab[dir][ev][s]
					if int(n) >= numTCPStates {
						t.Errorf("[%d][%d][%v] = %v: not a TCP state", dir, ev, State(s), n)
					}
					if n == StateEstablished && State(s) != StateEstablished && (ev == evFIN || ev == evRST) {
						t.Errorf("[%d][%d][%v] establishes on a FIN or RST", dir, ev, State(s))
					}
				}
			}
		}
	}
	if NextTCP(StateUDP, FlagSYN, DirInput, false) != StateUDP {
		t.Error("NextTCP moved a UDP state")
	}
}
