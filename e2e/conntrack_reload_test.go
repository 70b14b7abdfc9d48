package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestConntrackReload follows one long-lived TCP connection (HTTP
// keep-alive) through reloads (config rewritten, SIGHUP): it survives while
// its real server is set to weight 0 and while other real servers are added
// and removed, and it is dropped once its own real server is removed
// (expire_nodest_conn, the default), after which new connections go to the
// remaining servers.
func TestConntrackReload(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{Reals: 4})
	tp.StartHTTP(bin, 8080)
	all := tp.Reals
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr", Method: "nat"}

	var p *lab.Proc
	reals := all[:3] // rs4 joins later
	tp.WithReals(reals, func() { p = tp.StartLvsd(bin, lab.LvsdOptions{}, svc) })
	reload := func(reals []lab.Real, weights []int) {
		t.Helper()
		s := svc
		s.Weights = weights
		tp.WithReals(reals, func() { tp.ReloadLvsd(p, s) })
	}
	names := func(rs []lab.Real) []string {
		var n []string
		for _, r := range rs {
			n = append(n, r.Name)
		}
		return n
	}

	keep := l.KeepAlive(tp.Client, 3*time.Second)
	mine, conn, err := keep.Get(vipURL)
	if err != nil {
		t.Fatalf("first request: %v", err)
	}
	t.Logf("long-lived connection %s -> %s", conn, mine)
	same := func(step string) {
		t.Helper()
		for range 3 {
			s, c, err := keep.Get(vipURL)
			if err != nil || s != mine || c != conn {
				t.Fatalf("%s: request on the long-lived connection: %s from %s (%v), want %s from %s", step, s, c, err, mine, conn)
			}
		}
	}
	newConns := func(step string, n int, want []string) {
		t.Helper()
		res := tp.Get(bin, vipURL, n)
		if res.OK != n {
			t.Fatalf("%s: %d new connections: %d ok; errors: %s", step, n, res.OK, strings.Join(res.Errors, "; "))
		}
		var got []string
		for s := range res.Servers {
			got = append(got, s)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: new connections went to %v, want %v", step, res.Servers, want)
		}
	}
	var others []lab.Real
	for _, r := range reals {
		if r.Name != mine {
			others = append(others, r)
		}
	}
	var me lab.Real
	for _, r := range reals {
		if r.Name == mine {
			me = r
		}
	}

	// Quiescent: weight 0; new connections avoid it, the old one goes on.
	w := make([]int, len(reals))
	for i, r := range reals {
		w[i] = 1
		if r.Name == mine {
			w[i] = 0
		}
	}
	reload(reals, w)
	same("weight 0")
	newConns("weight 0", 6, names(others))

	// Add rs4 and remove another server: the connection goes on.
	reals = []lab.Real{me, others[1], all[3]}
	reload(reals, []int{0, 1, 1})
	same("rs4 added, " + others[0].Name + " removed")
	newConns("rs4 added", 6, names(reals[1:]))

	// Back to weight 1, then remove its own server: the next packet ends
	// the connection (expire_nodest_conn) and, as in current kernels
	// (ip_vs_in_hook sets cp to NULL and tries to schedule it), is then a
	// packet without a connection: a non-SYN segment goes to the
	// director's stack, which holds the VIP and resets it. The client
	// learns at once instead of timing out, and its retry on a new
	// connection goes to a server that is still there.
	reload(reals, []int{1, 1, 1})
	same("weight 1 again")
	reals = reals[1:]
	reload(reals, nil)
	s, c, err := keep.Get(vipURL)
	switch {
	case err != nil:
		t.Errorf("a request on the connection to the removed %s failed (%v), want a reset and a retry on a new connection", mine, err)
	case c == conn || s == mine:
		t.Errorf("a request on the connection to the removed %s was answered by %s from %s, want the old connection reset and a new one to another server", mine, s, c)
	}
	newConns("its server removed", 6, names(reals))
}
