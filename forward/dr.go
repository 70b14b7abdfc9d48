package forward

import (
	"github.com/lvsd/lvsd/conntrack"
)

// dr forwards a client's packet of a DR connection: only the MACs change
// (destination: the real server, which holds the VIP on a loopback
// interface; source: the director). The IP packet, its TTL and the virtio
// header are untouched. DR needs an Ethernet link.
func (w *Worker) dr(p *Packet, b []byte, e *conntrack.Entry) DropReason {
	if w.f.link != Ethernet {
		return DropUnsupported
	}
	if !w.checkVNet(&p.VNet) {
		return DropBadVNetHdr
	}
	mac, ok := neighbor(e.Dest)
	if !ok {
		return DropNoNeighbor
	}
	setMACs(b, &mac, &w.f.mac)
	countIn(e, w.pk.ipEnd-w.pk.l3)
	return DropNone
}
