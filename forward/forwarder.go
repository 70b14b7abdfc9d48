package forward

import (
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/conntrack"
	"github.com/lvsd/lvsd/lvs"
)

// Options configure a Forwarder. Defaults:
//
//	Link    Ethernet
//	MAC     none (required on Ethernet links)
//	Table   none (required)
//	MTU     DefaultMTU (1500)
//	Logger  none: drops are counted, not logged
//	FragMemory    DefaultFragMemory (4 MiB)
//	FragTimeout4  DefaultFragTimeout4 (30 s)
//	FragTimeout6  DefaultFragTimeout6 (60 s)
type Options struct {
	// Link is the framing of the link the frames come from and go back to.
	Link Framing
	// MAC is the director's own MAC address on an Ethernet link: unicast
	// frames to any other MAC are dropped (DropOtherHost) and forwarded
	// frames leave with it as their source.
	MAC lvs.MAC
	// Table is the connection table; the caller runs its expiry (Table.Run).
	Table *conntrack.Table
	// MTU is the link's MTU: the largest IP packet (Ethernet header excluded)
	// it carries. Only TUN encapsulation, which grows packets, checks it.
	MTU int
	// Logger receives rate-limited reports of unusual drops (no real server,
	// table full, neighbour unknown, unsupported, bad virtio header).
	Logger *slog.Logger
	// FragMemory bounds the bytes of fragments waiting for the rest of
	// their datagram (the kernel's ipfrag_high_thresh); it is allocated
	// once, in New (see frag.go).
	FragMemory int
	// FragTimeout4 and FragTimeout6 are how long an incomplete IPv4 or
	// IPv6 datagram waits for its fragments (ipfrag_time,
	// nf_conntrack_frag6_timeout).
	FragTimeout4, FragTimeout6 time.Duration
}

// DefaultMTU is the default Options.MTU.
const DefaultMTU = 1500

// TunnelHeadroom is the headroom (Packet.Off) that TUN forwarding needs in
// front of a frame for its outer IPv4 header. Frames with less headroom are
// dropped (DropUnsupported) when they must be encapsulated.
const TunnelHeadroom = 20

// logInterval is the least time between two drop reports.
const logInterval = time.Second

// neverLogged is Forwarder.lastLog before the first report.
const neverLogged = math.MinInt64

// Forwarder is the data plane of one link. Packets are processed by Workers,
// one per reader goroutine; the Forwarder holds what they share: options,
// the configuration snapshot and the list of workers for Counters.
type Forwarder struct {
	link  Framing
	mac   lvs.MAC
	table *conntrack.Table
	mtu   int
	log   *slog.Logger

	// reasm holds the fragments of incomplete datagrams (frag.go).
	reasm *reassembler
	// fragID is the last identification of IPv6 fragments lvsd sent.
	fragID atomic.Uint32
	// cookies is the SYN proxy's key (synproxy_cookie.go), made in New.
	cookies cookieKey

	snap    atomic.Pointer[snapshot]
	lastLog atomic.Int64 // table clock time of the last drop report; neverLogged before

	mu sync.Mutex
	// workers are every Worker created, for Counters. Guarded by mu.
	workers []*Worker
}

// snapshot is a published Config with the indexes Process needs.
type snapshot struct {
	services map[lvs.ServiceKey]*Service
	// src is Config.Source; nil for none.
	src func(netip.Addr) netip.Addr
	// srcOf is Config.Source's answer for the address of every real server
	// of the snapshot's services, computed when the snapshot is built, so
	// that a TUN packet (or an ICMP error toward a real server) does not
	// walk the interface's addresses and routes. Read-only once published.
	srcOf map[lvs.Addr]srcAddr
	// sloppyTCP is Config.SloppyTCP.
	sloppyTCP bool
}

// srcAddr is one precomputed source: ok false means none of the real
// server's family.
type srcAddr struct {
	addr lvs.Addr
	ok   bool
}

// source returns the director's address toward a, with a's family, or false
// when there is none: precomputed for the snapshot's real servers, asked of
// Config.Source for any other address.
func (s *snapshot) source(a *lvs.Addr) (lvs.Addr, bool) {
	if c, ok := s.srcOf[*a]; ok {
		return c.addr, c.ok
	}
	return s.lookupSource(a)
}

