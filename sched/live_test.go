package sched

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lvsd/lvsd/lvs"
)

// The kernel's model of a service's destinations, written plainly from its
// behaviour: a circular doubly linked list with a head (ip_vs_service's
// destinations), ipvsadm -a linking at the head (list_add_rcu), ipvsadm -d
// unlinking, and the callbacks of rr and wrr, which keep a cursor into the
// list. The tests run the same command sequence on the kernel model and on
// a Scheduler and compare every choice.

type knode struct {
	d          *lvs.Dest // nil for the head
	prev, next *knode
}

type klist struct{ head knode }

func newKList() *klist {
	l := &klist{}
	l.head.prev, l.head.next = &l.head, &l.head
	return l
}

func (l *klist) add(d *lvs.Dest) *knode { // list_add: after the head
	n := &knode{d: d, prev: &l.head, next: l.head.next}
	l.head.next.prev = n
	l.head.next = n
	return n
}

func (l *klist) find(d *lvs.Dest) *knode {
	for n := l.head.next; n != &l.head; n = n.next {
		if n.d == d {
			return n
		}
	}
	return nil
}

func (l *klist) del(n *knode) { n.prev.next, n.next.prev = n.next, n.prev }

func (l *klist) dests() []*lvs.Dest {
	var ds []*lvs.Dest
	for n := l.head.next; n != &l.head; n = n.next {
		ds = append(ds, n.d)
	}
	return ds
}

// kernelSched is the kernel's side of a test: the list and the scheduler's
// callbacks. For schedulers whose kernel callbacks only rebuild from the
// list or do nothing (all but rr and wrr), choices are those of a scheduler
// freshly built over the kernel's list, which ref builds.
type kernelSched interface {
	add(d *lvs.Dest)
	del(d *lvs.Dest)
	upd(d *lvs.Dest)
	schedule(t *lvs.Tuple) *lvs.Dest
}

// krr is ip_vs_rr: sched_data points at the node chosen last (the head at
// first); del_dest moves it back to the deleted node's predecessor.
type krr struct {
	l   *klist
	cur *knode
}

func (k *krr) add(d *lvs.Dest) { k.l.add(d) }
func (k *krr) del(d *lvs.Dest) {
	n := k.l.find(d)
	if k.cur == n {
		k.cur = n.prev
	}
	k.l.del(n)
}
func (k *krr) upd(*lvs.Dest) {}
func (k *krr) schedule(*lvs.Tuple) *lvs.Dest {
	last := k.cur
	for n := k.cur.next; n != &k.l.head; n = n.next {
		if n.d.Usable() {
			k.cur = n
			return n.d
		}
		if n == last {
			return nil
		}
	}
	if k.cur == &k.l.head {
		return nil
	}
	// Second pass from the head.
	for n := k.l.head.next; n != &k.l.head; n = n.next {
		if n.d.Usable() {
			k.cur = n
			return n.d
		}
		if n == last {
			return nil
		}
	}
	return nil
}

// kwrr is ip_vs_wrr with ip_vs_wrr_dest_changed on every change.
type kwrr struct {
	l          *klist
	cl         *knode
	cw, mw, di int32
}

func (k *kwrr) changed() {
	k.cl = &k.l.head
	var g, mx int32
	for _, d := range k.l.dests() {
		if w := d.Weight.Load(); w > 0 {
			if g == 0 {
				g = w
			} else {
				for a, b := g, w; ; {
					if b == 0 {
						g = a
						break
					}
					a, b = b, a%b
				}
			}
			mx = max(mx, w)
		}
	}
	if g == 0 {
		g = 1
	}
	k.di, k.mw = g, mx-(g-1)
	if k.cw > k.mw || k.cw == 0 {
		k.cw = k.mw
	} else if k.di > 1 {
		k.cw = (k.cw/k.di)*k.di + 1
	}
}
func (k *kwrr) add(d *lvs.Dest) { k.l.add(d); k.changed() }
func (k *kwrr) del(d *lvs.Dest) {
	n := k.l.find(d)
	k.l.del(n)
	k.changed()
}
func (k *kwrr) upd(*lvs.Dest) { k.changed() }
func (k *kwrr) schedule(*lvs.Tuple) *lvs.Dest {
	if k.mw == 0 {
		return nil
	}
	last := k.cl
	var stop *knode
	lastPass, restarted := false, false
	n := k.cl
	for {
		for n = n.next; n != &k.l.head; n = n.next {
			if !n.d.Overloaded.Load() && n.d.Weight.Load() >= k.cw {
				k.cl = n
				return n.d
			}
			if n == stop {
				k.cl = n
				return nil
			}
		}
		k.cw -= k.di
		if k.cw <= 0 {
			k.cw = k.mw
			if lastPass || last == &k.l.head {
				k.cl = n
				return nil
			}
			restarted = true
		}
		lastPass = k.cw <= k.di
		if lastPass && restarted && last != &k.l.head {
			stop = last
		}
	}
}

