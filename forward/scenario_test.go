package forward_test

import (
	"encoding/hex"
	"flag"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/internal/pkttest"
	"github.com/lvsd/lvsd/lvs"
)

var update = flag.Bool("update", false, "rewrite the frames and verdicts of testdata/packets from this run")

// TestScenarios runs every packet scenario of testdata/packets through a
// Worker: the input frame must get the scenario's verdict (and drop reason)
// and, for a Transmit, become exactly the scenario's output frame, which
// must also match the scenario's hand-written expectations. With -update the
// files take this run's frames and verdicts (review the diff).
func TestScenarios(t *testing.T) {
	for _, sc := range pkttest.Scenarios(t) {
		t.Run(sc.Name, func(t *testing.T) {
			built := sc.In.Build(t)
			if *update {
				sc.InFrame = hex.EncodeToString(built)
			}
			in, want := sc.Frames(t)
			if diff := cmp.Diff(built, in); diff != "" {
				t.Fatalf("in_frame is not the frame that \"in\" describes (run with -update) (-built +file):\n%s", diff)
			}
			e := scenarioEnv(t, sc)
			before := e.f.Counters()
			v, p := e.process(in, forward.VNetHdr{})
			var drop string
			if v == forward.Drop {
				drop = e.dropReason(before).String()
			}
			var out []byte
			if v == forward.Transmit {
				out = p.Frame()
			}
			if *update {
				sc.Verdict, sc.Drop, sc.Out = v.String(), drop, hex.EncodeToString(out)
				sc.Write(t)
				want = out
			}
			if v.String() != sc.Verdict || drop != sc.Drop {
				t.Fatalf("verdict %v (drop %q), want %s (drop %q)", v, drop, sc.Verdict, sc.Drop)
			}
			if diff := cmp.Diff(sc.Comparable(want), sc.Comparable(out)); diff != "" {
				t.Errorf("output frame (-want +got):\n%s", diff)
			}
			if v == forward.Transmit {
				sc.CheckExpect(t, out)
			}
		})
	}
}

// scenarioEnv is a Worker with the scenario's service; its real server's
// MAC is known (pkttest.RSMAC).
func scenarioEnv(t *testing.T, sc *pkttest.Scenario) *env {
	t.Helper()
	methods := map[string]lvs.Method{"nat": lvs.NAT, "dr": lvs.DR, "tun": lvs.TUN}
	protos := map[string]lvs.Proto{"tcp": lvs.TCP, "udp": lvs.UDP}
	m, ok := methods[sc.Service.Method]
	proto, ok2 := protos[sc.Service.Proto]
	real, err := netip.ParseAddrPort(sc.Service.Real)
	vip, err2 := netip.ParseAddr(sc.Service.VIP)
	if !ok || !ok2 || err != nil || err2 != nil {
		t.Fatalf("service %+v: method, proto, real or vip invalid", sc.Service)
	}
	return newEnv(t, envOpts{}, svcSpec{vip: vip, port: sc.Service.Port, proto: proto, dest: rs(real.Addr(), real.Port(), m), tunSrc: dip4})
}
