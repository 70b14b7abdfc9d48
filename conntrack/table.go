package conntrack

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Table. Every field is optional; the defaults are:
//
//	Max               DefaultMax (4,194,304 connections)
//	Clock             nanoseconds since New on the monotonic clock
//	Timeouts          DefaultTimeouts() (IPVS's)
//	ExpireNodestConn  false (the kernel's default; lvsd's configuration defaults to true)
//	SecureTCP         false
//	Reserve           0 (none; lvsd's configuration defaults to 0.1)
//	Sources           no limit
//	CheckRST          false (IPVS's behaviour; lvsd's configuration defaults to true)
type Options struct {
	// Max is the most connections the table holds. A new connection over it
	// evicts a half-open TCP connection, an idle UDP flow or a closed TCP
	// connection (see InsertInto) or is refused with ErrFull.
	Max int
	// Reserve is the share of Max (0 to MaxReserve) kept for connections
	// that have been ESTABLISHED: entries that never were (UDP flows, TCP
	// handshakes under way or abandoned) may fill only Max*(1-Reserve), and
	// a new one over that evicts one of them or is refused. A flood of UDP
	// datagrams or SYNs thus leaves room for the handshakes that complete.
	Reserve float64
	// Sources are the per-source limits (see Admit).
	Sources SourceLimits
	// CheckRST drops an RST of a NAT TCP connection whose sequence number
	// lies outside its receiver's window (RFC 5961-style; see Track).
	// Off, any RST with the connection's addresses and ports closes it, as
	// in IPVS.
	CheckRST bool
	// Clock returns the current time in nanoseconds. Only differences matter,
	// so it must be monotonic, not wall-clock time. Tests inject a fake clock
	// to drive timeouts without waiting.
	Clock func() int64
	// Timeouts are the idle timeouts; a zero field keeps IPVS's default.
	Timeouts Timeouts
	// ExpireNodestConn is IPVS's expire_nodest_conn: a client's packet on a
	// connection whose real server was removed (lvs.Dest.Removed) removes
	// the connection, so that the packet (if it is a SYN) and the client's
	// retries are scheduled anew. Without it the connection stays until it
	// times out and its packets are dropped. See Check.
	ExpireNodestConn bool
	// SecureTCP selects IPVS's secure_tcp state table (tcp_states_dos), in
	// which a client's ACK alone does not establish a NAT connection.
	SecureTCP bool
}

// MaxReserve is the largest Options.Reserve.
const MaxReserve = 0.9

// DefaultMax is the default Options.Max.
const DefaultMax = 1 << 22

// MaxConnections is the largest Options.Max: every shard addresses its entries with
// 24 bits.
const MaxConnections = 1 << 30

// ExpireInterval is how often Run expires idle entries; EstimateInterval is
// how often it updates the rate estimates (IPVS's 2 s).
const (
	ExpireInterval   = time.Second
	EstimateInterval = 2 * time.Second
)

// ErrFull is returned by InsertInto when the table holds Options.Max entries and
// none can be evicted: refuse the new connection and count the drop.
var ErrFull = errors.New("connection table full")

const (
	// numShards is a power of two; the shard is chosen by the top bits of
	// the tuple's hash.
	numShardsLog = 8
	numShards    = 1 << numShardsLog
)

type shard struct {
	mu sync.RWMutex
	// idx maps tuples to locations. Guarded by mu.
	idx index
	// chunks is the slab. It grows (a new slice with one more chunk) under
	// mu and is read without it: chunks never move or go away, so a
	// location stays valid memory for the table's life.
	chunks atomic.Pointer[[]*chunk]
	// recs are the chunks' entries, by chunk number, published like
	// chunks (and before them); slab is the table's arena they come from.
	recs atomic.Pointer[[]*recBlock]
	slab *arena
	// used is the next never-used index; free heads the free list (linked
	// by rec.next); n counts live entries. Guarded by mu.
	used, free uint32
	n          int
	// wheel heads the lists of entries by due tick (modulo wheelSize);
	// lastTick is the last tick expired. Every entry filed is due in
	// (lastTick, lastTick+wheelSize]. Guarded by mu.
	wheel    [wheelSize]uint32
	lastTick uint32
	// fifoHead and fifoTail are the eviction list: TCP entries in the order
	// they became evictable (half-open at insert, closed at TIME_WAIT or
	// CLOSE). Entries that stopped being evictable (established) stay on it
	// until eviction meets and unlinks them. fifoLen is its length, read
	// without the lock to skip shards with nothing to evict. Guarded by mu.
	fifoHead, fifoTail uint32
	fifoLen            atomic.Int32
	// binds caches the binding indexes of recent destinations (and VIPs
	// and protocols), so that Insert seldom takes a table-wide lock.
	// Guarded by mu.
	binds [bindCacheSize]bindCached
	id    uint32

	// Keeps the locks of neighbouring shards out of one cache line.
	_ [64]byte
}