// kfresh stands for a kernel scheduler whose callbacks rebuild from the list
// or do nothing: its choices are those of a scheduler built over the list.
type kfresh struct {
	l    *klist
	name string
	opts Options
	s    Scheduler
	t    *testing.T
}

func (k *kfresh) rebuild() {
	s, err := New(k.name, k.l.dests(), k.opts)
	if err != nil {
		k.t.Fatal(err)
	}
	k.s = s
}
func (k *kfresh) add(d *lvs.Dest)                 { k.l.add(d); k.rebuild() }
func (k *kfresh) del(d *lvs.Dest)                 { k.l.del(k.l.find(d)); k.rebuild() }
func (k *kfresh) upd(*lvs.Dest)                   { k.rebuild() }
func (k *kfresh) schedule(t *lvs.Tuple) *lvs.Dest { return k.s.Schedule(t) }

// kwlc is the kernel's wlc over a list, as lblc and lblcr call it: the
// least overhead/weight among destinations of positive weight without
// OVERLOAD, the first of equals.
func kwlc(list []*lvs.Dest) *lvs.Dest {
	var least *lvs.Dest
	for _, d := range list {
		if d.Weight.Load() <= 0 || d.Overloaded.Load() || !d.Available.Load() {
			continue
		}
		if least == nil || least.Conns()*int64(d.Weight.Load()) > d.Conns()*int64(least.Weight.Load()) {
			least = d
		}
	}
	return least
}

// koverloaded is is_overloaded of lblc and lblcr.
func koverloaded(d *lvs.Dest, list []*lvs.Dest) bool {
	if d.ActiveConns.Load() <= d.Weight.Load() {
		return false
	}
	for _, m := range list {
		if m.ActiveConns.Load()*2 < m.Weight.Load() {
			return true
		}
	}
	return false
}

// klblc is ip_vs_lblc without its timer: no callbacks, the table kept.
type klblc struct {
	l   *klist
	tab map[lvs.Addr]*lvs.Dest
}

func (k *klblc) add(d *lvs.Dest)     { k.l.add(d) }
func (k *klblc) del(d *lvs.Dest)     { k.l.del(k.l.find(d)) }
func (k *klblc) upd(*lvs.Dest)       {}
func (k *klblc) listOf() []*lvs.Dest { return k.l.dests() }
func (k *klblc) schedule(t *lvs.Tuple) *lvs.Dest {
	if d := k.tab[t.Dst]; d != nil && d.Available.Load() && d.Weight.Load() > 0 && !koverloaded(d, k.l.dests()) {
		return d
	}
	d := kwlc(k.l.dests())
	if d != nil {
		k.tab[t.Dst] = d
	}
	return d
}

// klblcr is ip_vs_lblcr without its timer and set expiry (the clock stands
// still): no callbacks, the sets kept, a new member at the head of its set.
type klblcr struct {
	l   *klist
	tab map[lvs.Addr][]*lvs.Dest
}

func (k *klblcr) add(d *lvs.Dest)     { k.l.add(d) }
func (k *klblcr) del(d *lvs.Dest)     { k.l.del(k.l.find(d)) }
func (k *klblcr) upd(*lvs.Dest)       {}
func (k *klblcr) listOf() []*lvs.Dest { return k.l.dests() }
func (k *klblcr) schedule(t *lvs.Tuple) *lvs.Dest {
	set, ok := k.tab[t.Dst]
	if ok {
		if d := kwlc(set); d != nil && !koverloaded(d, k.l.dests()) {
			return d
		}
	}
	d := kwlc(k.l.dests())
	if d == nil {
		return nil
	}
	if !slices.Contains(set, d) {
		k.tab[t.Dst] = append([]*lvs.Dest{d}, set...)
	}
	return d
}

