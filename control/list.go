package control

import (
	"fmt"
	"io"
	"sort"
)

// WriteCounters prints the fast path's counters per interface, drops by
// reason included (reasons with a zero count are left out).
func WriteCounters(w io.Writer, st *Status) {
	t := &st.Table
	fmt.Fprintf(w, "table: %d of %d connections (%d unestablished); evicted %d refused %d; nodest expired %d; reused %d; source limited %d rated %d; rst out of window %d\n",
		st.Connections, t.Max, t.Unestablished, t.Evicted, t.Refused, t.NodestExpired, t.Reused, t.SourceLimited, t.SourceRated, t.RSTOutOfWindow)
	fmt.Fprintf(w, "neighbours: lost %d (MAC kept while resolving), failed %d, unconfirmed now %d\n",
		st.Neighbors.Lost, st.Neighbors.Failed, st.Neighbors.Unconfirmed)
	for _, i := range st.Interfaces {
		fmt.Fprintf(w, "%s: rx %d tx %d (errors rx %d tx %d); forwarded in %d out %d; to stack %d; new connections %d; device %s, re-attached %d\n",
			i.Name, i.RxFrames, i.TxFrames, i.RxErrors, i.TxErrors, i.ForwardedIn, i.ForwardedOut, i.ToStack, i.NewConns, i.State, i.Reattached)
		fmt.Fprintf(w, "  fragments: held %d, datagrams reassembled %d\n", i.FragsHeld, i.Reassembled)
		if i.KernelDrops+i.KernelSYN > 0 {
			fmt.Fprintf(w, "  dropped by the kernel before lvsd read them: established queue %d, SYN queue %d\n", i.KernelDrops, i.KernelSYN)
		}
		if i.NeighborHeld > 0 {
			fmt.Fprintf(w, "  held for a neighbour's MAC: %d, sent once resolved %d\n", i.NeighborHeld, i.NeighborSent)
		}
		if i.SynCookies+i.SynproxyOpened > 0 {
			fmt.Fprintf(w, "  SYN proxy: SYN cookies sent %d, connections opened %d\n", i.SynCookies, i.SynproxyOpened)
		}
		if len(i.Queues) > 1 {
			for q, c := range i.Queues {
				fmt.Fprintf(w, "  queue %d: rx %d tx %d\n", q, c.RxFrames, c.TxFrames)
			}
		}
		reasons := make([]string, 0, len(i.Drops))
		for r, n := range i.Drops {
			if n > 0 {
				reasons = append(reasons, r)
			}
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			fmt.Fprintf(w, "  drop %-16s %d\n", r, i.Drops[r])
		}
	}
}
