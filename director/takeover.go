package director

import (
	"fmt"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
)

// TableSnapshot returns the connection table in conntrack's snapshot form
// (conntrack.EncodeSnapshot), for a graceful restart's handoff to a new
// process (package takeover).
func (d *Director) TableSnapshot() ([]byte, error) {
	return conntrack.EncodeSnapshot(d.table.Snapshot(d.table.Now()))
}

// RestoreTable decodes a snapshot made by TableSnapshot (in another
// process) and restores its connections, each on the running real server
// with the same address and port in the service its client addressed; a
// connection whose service or real server is not running is left out, as
// is one whose real server changed its method. It returns how many it
// restored. Call it after New and before the interfaces carry traffic.
func (d *Director) RestoreTable(data []byte) (int, error) {
	recs, err := conntrack.DecodeSnapshot(data)
	if err != nil {
		return 0, fmt.Errorf("restore connection table: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	resolve := func(in *lvs.Tuple, addr lvs.Addr, port uint16) (*lvs.Dest, *lvs.Stats) {
		k := lvs.ServiceKey{Addr: in.Dst, Port: in.DPort, Proto: in.Proto}
		rs := d.services[k]
		if rs == nil {
			k.Port = 0 // a service of every port, as the packet path finds it
			if rs = d.services[k]; rs == nil {
				return nil, nil
			}
		}
		for _, dst := range rs.svc.Dests {
			if dst.Addr == addr && dst.Port == port {
				return dst, rs.svc.Stats
			}
		}
		return nil, nil
	}
	return d.table.Restore(recs, resolve, d.table.Now()), nil
}