// Table is the connection table. Its methods are safe for concurrent use.
type Table struct {
	shards [numShards]shard
	seed   hashSeed
	clock  func() int64
	base   int64 // clock time of New: table times count from it

	max          atomic.Int64
	n            atomic.Int64 // live entries, including ones being inserted
	to           atomic.Pointer[stateMs]
	secure       atomic.Bool
	expireNodest atomic.Bool

	// soft counts live entries that never established (UDP, TCP
	// handshakes); reserve is Options.Reserve in thousandths.
	soft    atomic.Int64
	reserve atomic.Int64
	src     sources

	checkRST   atomic.Bool
	rstDropped atomic.Uint64

	evicted, refused, nodest, reused atomic.Uint64

	bindMu sync.Mutex
	// bindByDest indexes binds. Guarded by bindMu.
	bindByDest map[bindKey]uint32
	// binds holds every binding by index (0 unused). Appended under bindMu
	// and published whole; read without a lock.
	binds atomic.Pointer[[]*binding]

	expireMu sync.Mutex
	// victims is Expire's reusable list of removed entries. Guarded by
	// expireMu.
	victims []uint32

	st stats

	// slabMem holds the entries, idxMem the large indexes: memory outside
	// the Go heap, unmapped when the Table is garbage collected.
	slabMem, idxMem *arena
}

// New returns an empty table.
func New(opts Options) *Table {
	t := &Table{
		seed:       hashSeed{rand.Uint64(), rand.Uint64()},
		clock:      opts.Clock,
		bindByDest: make(map[bindKey]uint32),
		slabMem:    new(arena),
		idxMem:     new(arena),
	}
	// Nothing outside the table refers to its arenas' memory: the entries
	// are copied out (Entry), and an Entry keeps the Table reachable.
	runtime.AddCleanup(t, func(a *arena) { a.release() }, t.slabMem)
	runtime.AddCleanup(t, func(a *arena) { a.release() }, t.idxMem)
	if t.clock == nil {
		start := time.Now()
		t.clock = func() int64 { return int64(time.Since(start)) }
	}
	t.base = t.clock()
	to := defaultStateMs().with(opts.Timeouts)
	t.to.Store(&to)
	t.SetMax(opts.Max)
	t.SetReserve(opts.Reserve)
	t.src.seed = hashSeed{rand.Uint64(), rand.Uint64()}
	t.SetSourceLimits(opts.Sources)
	t.checkRST.Store(opts.CheckRST)
	t.secure.Store(opts.SecureTCP)
	t.expireNodest.Store(opts.ExpireNodestConn)
	binds := []*binding{nil}
	t.binds.Store(&binds)
	for i := range t.shards {
		s := &t.shards[i]
		s.id = uint32(i)
		s.idx.init(t.idxMem)
		s.used = 1
		chunks := []*chunk{}
		s.chunks.Store(&chunks)
		recs := []*recBlock{}
		s.recs.Store(&recs)
		s.slab = t.slabMem
	}
	t.st.init()
	return t
}

// SetMax changes Options.Max (0 or less: DefaultMax). Lowering it removes
// nothing: until expiry brings the table under the new limit, every new
// connection must evict one or is refused.
func (t *Table) SetMax(n int) {
	if n <= 0 {
		n = DefaultMax
	}
	t.max.Store(int64(min(n, MaxConnections)))
}

// SetReserve changes Options.Reserve (clamped to [0, MaxReserve]). Lowering
// the share left to entries that never established removes nothing: new
// ones evict until the table is under it.
func (t *Table) SetReserve(r float64) {
	t.reserve.Store(int64(min(max(r, 0), MaxReserve) * 1000))
}

// softMax returns how many entries that never established the table holds
// when its limit is max.
func (t *Table) softMax(max int64) int64 { return max - max*t.reserve.Load()/1000 }

// SetExpireNodestConn changes Options.ExpireNodestConn.
func (t *Table) SetExpireNodestConn(on bool) { t.expireNodest.Store(on) }

// SetSecureTCP changes Options.SecureTCP; it applies from the next segment
// of every connection.
func (t *Table) SetSecureTCP(on bool) { t.secure.Store(on) }

// Now returns the table's clock, the time to pass to Insert, Update and
// Expire.
func (t *Table) Now() int64 { return t.clock() }

// Len returns the number of connections.
func (t *Table) Len() int { return int(t.n.Load()) }

// Max returns the current Options.Max.
func (t *Table) Max() int { return int(t.max.Load()) }

// ms returns clock time now in table milliseconds (since New).
func (t *Table) ms(now int64) int64 { return max(now-t.base, 0) / int64(time.Millisecond) }

// Run expires idle connections every ExpireInterval and updates the rate
// estimates every EstimateInterval until ctx is done. The caller owns the
// goroutine that runs it.
func (t *Table) Run(ctx context.Context) {
	tick := time.NewTicker(ExpireInterval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Expire(t.clock())
			if n%int(EstimateInterval/ExpireInterval) == 0 {
				t.Estimate()
			}
		}
	}
}
