package director

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/lvsd/lvsd/internal/pkttest"
)

// TestScenarios runs the packet scenarios of testdata/packets through the
// whole director over an in-memory device (netstack, ARP resolution of the
// real server, fast path): a "transmit" scenario's frame must leave exactly
// as forward's unit test says; a "drop" or "held" scenario's frame must
// leave nothing;
// a "to-stack" scenario's TCP segment must be answered by the netstack
// (a closed port: RST to the client), not forwarded.
func TestScenarios(t *testing.T) {
	for _, sc := range pkttest.Scenarios(t) {
		t.Run(sc.Name, func(t *testing.T) {
			w := startDirector(t, sc.TOML())
			in, want := sc.Frames(t)
			isIP := func(p gopacket.Packet) bool { return p.Layer(layers.LayerTypeIPv4) != nil }
			switch sc.Verdict {
			case "transmit":
				// Until the real server's MAC is resolved the frame is
				// dropped (counted); the client sends it again, as TCP would.
				var got gopacket.Packet
				for try := 0; got == nil; try++ {
					if try == 25 {
						t.Fatal("the frame was never forwarded")
					}
					w.dev.Inject(in)
					got = w.within(200*time.Millisecond, isIP)
				}
				out := got.Data()
				if diff := cmp.Diff(sc.Comparable(want), sc.Comparable(out)); diff != "" {
					t.Errorf("output frame (-forward's +director's):\n%s", diff)
				}
				sc.CheckExpect(t, out)
			case "drop", "held":
				w.dev.Inject(in)
				if p := w.within(300*time.Millisecond, isIP); p != nil {
					t.Errorf("a dropped frame caused output: %v", p)
				}
			case "to-stack":
				// The client resolves the VIP first, so that the netstack
				// knows where to answer.
				w.dev.Inject(pkttest.ARPRequest(t, pkttest.CliMAC, pkttest.Cli4, pkttest.VIP4))
				w.dev.Inject(in)
				p := w.within(5*time.Second, isIP)
				if p == nil {
					t.Fatal("the netstack did not answer")
				}
				tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if !ok || !tcp.RST || p.Layer(layers.LayerTypeIPv4).(*layers.IPv4).DstIP.String() != pkttest.Cli4.String() {
					t.Errorf("want the netstack's RST to the client, got %v", p)
				}
			default:
				t.Fatalf("verdict %q", sc.Verdict)
			}
		})
	}
}

// within returns the next frame matching keep that the director writes
// within d, or nil.
func (w *wire) within(d time.Duration, keep func(gopacket.Packet) bool) gopacket.Packet {
	deadline := time.After(d)
	for {
		select {
		case p := <-w.out:
			if keep(p) {
				return p
			}
		case <-deadline:
			return nil
		}
	}
}