// liveStep is one command: "a2" adds destination 2 (ipvsadm -a), "d2"
// deletes it (ipvsadm -d), "w2=0" sets its weight (ipvsadm -e), "s5"
// schedules five new connections.
func runLive(t *testing.T, name string, opts Options, ds []*lvs.Dest, weights []int32, script string) (live, kernel []string) {
	t.Helper()
	var k kernelSched
	l := newKList()
	switch name {
	case "rr":
		k = &krr{l: l, cur: &l.head}
	case "wrr":
		w := &kwrr{l: l}
		w.changed()
		k = w
	case "lblc":
		k = &klblc{l: l, tab: map[lvs.Addr]*lvs.Dest{}}
	case "lblcr":
		k = &klblcr{l: l, tab: map[lvs.Addr][]*lvs.Dest{}}
	default:
		f := &kfresh{l: l, name: name, opts: opts, t: t}
		f.rebuild()
		k = f
	}
	s := mustNew(t, name, nil, opts)
	ts := flows(64)
	for i, tp := range ts {
		tp.Dst = origin(i % 8) // dh, lblc and lblcr hash the destination
	}
	next := 0
	for _, cmd := range strings.Fields(script) {
		var i, n int
		var w int32
		switch cmd[0] {
		case 'a':
			fmt.Sscanf(cmd, "a%d", &i)
			ds[i].Weight.Store(weights[i])
			ds[i].LastWeight.Store(weights[i])
			if err := s.AddDest(ds[i]); err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			k.add(ds[i])
		case 'd':
			fmt.Sscanf(cmd, "d%d", &i)
			if err := s.DelDest(ds[i]); err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			k.del(ds[i])
		case 'w':
			fmt.Sscanf(cmd, "w%d=%d", &i, &w)
			ds[i].SetWeight(w, 0)
			if err := s.UpdDest(ds[i]); err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			k.upd(ds[i])
		case 's':
			fmt.Sscanf(cmd, "s%d", &n)
			for range n {
				tp := ts[next%len(ts)]
				next++
				live = append(live, label(ds, s.Schedule(tp)))
				kernel = append(kernel, label(ds, k.schedule(tp)))
			}
		}
		if kl, ll := labels(ds, k.(interface{ listOf() []*lvs.Dest }).listOf()), labels(ds, s.Dests()); kl != ll {
			t.Fatalf("after %s: list %s, kernel's %s", cmd, ll, kl)
		}
	}
	return live, kernel
}

// labels names the destinations of list by their positions in ds.
func labels(ds, list []*lvs.Dest) string {
	var b strings.Builder
	for _, d := range list {
		b.WriteString(label(ds, d))
	}
	return b.String()
}

func (k *krr) listOf() []*lvs.Dest    { return k.l.dests() }
func (k *kwrr) listOf() []*lvs.Dest   { return k.l.dests() }
func (k *kfresh) listOf() []*lvs.Dest { return k.l.dests() }

// TestLiveChangesMatchKernel runs, for every scheduler, a sequence of adds,
// a removal and re-add (as a health check's ipvsadm -d and -a), an inhibit
// and restore (ipvsadm -e -w 0, then the old weight) and a weight change,
// with connections in between, and checks that every choice and the list
// equal the kernel model's.
func TestLiveChangesMatchKernel(t *testing.T) {
	weights := []int32{4, 3, 2, 1, 5}
	scripts := map[string]string{
		"remove and re-add":   "a0 a1 a2 a3 s7 d1 s5 a1 s9 d2 d3 s4 a3 a2 s11",
		"inhibit and restore": "a0 a1 a2 a3 s5 w1=0 s6 w1=3 s9 w2=0 w0=0 s4 w0=4 w2=2 s10",
		"weights and adds":    "a0 a1 s3 w0=6 s5 a2 s4 w1=9 s7 a4 s6 d0 s5 a0 s12",
	}
	for _, v := range variants() {
		for sname, script := range scripts {
			t.Run(v.name+"/"+sname, func(t *testing.T) {
				ds := testDests(weights...)
				live, kernel := runLive(t, v.sched, v.opts, ds, weights, script)
				if v.sched == "twos" {
					// The kernel draws at random: only the lists
					// (compared in runLive) can be equal.
					return
				}
				if diff := cmp.Diff(kernel, live); diff != "" {
					t.Errorf("choices (-kernel +live):\n%s", diff)
				}
			})
		}
	}
}

