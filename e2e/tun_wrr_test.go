package e2e

import (
	"testing"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestTUNWRR balances HTTP over three TUN-mode (IPIP) real servers, 3:2:1:
// with `lvsd realserver` decapsulating on real servers whose kernel has no
// ipip module, and with the kernel's own tunl0 where the ipip module is
// loaded (skipped otherwise: a lab never loads a module).
func TestTUNWRR(t *testing.T) {
	t.Parallel() // see the package doc
	for _, m := range []lab.RealMethod{lab.RealTUNLvsd, lab.RealTUNKernel} {
		t.Run(string(m), func(t *testing.T) {
			bin, l := lab.NewTest(t)
			dt := l.DirectLab(m, m, m)
			servers := dt.StartHTTP(bin, 80)
			rsProcs := dt.StartRealservers(bin)
			capture := l.Capture(dt.Director, lab.TAPName)
			dt.StartLvsd(bin, lab.LvsdOptions{}, dt.Service(directHTTP))
			checkWRRPorts(t, dt, servers, 300)
			c := checkDirect(t, dt, capture)
			checkList(t, dt.Topology, bin, "Tunnel")

			// What each lvsd realserver did: every IPIP packet lvsd sent
			// it was written into its TUN, nothing else came.
			for name, p := range rsProcs {
				counts := lab.RealserverCounts(t, p)
				t.Logf("%s: %v", name, counts)
				var rip string
				for _, r := range dt.Reals {
					if r.Name == name {
						rip = r.Addr.String()
					}
				}
				if counts["injected"] != c.tunOut[rip] || counts["malformed"]+counts["not-vip"]+counts["not-director"]+counts["write-failed"] != 0 {
					t.Errorf("%s: counters %v; want injected = %d (the IPIP packets lvsd sent it) and no drop", name, counts, c.tunOut[rip])
				}
			}
		})
	}
}
