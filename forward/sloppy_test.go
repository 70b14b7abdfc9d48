package forward_test

import (
	"net/netip"
	"testing"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// TestSloppyTCP checks IPVS's sloppy_tcp: with it, a mid-flow segment to a
// service that matches no connection (lvsd restarted without its table) is
// scheduled and opens a connection, in IPVS's state for its flags; a RST never does; without
// it, such a segment goes to the netstack, which resets it.
func TestSloppyTCP(t *testing.T) {
	const psh = 0x08
	in := lvs.Tuple{Src: lvs.AddrFromNetip(cli4), Dst: lvs.AddrFromNetip(vip4), SPort: 40000, DPort: 80, Proto: lvs.TCP}
	tests := []struct {
		name   string
		sloppy bool
		flags  uint8
		want   forward.Verdict
		state  conntrack.State // when want is Transmit
	}{
		{"off: ack to the netstack", false, ack, forward.ToStack, 0},
		{"off: data to the netstack", false, ack | psh, forward.ToStack, 0},
		{"off: syn scheduled", false, syn, forward.Transmit, conntrack.StateSynRecv},
		// IPVS's tcp_states: an ACK from NONE goes to CLOSE (10 s), where
		// the flow's own segments keep it (and refresh its timer).
		{"on: ack scheduled, close", true, ack, forward.Transmit, conntrack.StateClose},
		{"on: data scheduled, close", true, ack | psh, forward.Transmit, conntrack.StateClose},
		{"on: fin scheduled", true, fin | ack, forward.Transmit, conntrack.StateClose},
		{"on: rst to the netstack", true, rst | ack, forward.ToStack, 0},
		{"on: syn scheduled", true, syn, forward.Transmit, conntrack.StateSynRecv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rs(rip4, 8080, lvs.NAT)
			e := newEnv(t, envOpts{}, svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: d})
			e.cfg.SloppyTCP = tt.sloppy
			e.f.SetConfig(e.cfg)
			frame := pkt{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: tt.flags, payload: "GET"}.build(t)
			v, p := e.process(frame, forward.VNetHdr{})
			if v != tt.want {
				t.Fatalf("verdict %v, want %v", v, tt.want)
			}
			ent, _ := e.tab.Lookup(&in)
			if tt.want != forward.Transmit {
				if ent != nil {
					t.Errorf("connection created: %v", ent.State())
				}
				return
			}
			if ent == nil {
				t.Fatal("no connection")
			}
			if ent.State() != tt.state || ent.Dest != d {
				t.Errorf("state %v dest %v, want %v %v", ent.State(), ent.Dest, tt.state, d)
			}
			ip := ipOf(forward.Ethernet, p.Buf[p.Off:p.Off+p.Len])
			if got, _ := netip.AddrFromSlice(ip[16:20]); got != rip4 {
				t.Errorf("forwarded to %v, want %v", got, rip4)
			}
		})
	}
}
