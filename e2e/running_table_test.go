package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/lvsd/lvsd/internal/lab"
)

// TestRunningTableOrder checks the kernel's list order and the scheduler
// state across reloads through real devices: real servers rs1, rs2, rs3 of
// the file make the list rs3, rs2, rs1, so rr goes rs3 → rs2 → rs1; a
// reload of the same file keeps rr's position (the scheduler is not
// rebuilt); a real server removed by a reload and added again by the next
// one comes back at the head of the list, so the cycle becomes
// rs2 → rs3 → rs1.
func TestRunningTableOrder(t *testing.T) {
	t.Parallel() // see the package doc
	bin, l := lab.NewTest(t)
	tp := l.NATLab(lab.Options{Reals: 3})
	tp.StartHTTP(bin, 8080)
	svc := lab.Service{Port: 80, RealPort: 8080, Scheduler: "rr", Method: "nat"}
	p := tp.StartLvsd(bin, lab.LvsdOptions{}, svc)
	all := tp.Reals

	get := func() string {
		t.Helper()
		s, _, err := tp.GetFrom(lab.ClientIP, vipURL, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// follows checks that the servers of seq take turns in the cyclic
	// order of cycle.
	follows := func(step string, seq []string, cycle ...string) {
		t.Helper()
		next := map[string]string{}
		for i, s := range cycle {
			next[s] = cycle[(i+1)%len(cycle)]
		}
		for i := 1; i < len(seq); i++ {
			if next[seq[i-1]] != seq[i] {
				t.Fatalf("%s: rr went %s; want the cycle %s", step, strings.Join(seq, " "), strings.Join(cycle, " → "))
			}
		}
	}

	var seq []string
	for range 4 {
		seq = append(seq, get())
	}
	follows("start", seq, "rs3", "rs2", "rs1")
	last := seq[len(seq)-1]
	if last == "rs1" {
		// After rs1 comes the list head, rs3, whether rr's position
		// survived or not: move on so that the reload tells.
		last = get()
		seq = append(seq, last)
	}

	tp.ReloadLvsd(p, svc) // the same file
	after := get()
	follows("across a reload of the same file", append(seq, after), "rs3", "rs2", "rs1")

	// rs2 removed, then added again: at the head.
	tp.WithReals([]lab.Real{all[0], all[2]}, func() { tp.ReloadLvsd(p, svc) })
	tp.ReloadLvsd(p, svc)
	seq = nil
	for range 4 {
		seq = append(seq, get())
	}
	follows("after rs2 was removed and added again", seq, "rs2", "rs3", "rs1")
}
