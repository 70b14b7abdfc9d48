package director

import (
	"net/netip"

	"github.com/lvsd/lvsd/adm"
	"github.com/lvsd/lvsd/conntrack"
)

// Conns lists the connection table for ipvsadm -Lc: each connection with
// its state and the time it has left. It walks the table without stopping
// the packet path (conntrack.Table.Range). Persistence templates are not
// listed.
func (d *Director) Conns() []adm.Conn {
	now := d.table.Now()
	var out []adm.Conn
	d.table.Range(func(e *conntrack.Entry) bool {
		dport := e.Dest.Port
		if dport == 0 { // a service over several ports keeps the client's
			dport = e.In.DPort
		}
		out = append(out, adm.Conn{
			Proto:   e.In.Proto,
			Client:  netip.AddrPortFrom(e.In.Src.Netip(), e.In.SPort),
			Virtual: netip.AddrPortFrom(e.In.Dst.Netip(), e.In.DPort),
			Dest:    netip.AddrPortFrom(e.Dest.Addr.Netip(), dport),
			State:   e.State().String(),
			Expires: e.Expires(now),
		})
		return true
	})
	return out
}
