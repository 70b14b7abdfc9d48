package config

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
	"github.com/lvsd/lvsd/sched"
)

// Config is a validated configuration. Parse returns a fresh value whose
// slices are not shared with anything else; nobody mutates it afterwards.
type Config struct {
	// File is the name the configuration was parsed from, as given to Parse.
	File string
	// Timeouts are the global connection timeouts (ipvsadm --set).
	Timeouts Timeouts
	// Sysctl holds IPVS's global switches (net.ipv4.vs.*) that lvsd has.
	Sysctl Sysctl
	// Connections bounds the connection table.
	Connections Connections
	// Metrics is the metrics listener; off by default.
	Metrics Metrics
	// Interfaces holds at least one interface, in file order, with unique
	// names.
	Interfaces []Interface
	// Services are the virtual services in file order. Their
	// (Proto, Addr, Port) triples are unique.
	Services []Service
}

// Timeouts are IPVS's global idle timeouts, as ipvsadm --set tcp tcpfin udp.
// Every field is at least one second.
type Timeouts struct {
	TCP    time.Duration // established TCP connections
	TCPFin time.Duration // TCP connections in FIN_WAIT
	UDP    time.Duration // UDP flows

	// TCPTimeWait and TCPClose are lvsd's extension, as Linux 2.4's
	// timeout_timewait and timeout_close sysctls: ipvsadm --set does not
	// reach TIME_WAIT (120 s) and CLOSE (10 s), where closed connections
	// wait (and hold persistence templates).
	TCPTimeWait time.Duration
	TCPClose    time.Duration
}

// Sysctl holds IPVS's global switches, as the sysctls net.ipv4.vs.*.
type Sysctl struct {
	// ExpireQuiescentTemplate is expire_quiescent_template: a persistence
	// template whose real server has weight 0 is invalidated at its next
	// use, so that persistent clients leave a quiescent server at once.
	ExpireQuiescentTemplate bool
	// ExpireNodestConn is expire_nodest_conn: a client's packet on a
	// connection whose real server was removed by a reload ends the
	// connection at once (the packet, if a SYN, is scheduled anew), instead
	// of dropping packets until the connection times out.
	ExpireNodestConn bool
	// SecureTCP is secure_tcp: IPVS's stricter TCP state table, in which
	// a client's ACK alone does not establish a NAT connection.
	SecureTCP bool
	// SloppyTCP is sloppy_tcp: a TCP segment other than a SYN (and without
	// RST) to a virtual service, with no connection, is scheduled and opens
	// one, as a SYN does. After a restart without the table, a
	// consistent-hash scheduler (maglev, sh) then puts most running flows
	// back on their real server. Off, such a segment goes to the netstack,
	// which resets it.
	SloppyTCP bool
}

// Connections bounds the connection table ([connections]).
type Connections struct {
	// Max is the most connections the table holds, 1..MaxConnections.
	// Over it a new connection evicts a half-open TCP connection or a UDP
	// flow, the oldest first (one-packet flows before flows in use), else
	// a closed TCP connection, or is dropped; established ones are never
	// evicted.
	Max int
	// ReserveEstablished is the percentage of Max (0..90) kept for TCP
	// connections that have been established: UDP flows and handshakes
	// under way fill at most the rest.
	ReserveEstablished int
	// PerSource and PerSourceRate bound the connections one client prefix
	// holds and opens per second (0: no limit); SourcePrefixV4 and
	// SourcePrefixV6 are the prefix lengths that count as one client.
	PerSource, PerSourceRate       int
	SourcePrefixV4, SourcePrefixV6 int
	// CheckRST drops an RST of a NAT connection whose sequence number lies
	// outside its receiver's window (RFC 5961-style), so that a blind
	// reset cannot end it; false is IPVS's behaviour (any RST closes).
	CheckRST bool
}

// MaxConnections is the largest [connections] max: the most the connection
// table can address.
const MaxConnections = conntrack.MaxConnections

// LinkType is the kind of device an interface is.
type LinkType uint8

// Link types. The zero value is TAP, the default.
const (
	TAP LinkType = iota // L2: Ethernet frames; ARP/NDP; every forwarding method
	TUN                 // L3: IP packets without a link header; no DR
	// PACKET attaches to an existing Ethernet interface with AF_PACKET
	// sockets (a veth, a NIC): L2 like a TAP, frames moved in batches.
	PACKET
)

var linkTypeNames = [...]string{TAP: "tap", TUN: "tun", PACKET: "packet"}

// Ethernet reports whether frames on the interface carry an Ethernet
// header: TAP and PACKET.
func (t LinkType) Ethernet() bool { return t != TUN }

