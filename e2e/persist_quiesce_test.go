package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestQuiesceOnReload checks weight 0 end to end: a reload (SIGHUP) that
// sets a real server's weight to 0 stops new connections to it, while a
// connection established before keeps going to it; raising the weight again
// brings new connections back.
func TestQuiesceOnReload(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{})
	tp.StartHTTP(bin, 8080)
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "wrr", Method: "nat", Weights: []int{1, 1, 1}}
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)

	// One keep-alive connection: every request on it answers from the same
	// server and client port.
	keep := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext(tp.Client), MaxIdleConnsPerHost: 1}}
	defer keep.CloseIdleConnections()
	ask := func() (server, client string) {
		t.Helper()
		resp, err := keep.Get(vipURL)
		if err != nil {
			t.Fatalf("keep-alive request: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Lab-Server"), resp.Header.Get("X-Lab-Client")
	}
	quiet, conn := ask()
	idx := int(quiet[len(quiet)-1] - '1') // rs1 -> 0
	if idx < 0 || idx >= len(tp.Reals) {
		t.Fatalf("answer from %q", quiet)
	}

	weights := []int{1, 1, 1}
	weights[idx] = 0
	svc.Weights = weights
	tp.ReloadLvsd(p, svc)

	res := tp.Get(bin, vipURL, 12)
	if res.OK != 12 {
		t.Fatalf("12 new connections after quiescing %s: %d ok; errors: %s", quiet, res.OK, strings.Join(res.Errors, "; "))
	}
	if res.Servers[quiet] != 0 {
		t.Errorf("quiescent %s took %d of 12 new connections: %v", quiet, res.Servers[quiet], res.Servers)
	}
	if len(res.Servers) != 2 {
		t.Errorf("new connections went to %v, want the two other servers", res.Servers)
	}
	for i := range 3 {
		if s, c := ask(); s != quiet || c != conn {
			t.Errorf("request %d on the established connection: %s from %s, want %s from %s", i, s, c, quiet, conn)
		}
	}

	svc.Weights = []int{1, 1, 1}
	tp.ReloadLvsd(p, svc)
	res = tp.Get(bin, vipURL, 6)
	if res.Servers[quiet] != 2 {
		t.Errorf("after restoring %s's weight, 6 new connections went %v; want 2 each", quiet, res.Servers)
	}
}
