package director

import (
	"net/netip"
	"time"

	"github.com/lvsd/lvsd/adm"
	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/persist"
)

// Conns lists the connection table for ipvsadm -Lc: each connection with
// its state and the time it has left, then each persistence template as
// IPVS lists its templates (client port 0, state NONE). It walks the tables
// without stopping the packet path (conntrack.Table.Range,
// persist.Table.Range).
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
	d.persist.Range(func(in persist.Info) bool {
		out = append(out, adm.Conn{
			Proto:   in.Proto,
			Client:  netip.AddrPortFrom(in.Client, 0),
			Virtual: netip.AddrPortFrom(in.VAddr, in.VPort),
			Dest:    netip.AddrPortFrom(in.Dest.Addr.Netip(), in.Dest.Port),
			State:   "NONE",
			Expires: time.Duration(in.Expires),
		})
		return true
	})
	return out
}
