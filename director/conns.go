package director

import (
	"net/netip"
	"time"

	"github.com/lvsd/lvsd/adm"
	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
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
	// A service over a list of ports is shown as the fwmark service it
	// stands for, and IPVS makes a fwmark service's templates with
	// protocol IPPROTO_IP (ipvsadm's "IP") and the mark as the virtual
	// address (0.0.0.MARK, or MARK in the first 32 bits of an IPv6 one),
	// port 0.
	type vkey struct {
		addr  netip.Addr
		port  uint16
		proto lvs.Proto
	}
	marks := map[vkey]uint32{}
	d.mu.Lock()
	for _, rs := range d.services {
		if rs.conf.Mark != 0 {
			marks[vkey{rs.conf.Addr, rs.conf.Port, rs.conf.Proto}] = rs.conf.Mark
		}
	}
	d.mu.Unlock()
	d.persist.Range(func(in persist.Info) bool {
		proto, virtual := in.Proto, netip.AddrPortFrom(in.VAddr, in.VPort)
		if m, ok := marks[vkey{in.VAddr, in.VPort, in.Proto}]; ok {
			proto, virtual = 0, netip.AddrPortFrom(markAddr(m, in.VAddr.Is6()), 0)
		}
		out = append(out, adm.Conn{
			Proto:   proto,
			Client:  netip.AddrPortFrom(in.Client, 0),
			Virtual: virtual,
			Dest:    netip.AddrPortFrom(in.Dest.Addr.Netip(), in.Dest.Port),
			State:   "NONE",
			Expires: time.Duration(in.Expires),
		})
		return true
	})
	return out
}

// markAddr is the fwmark m as IPVS puts it in a template's virtual address:
// its 32 bits, big-endian, at the start of the address.
func markAddr(m uint32, v6 bool) netip.Addr {
	b := [16]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
	if v6 {
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}
