package e2e

import (
	"testing"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestMixedMethods runs one service over a NAT, a DR and a TUN real server
// (ipvsadm allows a method per real server), wrr 3:2:1: every request
// succeeds, the share is exact, each real server sees the client's address
// and gets its packets by its own method, and only the NAT server's replies
// pass through the director.
func TestMixedMethods(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	dt := l.DirectLab(lab.RealNAT, lab.RealDR, lab.RealTUNLvsd)
	servers := dt.StartHTTP(bin, 80)
	dt.StartRealservers(bin)
	capture := l.Capture(dt.Director, lab.TAPName)
	svc := dt.Service(lab.Service{Protocol: "tcp", Port: 80, Scheduler: "wrr", Method: "dr", Weights: []int{3, 2, 1}})
	dt.StartLvsd(bin, lab.LvsdOptions{}, svc)
	checkWRRPorts(t, dt, servers, 300)
	checkDirect(t, dt, capture)
	checkList(t, dt.Topology, bin, "Masq", "Route", "Tunnel")
}