func (t LinkType) String() string {
	if int(t) < len(linkTypeNames) {
		return linkTypeNames[t]
	}
	return fmt.Sprintf("linktype-%d", uint8(t))
}

// MarshalText makes the type readable in JSON dumps of a Config.
func (t LinkType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Interface is one device of the director: a TAP or TUN device, or an
// existing interface attached with AF_PACKET.
type Interface struct {
	// Name is the Linux interface name: 1..15 bytes, none of them '/', ':',
	// white space or control characters, and neither "." nor "..".
	Name string
	Type LinkType
	// Create is true when lvsd creates the device if it is missing (needs
	// CAP_NET_ADMIN). When false the device must exist already, made for
	// instance with `ip tuntap add NAME mode tap user U`. Always false for
	// PACKET, which attaches to an interface that exists.
	Create bool
	// MTU is in 576..65535, and at least 1280 when Addresses holds an IPv6
	// prefix.
	MTU int
	// MAC is the netstack's own MAC on a TAP: unicast and not all zeros;
	// DefaultMAC(Name) when the file gives none. Zero on a TUN, and on a
	// PACKET interface, whose MAC is the interface's own (read when lvsd
	// attaches).
	MAC [6]byte
	// Addresses are the director's own addresses (DIPs) on this device, with
	// their prefix lengths. At least one; no address appears twice in a
	// Config.
	Addresses []netip.Prefix
	// Routes are static routes of the netstack through this device.
	Routes []Route
	// Queues is the number of TAP queues, or of AF_PACKET sockets in one
	// fanout group (one fd and reader each), 1..16.
	Queues int
	// Offload enables the virtio-net header with checksum and TSO offload.
	Offload bool
	// SendThread is sender = "thread": each queue's forwarded frames are
	// written by a sender of their own, not by the queue's reader
	// (stack.LinkOptions.Sender). False is sender = "reader".
	SendThread bool
	// Persist makes a TAP or TUN that lvsd creates persistent: it stays
	// (with its bridge membership) after lvsd exits. False for PACKET.
	Persist bool
	// Bridge is the bridge a TAP must be a port of: lvsd adds the device
	// when it creates or opens it, so that a device it creates again
	// (after a restart, or after it was deleted) is where it was. "" for
	// none; always "" on TUN and PACKET.
	Bridge string
	// OnLoss is what lvsd does when the device disappears at run time.
	OnLoss OnLoss
}

// OnLoss is what lvsd does when an interface's device is lost at run time.
type OnLoss uint8

const (
	// Reattach: forwarding stops on the interface and lvsd opens the device
	// again as soon as it can (it exists again; with create = true lvsd
	// creates it at once), every 200 ms; the rest of lvsd goes on.
	Reattach OnLoss = iota
	// Exit: lvsd stops and exits with status 1, for a supervisor to
	// restart it.
	Exit
)

func (o OnLoss) String() string {
	if o == Exit {
		return "exit"
	}
	return "reattach"
}

// MarshalText makes the policy readable in JSON dumps of a Config.
func (o OnLoss) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Route is a static route of the netstack.
type Route struct {
	// Destination is a masked prefix (no host bits set).
	Destination netip.Prefix
	// Gateway is the next hop: same family as Destination and inside one of
	// the interface's prefixes. The zero Addr (invalid) means the destination
	// is on-link.
	Gateway netip.Addr
}

// Service is a virtual service (ipvsadm -A).
type Service struct {
	// Name is an optional label, unique when not empty.
	Name  string
	Proto lvs.Proto // lvs.TCP or lvs.UDP
	// Addr is the VIP, IPv4 or IPv6 (never IPv4-mapped IPv6), not one of the
	// director's own addresses.
	Addr netip.Addr
	// Port is the virtual port, 1..65535; for a service over a list of ports
	// its first port; 0 for a service over all ports of Addr (a port-zero
	// service, which is always persistent).
	Port uint16
	// Ports are the ports of a service over a list of ports (ports = [...]),
	// unique, in file order; nil for a service of one port or of all ports.
	// A service over several ports forwards each connection to the port the
	// client addressed (its real servers have Port 0) and, when persistent,
	// shares a client's template across its ports.
	Ports []uint16
	// Mark is the firewall mark under which ipvsadm's command line and
	// listings (lvsd adm) show a service over a list of ports: `fwmark`
	// in the file, else the lowest mark no other service has, given in
	// file order. 0 for every other service.
	Mark uint32
	// Scheduler is an ipvsadm scheduler name that package sched knows.
	Scheduler string
	// SchedFlags are ipvsadm -b flags, each known and matching Scheduler.
	SchedFlags []string
	// Interface names the Interface that holds the VIP; it always names one
	// of Config.Interfaces.
	Interface string
	// Persistence is ipvsadm -p and -M; the zero value is no persistence.
	// Always set for a port-zero service.
	Persistence Persistence
	// OnePacket is ipvsadm -o: every datagram is scheduled on its own and
	// leaves no connection entry. Only with Proto UDP, and only when no real
	// server uses NAT (whose replies need the entry).
	OnePacket bool
	// Synproxy is an lvsd extension after DPVS's synproxy: the director
	// answers the service's SYNs itself with SYN cookies and opens the
	// connection to a real server only on the client's valid ACK, so that
	// spoofed SYNs cost no connection entry (forward.Service.Synproxy).
	// Only with Proto TCP, and only when every real server uses NAT.
	Synproxy bool
	// SlowStart is the default slow start of the real servers, 0 for none.
	SlowStart time.Duration
	// MaglevTableSize is the prime size of scheduler maglev's lookup table;
	// 0 is sched's default (65537).
	MaglevTableSize uint32
	// Reals are the real servers, with unique (Addr, Port).
	Reals []Real
	// Health holds sorry_server and quorum (config/health.go).
	Health Health
}

// Persistence is the persistence of a virtual service (ipvsadm -p, -M).
type Persistence struct {
	// Timeout is ipvsadm -p: how long a client stays bound to its real
	// server after its last connection; 0 means the service is not
	// persistent. A whole number of seconds otherwise.
	Timeout time.Duration
	// Netmask is ipvsadm -M as a prefix length: clients whose addresses
	// agree on the first Netmask bits share a template. 0..32 for an IPv4
	// service, 1..128 for IPv6; when Timeout > 0 it is never left at 0 by
	// default (32 or 128, one template per client address).
	Netmask int
}

// Real is a real server of a service (ipvsadm -a).
type Real struct {
	// Addr is in the same address family as the service's VIP.
	Addr netip.Addr
	// Port is 1..65535; it equals the service's port unless Method is NAT.
	// It is 0 in a service over several ports: each connection keeps the
	// port the client addressed.
	Port   uint16
	Weight int32 // 0..65535; 0 = quiescent (no new connections)
	// Method is resolved: the real server's own method, else the service's,
	// else the default (DR). Never DR on a TUN interface.
	Method lvs.Method
	// UpperThreshold and LowerThreshold are ipvsadm -x and -y, 0..65535, 0
	// meaning none. When UpperThreshold > 0, LowerThreshold <= UpperThreshold.
	UpperThreshold, LowerThreshold int32
	// SlowStart is resolved: the real server's own slow_start, else the
	// service's; 0 for none. When the real server is added to a running
	// service, comes back from a failed health check or from weight 0, its
	// effective weight ramps up over this time.
	SlowStart time.Duration
	// Tunnel is the encapsulation of a tun real server (ipvsadm
	// --tun-type, --tun-port, --tun-nocsum/--tun-csum/--tun-remcsum): zero
	// (ipip) unless Method is TUN. A gue tunnel has a Port; only gue takes
	// TunRemCsum.
	Tunnel lvs.Tunnel
	// Check is the real server's health check; nil: not checked (always
	// up), as without a keepalived checker.
	Check *Check
}

// Defaults is the table of every value Parse uses for a key the file leaves
// out. It is the only place defaults are declared; the example file
// lvsd.toml.example documents the same values.
type Defaults struct {
	TCPTimeout    time.Duration // [timeouts] tcp: ipvsadm's default
	TCPFinTimeout time.Duration // [timeouts] tcp_fin: ipvsadm's default
	UDPTimeout    time.Duration // [timeouts] udp: ipvsadm's default
	// TCPTimeWaitTimeout and TCPCloseTimeout are [timeouts] tcp_time_wait
	// and tcp_close: IPVS's fixed values.
	TCPTimeWaitTimeout, TCPCloseTimeout time.Duration

	LinkType LinkType // [[interface]] type
	Create   bool     // [[interface]] create
	MTU      int      // [[interface]] mtu
	Queues   int      // [[interface]] queues
	Offload  bool     // [[interface]] offload
	OnLoss   OnLoss   // [[interface]] on_loss
	// The MAC of a TAP defaults to DefaultMAC(name), which is not a constant.

	Scheduler string     // [[virtual_server]] scheduler: IPVS's default
	Method    lvs.Method // method of real servers: ipvsadm's default (-g)
	Weight    int32      // [[virtual_server.real_server]] weight
	// The port of a real server defaults to its service's port.

	// PersistenceTimeout is persistence_timeout = true: ipvsadm's default
	// for -p without a value.
	PersistenceTimeout time.Duration
	// PersistenceNetmask4 and PersistenceNetmask6 are persistence_netmask's
	// defaults (ipvsadm -M): one template per client address.
	PersistenceNetmask4, PersistenceNetmask6 int
	// ExpireQuiescentTemplate is [sysctl] expire_quiescent_template: IPVS's
	// default.
	ExpireQuiescentTemplate bool
	// ExpireNodestConn is [sysctl] expire_nodest_conn. IPVS's default is
	// false, but operators who remove real servers enable it (keepalived's
	// documentation asks for it) so that clients of a removed server are
	// rescheduled at their next SYN instead of hanging until the old
	// connection times out; lvsd forwards nothing to a removed server
	// either way.
	ExpireNodestConn bool
	// SecureTCP is [sysctl] secure_tcp: IPVS's default (off).
	SecureTCP bool
	// SloppyTCP is [sysctl] sloppy_tcp: IPVS's default (off).
	SloppyTCP bool
	// MaxConnections is [connections] max: 4,194,304 connections, about
	// 450 MiB of table at most (docs/conntrack.md).
	MaxConnections int
	// ReserveEstablished is [connections] reserve_established: 10 %.
	ReserveEstablished int
	// SourcePrefixV4 and SourcePrefixV6 are [connections]
	// source_prefix_v4 and source_prefix_v6: one address, one /64.
	SourcePrefixV4, SourcePrefixV6 int
	// CheckRST is [connections] check_rst: on (lvsd's choice; IPVS has no
	// such check).
	CheckRST bool
}

// defaults is unexported so that nothing can change what Parse does behind
// its back; DefaultValues hands out copies.
var defaults = Defaults{
	// The connection table's own defaults: one source.
	TCPTimeout:    conntrack.DefaultTCPTimeout,
	TCPFinTimeout: conntrack.DefaultTCPFinTimeout,
	UDPTimeout:    conntrack.DefaultUDPTimeout,

	TCPTimeWaitTimeout: conntrack.TCPTimeWaitTimeout,
	TCPCloseTimeout:    conntrack.TCPCloseTimeout,

	LinkType: TAP,
	Create:   true,
	MTU:      1500,
	Queues:   1,
	Offload:  true,
	OnLoss:   Reattach,

	Scheduler: sched.Default,
	Method:    lvs.DR,
	Weight:    1,

	PersistenceTimeout:      300 * time.Second,
	PersistenceNetmask4:     32,
	PersistenceNetmask6:     128,
	ExpireQuiescentTemplate: false,
	ExpireNodestConn:        true,
	SecureTCP:               false,
	SloppyTCP:               false,
	MaxConnections:          conntrack.DefaultMax,
	ReserveEstablished:      10,
	SourcePrefixV4:          32,
	SourcePrefixV6:          64,
	CheckRST:                true,
}

// DefaultValues returns the defaults Parse applies.
func DefaultValues() Defaults { return defaults }

// MaxWeight is the largest weight of a real server: IPVS keeps weights in
// an int, but ipvsadm caps them at 65535. The director checks runtime
// weights against it too.
const MaxWeight = 65535

// Limits of numeric keys, shared by validation and its messages.
const (
	minMTU     = 576  // IPv4's minimum datagram size every host must accept
	minMTUIPv6 = 1280 // IPv6's minimum link MTU (RFC 8200)
	maxMTU     = 65535
	maxQueues  = 16
	maxWeight  = MaxWeight
	maxThresh  = 65535
	maxIfName  = 15                         // IFNAMSIZ (16) minus the terminating NUL
	maxReserve = conntrack.MaxReserve * 100 // percent
)

// DefaultMAC returns the MAC a TAP named name gets when the file gives none:
// a locally administered unicast address derived from the name, so that the
// director keeps its MAC across restarts (neighbours' ARP caches stay right)
// and two TAPs of one director differ.
//
// The derivation (FNV-1a 64 of the name, first octet's multicast bit
// cleared and locally-administered bit set) is part of the contract:
// changing it would change the MAC of every deployed director.
func DefaultMAC(name string) [6]byte {
	h := fnv.New64a()
	h.Write([]byte(name))
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h.Sum64())
	var mac [6]byte
	copy(mac[:], sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// schedFlags maps each known ipvsadm -b flag to the scheduler it belongs to.
var schedFlags = map[string]string{
	"sh-fallback": "sh",
	"sh-port":     "sh",
	"mh-fallback": "mh",
	"mh-port":     "mh",
}