// lookupSource is source without the precomputed answers.
func (s *snapshot) lookupSource(a *lvs.Addr) (lvs.Addr, bool) {
	if s.src == nil {
		return lvs.Addr{}, false
	}
	src := s.src(a.Netip())
	if !src.IsValid() || src.Is4() != isV4(a) {
		return lvs.Addr{}, false
	}
	return lvs.AddrFromNetip(src), true
}

// New returns a Forwarder with an empty configuration: until SetConfig, every
// IP packet goes to the netstack. It panics if opts.Table is nil.
func New(opts Options) *Forwarder {
	if opts.Table == nil {
		panic("forward.New: Options.Table is nil")
	}
	f := &Forwarder{
		link:  opts.Link,
		mac:   opts.MAC,
		table: opts.Table,
		mtu:   opts.MTU,
		log:   opts.Logger,
	}
	if f.mtu <= 0 {
		f.mtu = DefaultMTU
	}
	if opts.FragMemory <= 0 {
		opts.FragMemory = DefaultFragMemory
	}
	if opts.FragTimeout4 <= 0 {
		opts.FragTimeout4 = DefaultFragTimeout4
	}
	if opts.FragTimeout6 <= 0 {
		opts.FragTimeout6 = DefaultFragTimeout6
	}
	f.reasm = newReassembler(opts.FragMemory, opts.FragTimeout4, opts.FragTimeout6)
	f.fragID.Store(rand.Uint32())
	f.cookies = newCookieKey()
	f.lastLog.Store(neverLogged)
	f.SetConfig(nil)
	return f
}

// SetConfig publishes a configuration snapshot; packets processed after it
// returns see it. c must not be modified afterwards (see Config). A nil c
// removes every service. Connections already in the table keep their real
// server, as in IPVS.
func (f *Forwarder) SetConfig(c *Config) {
	s := &snapshot{}
	if c != nil {
		s.services = c.Services
		s.src = c.Source
		s.sloppyTCP = c.SloppyTCP
		for _, svc := range c.Services {
			if svc.Stats == nil {
				svc.Stats = new(lvs.Stats)
			}
			if s.src == nil {
				continue
			}
			for _, d := range svc.Dests {
				if _, done := s.srcOf[d.Addr]; done {
					continue
				}
				if s.srcOf == nil {
					s.srcOf = make(map[lvs.Addr]srcAddr)
				}
				addr, ok := s.lookupSource(&d.Addr)
				s.srcOf[d.Addr] = srcAddr{addr, ok}
			}
		}
	}
	f.snap.Store(s)
}

// NewWorker returns a Worker for one reader goroutine. Workers are never
// released: the Forwarder keeps them to sum their counters, so create one
// per reader, not per batch.
func (f *Forwarder) NewWorker() *Worker {
	w := &Worker{f: f, ipID: uint16(rand.Uint32()), ent: f.table.NewEntry(), rbuf: make([]byte, rbufSize)}
	f.mu.Lock()
	f.workers = append(f.workers, w)
	f.mu.Unlock()
	return w
}

// Counters is a snapshot of a Forwarder's packet counters.
type Counters struct {
	// Drops counts dropped frames by reason.
	Drops [NumDropReasons]uint64
	// ForwardedIn counts frames forwarded from clients to real servers (NAT,
	// DR and TUN); ForwardedOut counts NAT replies forwarded to clients.
	ForwardedIn, ForwardedOut uint64
	// ToStack counts frames handed to the netstack.
	ToStack uint64
	// NewConns counts connections created in the table.
	NewConns uint64
	// FragsHeld counts fragments kept to wait for the rest of their
	// datagram (the one that completes a datagram is not held: a datagram
	// of n fragments adds n-1); Reassembled counts the datagrams completed
	// (each then counted as one packet: forwarded, to the netstack or
	// dropped).
	FragsHeld, Reassembled uint64
	// SynCookies counts the SYN-ACKs the SYN proxy sent (synproxy.go);
	// SynproxyOpened the connections it opened on a valid cookie.
	SynCookies, SynproxyOpened uint64
}

// FragMemory returns the bytes the Forwarder set aside for reassembly (the
// fragments' blocks and the table of datagrams), allocated in New, and the
// bytes of fragments held now.
func (f *Forwarder) FragMemory() (reserved, held int) {
	r := f.reasm
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size(), (len(r.freeBlk) - r.nfree) * fragBlock
}

// Dropped returns the total of Drops.
func (c *Counters) Dropped() uint64 {
	var n uint64
	for _, d := range c.Drops {
		n += d
	}
	return n
}

