package control

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// forwardNames are ipvsadm's names of the forwarding methods.
var forwardNames = map[string]string{"nat": "Masq", "dr": "Route", "tun": "Tunnel"}

// WriteRates prints the rate estimates as `ipvsadm -Ln --rate` does.
func WriteRates(w io.Writer, st *Status) {
	fmt.Fprintf(w, "lvsd %s (connections=%d)\n", st.Version, st.Connections)
	fmt.Fprintf(w, "%-4s %-28s %8s %10s %10s %12s %12s\n", "Prot", "LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	fmt.Fprintf(w, "  -> RemoteAddress:Port\n")
	for _, s := range st.Services {
		r := s.Rates
		fmt.Fprintf(w, "%-4s %-28s %8d %10d %10d %12d %12d\n", strings.ToUpper(s.Protocol), s.Address, r.CPS, r.InPPS, r.OutPPS, r.InBPS, r.OutBPS)
		for _, d := range s.Reals {
			r := d.Rates
			fmt.Fprintf(w, "  -> %-23s %8d %10d %10d %12d %12d\n", d.Address, r.CPS, r.InPPS, r.OutPPS, r.InBPS, r.OutBPS)
		}
	}
}

// WriteList prints the virtual services as `ipvsadm -Ln` does, or with
// stats as `ipvsadm -Ln --stats`, so that an IPVS operator reads it at once.
func WriteList(w io.Writer, st *Status, stats bool) {
	fmt.Fprintf(w, "lvsd %s (connections=%d)\n", st.Version, st.Connections)
	if st.ConfigStale {
		fmt.Fprintf(w, "WARNING: the last reload of %s was refused; the previous configuration runs: %s\n", st.Config, st.LastReloadError)
	}
	if stats {
		fmt.Fprintf(w, "%-4s %-28s %8s %10s %10s %12s %12s\n", "Prot", "LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
		fmt.Fprintf(w, "  -> RemoteAddress:Port\n")
	} else {
		fmt.Fprintf(w, "Prot LocalAddress:Port Scheduler Flags\n")
		fmt.Fprintf(w, "  -> %-28s %-7s %-6s %-10s %s\n", "RemoteAddress:Port", "Forward", "Weight", "ActiveConn", "InActConn")
	}
	for _, s := range st.Services {
		proto := strings.ToUpper(s.Protocol)
		if stats {
			fmt.Fprintf(w, "%-4s %-28s %8d %10d %10d %12d %12d\n", proto, s.Address,
				s.Stats.Conns, s.Stats.InPkts, s.Stats.OutPkts, s.Stats.InBytes, s.Stats.OutBytes)
		} else {
			line := fmt.Sprintf("%-4s %s %s", proto, s.Address, s.Scheduler)
			if len(s.Flags) > 0 {
				line += " (" + strings.Join(s.Flags, ",") + ")"
			}
			fmt.Fprintln(w, line)
		}
		for _, r := range s.Reals {
			if stats {
				fmt.Fprintf(w, "  -> %-23s %8d %10d %10d %12d %12d\n", r.Address,
					r.Stats.Conns, r.Stats.InPkts, r.Stats.OutPkts, r.Stats.InBytes, r.Stats.OutBytes)
				continue
			}
			fwd := forwardNames[r.Method]
			if fwd == "" {
				fwd = r.Method
			}
			note := ""
			if !r.Available {
				note = " down"
			} else if r.Overloaded {
				note = " overloaded"
			}
			fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %d%s\n", r.Address, fwd, r.Weight, r.ActiveConn, r.InactConn, note)
		}
	}
}

// WriteCounters prints the fast path's counters per interface, drops by
// reason included (reasons with a zero count are left out).
func WriteCounters(w io.Writer, st *Status) {
	t := &st.Table
	fmt.Fprintf(w, "table: %d of %d connections (%d unestablished); evicted %d refused %d; nodest expired %d; reused %d; source limited %d rated %d\n",
		st.Connections, t.Max, t.Unestablished, t.Evicted, t.Refused, t.NodestExpired, t.Reused, t.SourceLimited, t.SourceRated)
	for _, i := range st.Interfaces {
		fmt.Fprintf(w, "%s: rx %d tx %d (errors rx %d tx %d); forwarded in %d out %d; to stack %d; new connections %d\n",
			i.Name, i.RxFrames, i.TxFrames, i.RxErrors, i.TxErrors, i.ForwardedIn, i.ForwardedOut, i.ToStack, i.NewConns)
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
