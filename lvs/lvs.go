// Package lvs holds the runtime model that the data plane, the schedulers and
// the connection table share: protocols, forwarding methods, flow tuples and
// destinations (real servers of a virtual service).
//
// The package owns no goroutines and does no I/O. Its types are read on the
// packet path, so everything a packet needs is a fixed-size value or an atomic
// field; nothing here allocates per packet. (A neighbour's hold queue, on
// the rare path of a frame whose MAC is not known yet, takes a pooled
// buffer when its first frame arrives: neighq.go.)
package lvs

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// Proto is an IP protocol number (6 TCP, 17 UDP, ...).
type Proto uint8

// Protocols that virtual services may use.
const (
	TCP  Proto = 6
	UDP  Proto = 17
	SCTP Proto = 132
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Method is a forwarding method, as ipvsadm names them.
type Method uint8

// Forwarding methods. The zero value is DR, ipvsadm's default (-g).
const (
	DR  Method = iota // -g, gatewaying: only the destination MAC changes
	NAT               // -m, masquerading: destination address and port rewritten, replies un-NATed
	TUN               // -i, ipip: the packet is encapsulated in IPv4 to the real server
)

func (m Method) String() string {
	switch m {
	case DR:
		return "dr"
	case NAT:
		return "nat"
	case TUN:
		return "tun"
	}
	return fmt.Sprintf("method-%d", uint8(m))
}

// Addr is an IP address in the fixed 16-byte form used on the packet path:
// an IPv4 address is stored IPv4-mapped (::ffff:a.b.c.d), as netip does.
// It is comparable and usable as (part of) a map key without allocation.
type Addr [16]byte

// AddrFrom4 returns the Addr of an IPv4 address given as 4 bytes.
func AddrFrom4(b []byte) Addr {
	var a Addr
	a[10], a[11] = 0xff, 0xff
	copy(a[12:], b[:4])
	return a
}

// AddrFrom16 returns the Addr of an IPv6 address given as 16 bytes.
func AddrFrom16(b []byte) Addr {
	var a Addr
	copy(a[:], b[:16])
	return a
}

// AddrFromNetip converts a netip.Addr (either family) to an Addr.
func AddrFromNetip(ip netip.Addr) Addr { return Addr(ip.As16()) }

// Is4 reports whether a holds an IPv4 address.
func (a Addr) Is4() bool { return netip.AddrFrom16(a).Unmap().Is4() }

// V4 returns the 4 bytes of an IPv4 address. Valid iff a.Is4().
func (a *Addr) V4() []byte { return a[12:16] }

// Netip converts a back to a netip.Addr (IPv4 unmapped).
func (a Addr) Netip() netip.Addr { return netip.AddrFrom16(a).Unmap() }

func (a Addr) String() string { return a.Netip().String() }

// Tuple identifies one direction of a flow. It is a comparable value used as a
// connection-table key; the zero padding of Addr makes equal flows equal keys.
type Tuple struct {
	Src, Dst     Addr
	SPort, DPort uint16
	Proto        Proto
}

// Reverse returns the tuple of the opposite direction.
func (t Tuple) Reverse() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SPort: t.DPort, DPort: t.SPort, Proto: t.Proto}
}

func (t Tuple) String() string {
	return fmt.Sprintf("%s %s -> %s", t.Proto,
		netip.AddrPortFrom(t.Src.Netip(), t.SPort), netip.AddrPortFrom(t.Dst.Netip(), t.DPort))
}

// ServiceKey identifies a virtual service: virtual address, port, protocol.
// A connection belongs to the service of its client-side tuple's
// destination (Tuple.Dst, DPort, Proto); port 0 is a service over all ports.
type ServiceKey struct {
	Addr  Addr
	Port  uint16
	Proto Proto
}

// MAC is an Ethernet address. The packet path never uses tcpip.LinkAddress,
// which is a string.
type MAC [6]byte

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// Neighbor is one slot of the neighbour cache that the fast path reads: the
// link address of one IP address on one interface. The netstack's neighbour
// dispatcher writes it; forwarders read it per packet without a lock.
//
// The zero value holds no MAC. While it holds none, the frames forwarded
// to it wait in its hold queue (neighq.go) instead of being dropped.
type Neighbor struct {
	// v packs the MAC in the low 48 bits and a valid bit in bit 48, so that one
	// atomic load gives a consistent answer.
	v atomic.Uint64
	// q holds the frames that wait for the MAC; it has its own lock.
	q holdQueue
}

const neighValid = 1 << 48

// Load returns the MAC and whether one is known.
func (n *Neighbor) Load() (MAC, bool) {
	v := n.v.Load()
	if v&neighValid == 0 {
		return MAC{}, false
	}
	return MAC{byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}, true
}

// Store publishes a MAC.
func (n *Neighbor) Store(m MAC) {
	v := uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
	n.v.Store(v | neighValid)
}

// Clear forgets the MAC (the neighbour became unreachable).
func (n *Neighbor) Clear() { n.v.Store(0) }