// Counters sums the counters of every Worker. It may run concurrently with
// Process.
func (f *Forwarder) Counters() Counters {
	f.mu.Lock()
	ws := f.workers
	f.mu.Unlock()
	var c Counters
	for _, w := range ws {
		for i := range c.Drops {
			c.Drops[i] += w.c.drops[i].Load()
		}
		c.ForwardedIn += w.c.fwdIn.Load()
		c.ForwardedOut += w.c.fwdOut.Load()
		c.ToStack += w.c.toStack.Load()
		c.NewConns += w.c.newConns.Load()
		c.FragsHeld += w.c.fragsHeld.Load()
		c.Reassembled += w.c.reassembled.Load()
		c.SynCookies += w.c.synCookies.Load()
		c.SynproxyOpened += w.c.synproxyOpened.Load()
	}
	return c
}

// counter is a counter written by one goroutine and read by any: increments
// are a plain load and store, without a locked instruction.
type counter struct{ v atomic.Uint64 }

func (c *counter) inc()         { c.v.Store(c.v.Load() + 1) }
func (c *counter) add(n uint64) { c.v.Store(c.v.Load() + n) }
func (c *counter) Load() uint64 { return c.v.Load() }

type workerCounters struct {
	drops                            [NumDropReasons]counter
	fwdIn, fwdOut, toStack, newConns counter
	fragsHeld, reassembled           counter
	synCookies, synproxyOpened       counter
}

// Worker processes the frames of one reader goroutine. It is not safe for
// concurrent use; every reader has its own, so that its counters and scratch
// space stay in its CPU's cache.
type Worker struct {
	f *Forwarder
	// pk is the parse of the frame being processed, reused by every call.
	pk parsed
	// ipID is the next identification of an outer IPv4 header (TUN).
	ipID uint16
	c    workerCounters
	// lastDrop is the reason of the last drop, for a trace (LastDrop).
	lastDrop DropReason
	// dry is nil, except in the Worker of a dry run (Forwarder.Explain),
	// which records its decisions there and changes no shared state.
	dry *Explanation
	// ent receives the connection of each packet (Lookup and Insert copy it
	// there) and holds the worker's packet counters; see conntrack.Entry.
	ent *conntrack.Entry
	// ops is the scratch connection entry of a one-packet datagram, which
	// has no entry in the table (see newConn).
	ops conntrack.Entry
	// seg is the TCP segment of a NAT packet, for the table's window checks
	// (see segment).
	seg conntrack.Segment

	// rbuf holds the datagram the worker reassembled last while Process
	// handles it (frag.go); rp is its Packet, ri what refragment needs,
	// ftmpl the headers refragment copies in front of each fragment.
	// fragMax is ri.fragMax while the datagram is processed, 0 otherwise.
	rbuf    []byte
	rp      Packet
	ri      reasmInfo
	ftmpl   [header.EthernetMinimumSize + fragHdrMax]byte
	fragMax int

	// spIns is the SYN proxy's record of the connection being handled
	// (synproxy.go); spOn tells newConn to insert it with the entry.
	// spBuf is the scratch of the window update it sends to a client.
	spIns conntrack.Synproxy
	spOn  bool
	spBuf [spBufLen]byte

	// warmKeys are the tuples of the batch Warm hands to the table;
	// warmSink keeps the table's Warm results (see conntrack.Table.Warm).
	warmKeys [conntrack.WarmBatch]lvs.Tuple
	warmSink uint64

	// Keeps the next allocation's hot fields out of c's last cache line.
	_ [64]byte
}

func (w *Worker) drop(r DropReason) Verdict {
	w.c.drops[r].inc()
	w.lastDrop = r
	return Drop
}

// dropLog counts a drop that an operator should hear about, and reports it
// at most once per logInterval for the whole Forwarder.
func (w *Worker) dropLog(r DropReason) Verdict {
	w.c.drops[r].inc()
	w.lastDrop = r
	if w.f.log != nil && w.dry == nil {
		w.f.logDrop(r, &w.pk.t)
	}
	return Drop
}

func (f *Forwarder) logDrop(r DropReason, t *lvs.Tuple) {
	now := f.table.Now()
	last := f.lastLog.Load()
	if last != neverLogged && now-last < int64(logInterval) || !f.lastLog.CompareAndSwap(last, now) {
		return
	}
	f.log.Warn("dropping packets", "reason", r.String(), "flow", t.String(),
		"rate_limit", logInterval.String())
}

func (w *Worker) toStack() Verdict {
	w.c.toStack.inc()
	return ToStack
}