// TestKernelListOrder pins the kernel's order for real servers A, B, C added
// in that order (ipvsadm -A, then -a A, B, C): the list is C, B, A, so rr
// starts with C; ties of the least-connection family and fo go to the last
// added; and wrr with weights 4, 3, 2 cycles A B A C B A C B A, entered at
// current weight 1 (A alone made mw 1, and B and C kept it): C B A first.
// NewFromAdds gives the same as the AddDest calls.
func TestKernelListOrder(t *testing.T) {
	tests := []struct {
		sched   string
		weights []int32
		want    string
	}{
		{"rr", []int32{1, 1, 1}, "CBACBA"},
		{"wrr", []int32{4, 3, 2}, "CBA" + "ABACBACBA" + "ABACBA"},
		{"lc", []int32{1, 1, 1}, "CCC"},
		{"wlc", []int32{1, 1, 1}, "CCC"},
		{"sed", []int32{1, 1, 1}, "CCC"},
		{"nq", []int32{1, 1, 1}, "CCC"},
		{"fo", []int32{2, 2, 1}, "BBB"},
		{"ovf", []int32{2, 2, 1}, "BBB"},
	}
	for _, tt := range tests {
		t.Run(tt.sched, func(t *testing.T) {
			ds := testDests(tt.weights...)
			s := mustNew(t, tt.sched, nil, Options{})
			for _, d := range ds {
				if err := s.AddDest(d); err != nil {
					t.Fatal(err)
				}
			}
			if got := labels(ds, s.Dests()); got != "CBA" {
				t.Fatalf("list %s, want CBA", got)
			}
			// Connections are not counted, so that ties stay ties.
			got := sequence(s, ds, flow(clientAddr(0), 1), len(tt.want))
			if got != tt.want {
				t.Errorf("choices %s, want %s", got, tt.want)
			}
			for _, d := range ds {
				d.SetWeight(d.LastWeight.Load(), 0)
			}
			f, err := NewFromAdds(tt.sched, ds, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := sequence(f, ds, flow(clientAddr(0), 1), len(tt.want)); got != tt.want {
				t.Errorf("NewFromAdds: choices %s, want %s", got, tt.want)
			}
		})
	}
}

// TestLiveStateKept checks that changes keep what the kernel keeps: rr's
// cursor, wrr's current weight, the lblc and lblcr tables.
func TestLiveStateKept(t *testing.T) {
	t.Run("rr cursor", func(t *testing.T) {
		ds := equalWeights(4)
		s := mustNew(t, "rr", ds, Options{}) // list A B C D
		tp := flow(clientAddr(0), 1)
		got := sequence(s, ds, tp, 2) // the cursor is on B
		if err := s.DelDest(ds[1]); err != nil {
			t.Fatal(err)
		}
		got += " " + sequence(s, ds, tp, 1) // back to A: C is next
		if err := s.AddDest(ds[1]); err != nil {
			t.Fatal(err)
		}
		got += " " + sequence(s, ds, tp, 4) // list B A C D, after C
		if want := "AB C DBAC"; got != want {
			t.Errorf("choices %s, want %s", got, want)
		}
	})
	t.Run("wrr current weight", func(t *testing.T) {
		ds := testDests(2, 2, 1)
		s := mustNew(t, "wrr", ds, Options{}) // mw 2: A B, then A B C
		tp := flow(clientAddr(0), 1)
		got := sequence(s, ds, tp, 2) // cw 2 done: A B
		ds[2].SetWeight(2, 0)
		if err := s.UpdDest(ds[2]); err != nil {
			t.Fatal(err)
		}
		// Back to the head with cw 2 kept: A B C at weight 2, then
		// at weight 1; a rebuilt scheduler would give the same here,
		// so the weight falls to 1 in the middle of the next cycle.
		got += " " + sequence(s, ds, tp, 4)
		ds[1].SetWeight(1, 0)
		if err := s.UpdDest(ds[1]); err != nil {
			t.Fatal(err)
		}
		// cw was 1 (after A B C at 2 and A at 1), and stays 1 with
		// mw 2: from the head at weight 1: A B C, then A C at 2.
		got += " " + sequence(s, ds, tp, 5)
		if want := "AB ABCA ABCAC"; got != want {
			t.Errorf("choices %s, want %s", got, want)
		}
	})
	for _, name := range []string{"lblc", "lblcr"} {
		t.Run(name+" table", func(t *testing.T) {
			ds := testDests(1, 1, 1)
			s := mustNew(t, name, ds, Options{})
			first := s.Schedule(toOrigin(0))
			other := ds[2]
			if first == other {
				other = ds[1]
			}
			if err := s.DelDest(other); err != nil {
				t.Fatal(err)
			}
			if err := s.AddDest(other); err != nil {
				t.Fatal(err)
			}
			// other is now at the head and as idle as first: a fresh
			// scheduler's wlc would choose it; the table keeps first.
			if got := s.Schedule(toOrigin(0)); got != first {
				t.Errorf("after a change: %s, want the cached %s", got, first)
			}
		})
	}
}

// TestLiveErrors checks the contract violations a caller can make.
func TestLiveErrors(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			ds := equalWeights(2)
			s := mustNew(t, v.sched, ds[:1], v.opts)
			if err := s.AddDest(ds[0]); err == nil {
				t.Errorf("AddDest of a linked destination: no error")
			}
			if err := s.DelDest(ds[1]); err == nil {
				t.Errorf("DelDest of an unknown destination: no error")
			}
			if err := s.UpdDest(ds[1]); err == nil {
				t.Errorf("UpdDest of an unknown destination: no error")
			}
			if got := labels(ds, s.Dests()); got != "A" {
				t.Errorf("list changed by refused changes: %s", got)
			}
		})
	}
}