// Dest is a destination: one real server of one virtual service, as IPVS's
// struct ip_vs_dest. A Dest outlives configuration reloads that keep it (the
// control plane reuses the object and changes its weight in place), so that
// connections already bound to it keep their counters.
//
// A Port of 0 means the port each connection was addressed to, as for IPVS's
// destinations of port-zero and firewall-mark services: the real servers of
// a virtual service over several ports have it.
//
// Fields without a comment are immutable after the Dest is published.
type Dest struct {
	Addr   Addr
	Port   uint16 // real port (host order); equals the virtual port in DR and TUN; 0: see above
	Method Method
	// Removed is set by the control plane while the destination is out of
	// its service's list: dropped by a reload or a runtime change, or taken
	// out by a health check without inhibit (IPVS unlinks the ip_vs_dest
	// and clears IP_VS_DEST_F_AVAILABLE); cleared when it is linked again.
	// Its connections then end as the connection table's
	// expire_nodest_conn says; a quiescent destination (weight 0) is not
	// removed and its connections go on. (It sits here, in the padding
	// before Neigh, to keep the Dest within 128 bytes.)
	Removed atomic.Bool

	// Neigh is the neighbour slot of Addr (or of the gateway toward it) on the
	// interface the packet leaves by; nil on links without MACs (TUN devices).
	Neigh *Neighbor

	// The fields that schedulers read in their scans, Weight to
	// InactiveConns, lie within bytes 32..63 of the Dest (a 128-byte object
	// the allocator aligns to 128): one cache line. TestDestLayout checks it.

	// Weight is the configured weight; 0 makes the destination quiescent: no
	// new connections, existing ones continue. The control plane changes it
	// with SetWeight, which keeps LastWeight and starts slow start.
	Weight atomic.Int32
	// SlowStart is the slow-start duration in nanoseconds (0: none): after
	// StartRamp the destination's effective weight ramps up from 1/RampSteps
	// of its weight to all of it over this time. See Ramp.
	SlowStart atomic.Int64
	// Overloaded is set while the destination is over its upper threshold
	// (IP_VS_DEST_F_OVERLOAD) and cleared below the lower one.
	Overloaded atomic.Bool
	// Available is IP_VS_DEST_F_AVAILABLE: false while the destination is
	// out of its service's list (see Removed); such a destination receives
	// no new connections, and its persistence templates are dropped at
	// their next use. The director keeps it (director.SetRealHealth is how
	// a health check takes a server out).
	Available atomic.Bool

	// ActiveConns and InactiveConns count connections as IPVS does: a TCP
	// connection is active while ESTABLISHED, inactive in every other state;
	// UDP connections are inactive. The connection table keeps them.
	ActiveConns, InactiveConns atomic.Int32
	// PersistConns counts persistence templates bound to the destination.
	PersistConns atomic.Int32

	// UpperThreshold and LowerThreshold are ipvsadm's -x and -y (0: none).
	UpperThreshold, LowerThreshold atomic.Int32
	// LastWeight is the last non-zero weight (IPVS's last_weight): the weight
	// at NewDest, then every non-zero weight SetWeight stores. The mh
	// scheduler builds its table from it, so that quiescing a destination
	// (weight 0) moves no other flow.
	LastWeight atomic.Int32
	// rampStart is the clock time of the last StartRamp; notRamping before.
	rampStart atomic.Int64

	// Stats are cumulative counters (see Stats).
	Stats Stats
}

// Stats are the cumulative counters of a destination or a service.
//
// The packet path counts packets and bytes per worker; the connection
// table adds them here every 2 s (conntrack.EstimateInterval) and whenever
// it reports (conntrack.Table.Stats, which also has the rates), so these
// lag by up to 2 s, as IPVS's do.
type Stats struct {
	Conns             atomic.Uint64
	InPkts, OutPkts   atomic.Uint64
	InBytes, OutBytes atomic.Uint64
}

// NewDest returns an available destination with the given weight.
func NewDest(addr netip.Addr, port uint16, method Method, weight int32) *Dest {
	d := &Dest{Addr: AddrFromNetip(addr), Port: port, Method: method}
	d.Weight.Store(weight)
	d.LastWeight.Store(weight)
	d.Available.Store(true)
	d.rampStart.Store(notRamping)
	return d
}

// Usable reports whether the destination may receive a new connection:
// available, not overloaded, weight above zero. Schedulers call it.
func (d *Dest) Usable() bool {
	return d.Weight.Load() > 0 && d.Available.Load() && !d.Overloaded.Load()
}

// Conns returns the connection count a least-connection scheduler compares,
// as the kernel's ip_vs_dest_conn_overhead: active*256 + inactive.
func (d *Dest) Conns() int64 {
	return int64(d.ActiveConns.Load())<<8 + int64(d.InactiveConns.Load())
}

func (d *Dest) String() string {
	return netip.AddrPortFrom(d.Addr.Netip(), d.Port).String()
}
