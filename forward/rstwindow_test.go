package forward_test

import (
	"testing"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// TestBlindRST: with the table's RST window check on (lvsd's default), an
// RST with a sequence number outside its receiver's window is dropped and
// counted (rst-window) and the NAT connection stays ESTABLISHED; an RST at
// the sender's sequence number closes it. A SYN on the established
// connection is forwarded (the real server answers it with a challenge
// ACK) and changes nothing. With the check off (IPVS), the blind RST
// closes the connection.
func TestBlindRST(t *testing.T) {
	for _, check := range []bool{true, false} {
		name := map[bool]string{true: "check", false: "ipvs"}[check]
		t.Run(name, func(t *testing.T) {
			d := rs(rip4, 8080, lvs.NAT)
			e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d})
			e.tab.SetCheckRST(check)
			// Client ISN 1000, server ISN 1000 (the builder's), windows 65535.
			for _, p := range []pkt{
				{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn},
				{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: syn | ack},
				{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, seq: 1001},
				{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: ack, seq: 1001, payload: "hello"},
			} {
				if v, _ := e.process(p.build(t), forward.VNetHdr{}); v != forward.Transmit {
					t.Fatalf("handshake: %v", v)
				}
			}
			in := lvs.Tuple{Src: lvs.AddrFromNetip(cli4), Dst: lvs.AddrFromNetip(vip4), SPort: 40000, DPort: 80, Proto: lvs.TCP}
			state := func() conntrack.State {
				ent, _ := e.tab.Lookup(&in)
				if ent == nil {
					return 0xff
				}
				return ent.State()
			}

			// A SYN on the established connection: forwarded, no change.
			if v, _ := e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, seq: 99}.build(t), forward.VNetHdr{}); v != forward.Transmit {
				t.Errorf("SYN on the established connection: %v, want Transmit", v)
			}
			if s := state(); s != conntrack.StateEstablished {
				t.Fatalf("after a SYN: %v", s)
			}

			// Blind RSTs from "the client" and from "the real server".
			for _, p := range []pkt{
				{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: rst, seq: 1006 + 1<<30},
				{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: rst | ack, seq: 1001 + 3<<29},
			} {
				before := e.f.Counters()
				v, _ := e.process(p.build(t), forward.VNetHdr{})
				if !check {
					if v != forward.Transmit || state() != conntrack.StateClose {
						t.Fatalf("IPVS: blind RST %v, state %v; want Transmit, CLOSE", v, state())
					}
					return
				}
				if v != forward.Drop {
					t.Fatalf("blind RST: %v, want Drop", v)
				}
				if r := e.dropReason(before); r != forward.DropRSTWindow {
					t.Errorf("drop reason %v, want rst-window", r)
				}
				if s := state(); s != conntrack.StateEstablished {
					t.Fatalf("after a blind RST: %v", s)
				}
			}
			if n := e.tab.Stats().RSTOutOfWindow; n != 2 {
				t.Errorf("RSTOutOfWindow %d, want 2", n)
			}
			// The client's own RST, at its next sequence number.
			if v, _ := e.process(pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: rst, seq: 1006}.build(t), forward.VNetHdr{}); v != forward.Transmit {
				t.Fatalf("the client's RST: %v", v)
			}
			if s := state(); s != conntrack.StateClose {
				t.Errorf("after the client's RST: %v, want CLOSE", s)
			}
		})
	}
}
