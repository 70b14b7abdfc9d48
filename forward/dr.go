package forward

import (
	"github.com/lvsd/lvsd/conntrack"
)

// dr forwards a client's packet of a DR connection: the MACs change
// (destination: the real server, which holds the VIP on a loopback
// interface; source: the director) and the TTL is decremented as IPVS does
// (decrement_ttl), with a time exceeded from the VIP at TTL 1; the rest of
// the packet and the virtio header are untouched. DR needs an Ethernet link.
func (w *Worker) dr(p *Packet, b []byte, e *conntrack.Entry) DropReason {
	if w.f.link != Ethernet {
		return DropUnsupported
	}
	if !w.checkVNet(&p.VNet) {
		return DropBadVNetHdr
	}
	if !decrementTTL(b, &w.pk) {
		return w.timeExceeded(p, b, &w.pk.t.Dst)
	}
	mac, r := destMAC(p, e.Dest)
	if r != DropNone {
		return r
	}
	setMACs(b, &mac, &w.f.mac)
	countIn(e, w.pk.ipEnd-w.pk.l3)
	return DropNone
}
