package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/internal/lab"
)

// TestHealthFailureKeepsOrEndsConnections: a real server whose check fails
// (its health endpoint, on another port, stops) while a client holds a
// keep-alive connection to it. With inhibit_on_failure its weight goes to
// 0 and the established connection goes on; by default it is removed as
// `ipvsadm -d` would remove it, and with expire_nodest_conn (lvsd's
// default) the connection ends at its next packet. New connections avoid
// it either way.
func TestHealthFailureKeepsOrEndsConnections(t *testing.T) {
	t.Parallel() // see the package doc
	lab.Skip(t)
	bin := lab.BuildBinaries(t)
	for _, inhibit := range []bool{true, false} {
		name := "removed"
		if inhibit {
			name = "inhibit_on_failure"
		}
		t.Run(name, func(t *testing.T) {
			l := lab.New(t)
			tp := l.NATLab(lab.Options{})
			tp.StartHTTP(bin, 8080)
			var probes []*lab.Proc
			for _, r := range tp.Reals {
				p := l.Start(r.NS, r.Name+"-health", bin.Labserver, "http", "-listen", ":8081", "-name", r.Name)
				if err := p.WaitOutput("listening", 10*time.Second); err != nil {
					t.Fatal(err)
				}
				probes = append(probes, p)
			}
			check := checkTable(`  type = "http"`, `  port = 8081`, `  interval = "300ms"`, `  timeout = "500ms"`,
				`  fall = 1`, `  warmup = "100ms"`)
			if inhibit {
				check = append(check, `  inhibit_on_failure = true`)
			}
			svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "wrr", Extra: check}
			tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
			waitHealth(t, tp, 10*time.Second, func(st *control.Status) string { return allUp(st, "198.18.1.100:80", 3) })

			keep := l.KeepAlive(tp.Client, 3*time.Second)
			held, conn, err := keep.Get(vipURL)
			if err != nil {
				t.Fatal(err)
			}
			idx := int(held[len(held)-1] - '1')
			probes[idx].Stop()
			addr := tp.Reals[idx].Addr.String() + ":8080"
			st := waitHealth(t, tp, 5*time.Second, func(st *control.Status) string {
				if h := healthOf(st, "tcp", "198.18.1.100:80")[addr]; h == nil || h.State != "down" {
					return "the check of " + addr + " has not failed yet"
				}
				return ""
			})
			for _, s := range st.Services {
				for _, r := range s.Reals {
					if r.Address == addr {
						t.Logf("%s after its check failed: weight %d, available %v", addr, r.Weight, r.Available)
						if inhibit && r.Weight != 0 {
							t.Errorf("inhibited %s has weight %d, want 0", addr, r.Weight)
						}
					}
				}
			}

			s, c, err := keep.Get(vipURL)
			switch {
			case inhibit && (err != nil || s != held || c != conn):
				t.Errorf("established connection after the check failed: %s from %s (%v), want %s from %s", s, c, err, held, conn)
			case !inhibit && err == nil && s == held && c == conn:
				t.Errorf("established connection to the removed %s went on (expire_nodest_conn is on)", held)
			}
			res := tp.Get(bin, vipURL, 12)
			if res.OK != 12 || res.Servers[held] != 0 {
				t.Errorf("12 new connections after %s failed: %d ok, %v; errors: %s", held, res.OK, res.Servers, strings.Join(res.Errors, "; "))
			}
		})
	}
}
