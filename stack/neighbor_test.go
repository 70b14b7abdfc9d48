package stack

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	tcpipstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/lvsd/lvsd/lvs"
)

// TestNeighborKeptWhileLost: a neighbour the netstack reports unreachable
// (as when its probe is lost in a queue a flood fills) or forgets keeps its
// last MAC in the fast path's slot while it is resolved again; it is
// re-resolved at every tick, and cleared only once unreachable for
// NeighborFailAfter. Every step is counted.
func TestNeighborKeptWhileLost(t *testing.T) {
	now := time.Unix(1000, 0)
	st := New(Options{ResolveInterval: time.Second, NeighborFailAfter: 10 * time.Second, Now: func() time.Time { return now }})
	defer st.Close()
	addr := netip.MustParseAddr("192.0.2.21")
	k := neighKey{1, addr}
	n := new(lvs.Neighbor)
	mac := lvs.MAC{2, 0, 0x5e, 0, 0, 0x21}
	n.Store(mac)
	st.mu.Lock()
	st.neigh[k] = n
	st.mu.Unlock()
	d := (*nudDispatcher)(st)
	entry := func(s tcpipstack.NeighborState) tcpipstack.NeighborEntry {
		return tcpipstack.NeighborEntry{Addr: tcpip.AddrFrom4(addr.As4()), LinkAddr: tcpip.LinkAddress(mac[:]), State: s}
	}
	has := func(step string) {
		t.Helper()
		if m, ok := n.Load(); !ok || m != mac {
			t.Fatalf("%s: slot %v %v, want %v", step, m, ok, mac)
		}
	}
	inTodo := func(keys []neighKey) bool {
		for _, x := range keys {
			if x == k {
				return true
			}
		}
		return false
	}

	d.OnNeighborChanged(1, entry(tcpipstack.Unreachable))
	has("unreachable")
	if c := st.NeighborCounts(); c != (NeighborCounts{Lost: 1, Unconfirmed: 1}) {
		t.Errorf("counts %+v", c)
	}
	now = now.Add(9 * time.Second)
	if !inTodo(st.sweep(1)) {
		t.Error("a lost neighbour is not resolved again at the next tick")
	}
	has("9 s unreachable")
	// Resolved again: no longer lost.
	d.OnNeighborChanged(1, entry(tcpipstack.Reachable))
	has("reachable again")
	if c := st.NeighborCounts(); c != (NeighborCounts{Lost: 1}) {
		t.Errorf("counts %+v", c)
	}
	if inTodo(st.sweep(1)) {
		t.Error("a known neighbour resolved at every tick")
	}
	// Forgotten by the netstack, then unreachable for NeighborFailAfter.
	d.OnNeighborRemoved(1, entry(tcpipstack.Stale))
	has("removed")
	d.OnNeighborChanged(1, entry(tcpipstack.Unreachable)) // the same loss
	now = now.Add(10 * time.Second)
	st.sweep(1)
	if _, ok := n.Load(); ok {
		t.Error("slot kept after NeighborFailAfter")
	}
	if c := st.NeighborCounts(); c != (NeighborCounts{Lost: 2, Failed: 1}) {
		t.Errorf("counts %+v", c)
	}
}
