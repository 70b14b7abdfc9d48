package conntrack

// Per-source limits: how many connections one client prefix may hold and
// open per second. The counts live in a count-min sketch (two rows of
// counters indexed by two seeded hashes of the prefix), so that they take
// a fixed amount of memory whatever the number of sources, no lock and no
// allocation per packet. A sketch never undercounts: a source is limited at
// its own count or, when both its counters are shared with other sources,
// earlier (the chance is about (sources/sketchSize)^2).

import (
	"errors"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// SourceLimits bound what one client prefix may do (IPv4 clients by their
// first PrefixV4 bits, IPv6 clients by their first PrefixV6). A zero limit
// is no limit.
type SourceLimits struct {
	// Conns is the most connections in the table from one prefix.
	Conns int
	// NewPerSec is the most new connections one prefix may open per
	// second (a window of one second of the table's clock).
	NewPerSec int
	// PrefixV4 (0 to 32, 0: 32) and PrefixV6 (0 to 128, 0: 64) are the
	// lengths of the prefixes counted as one source.
	PrefixV4, PrefixV6 int
}

// ErrSourceLimit and ErrSourceRate are returned by Admit when a client's
// prefix holds SourceLimits.Conns connections or opened NewPerSec in the
// current second: drop the packet (count it), schedule nothing.
var (
	ErrSourceLimit = errors.New("source connection limit")
	ErrSourceRate  = errors.New("source new-connection rate limit")
)

const (
	sketchLog  = 14
	sketchSize = 1 << sketchLog
)

// sketch counts connections and new connections per second by prefix of
// the lengths it was made for.
type sketch struct {
	v4, v6 int
	conns  [2][sketchSize]atomic.Int32
	// rate packs second<<32 | count: the second the count is of.
	rate [2][sketchSize]atomic.Uint64
}

// sources is a Table's per-source limiter.
type sources struct {
	// mu serialises SetSourceLimits.
	mu  sync.Mutex
	lim atomic.Pointer[SourceLimits]
	// sk is allocated the first time a limit is set and kept from then on
	// (until the prefix lengths change), so that connections counted stay
	// counted until they end.
	sk   atomic.Pointer[sketch]
	seed hashSeed

	limited, rated atomic.Uint64
}

// SetSourceLimits changes the per-source limits. Connections already in
// the table count against Conns only if they were made while a limit was
// set; a change of prefix lengths starts the counts over.
func (t *Table) SetSourceLimits(l SourceLimits) {
	if l.PrefixV4 <= 0 || l.PrefixV4 > 32 {
		l.PrefixV4 = 32
	}
	if l.PrefixV6 <= 0 || l.PrefixV6 > 128 {
		l.PrefixV6 = 64
	}
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	if sk := t.src.sk.Load(); (l.Conns > 0 || l.NewPerSec > 0) && (sk == nil || sk.v4 != l.PrefixV4 || sk.v6 != l.PrefixV6) {
		t.src.sk.Store(&sketch{v4: l.PrefixV4, v6: l.PrefixV6})
	}
	t.src.lim.Store(&l)
}

// slots returns the counters of src's prefix in sk.
func (s *sources) slots(src *lvs.Addr, sk *sketch) (uint32, uint32) {
	var k lvs.Tuple
	k.Src = *src
	plen := sk.v6
	if isV4Mapped(src) {
		plen = 96 + sk.v4
	}
	for b := range k.Src {
		switch keep := plen - 8*b; {
		case keep <= 0:
			k.Src[b] = 0
		case keep < 8:
			k.Src[b] &= ^byte(0) << (8 - keep)
		}
	}
	h := hashTuple(&k, s.seed)
	return uint32(h) & (sketchSize - 1), uint32(bits.RotateLeft64(h, 32)) & (sketchSize - 1)
}

// isV4Mapped reports whether a holds an IPv4 address (::ffff:a.b.c.d).
func isV4Mapped(a *lvs.Addr) bool {
	for _, b := range a[:10] {
		if b != 0 {
			return false
		}
	}
	return a[10] == 0xff && a[11] == 0xff
}

// Admit checks a new connection from src at time now against the
// per-source limits and counts it in the second's rate. Call it before
// scheduling; InsertInto counts the connection itself. It takes no lock
// and does not allocate.
func (t *Table) Admit(src *lvs.Addr, now int64) error {
	l := t.src.lim.Load()
	sk := t.src.sk.Load()
	if l == nil || sk == nil || l.Conns <= 0 && l.NewPerSec <= 0 {
		return nil
	}
	a, b := t.src.slots(src, sk)
	if l.Conns > 0 && min(sk.conns[0][a].Load(), sk.conns[1][b].Load()) >= int32(l.Conns) {
		t.src.limited.Add(1)
		return ErrSourceLimit
	}
	if l.NewPerSec > 0 {
		sec := uint64(t.ms(now) / 1000)
		n := min(bump1(&sk.rate[0][a], sec), bump1(&sk.rate[1][b], sec))
		if n > uint64(l.NewPerSec) {
			t.src.rated.Add(1)
			return ErrSourceRate
		}
	}
	return nil
}

// bump1 adds one to the count of second sec in c (starting it over when c
// holds an earlier second) and returns the count.
func bump1(c *atomic.Uint64, sec uint64) uint64 {
	for {
		v := c.Load()
		nv := sec<<32 | 1
		if v>>32 == sec&(1<<32-1) {
			nv = v + 1
		}
		if c.CompareAndSwap(v, nv) {
			return nv & (1<<32 - 1)
		}
	}
}

// countSource adds one to the connection count of src's prefix. It
// reports whether it counted (a limit is set), so that the entry is
// uncounted when it ends (uncountSource).
func (t *Table) countSource(src *lvs.Addr) bool {
	l := t.src.lim.Load()
	sk := t.src.sk.Load()
	if l == nil || sk == nil || l.Conns <= 0 && l.NewPerSec <= 0 {
		return false
	}
	a, b := t.src.slots(src, sk)
	sk.conns[0][a].Add(1)
	sk.conns[1][b].Add(1)
	return true
}

// uncountSource takes one from the connection count of src's prefix,
// never below zero (counts started over by a change of prefix lengths).
func (t *Table) uncountSource(src *lvs.Addr) {
	sk := t.src.sk.Load()
	if sk == nil {
		return
	}
	a, b := t.src.slots(src, sk)
	dec0(&sk.conns[0][a])
	dec0(&sk.conns[1][b])
}

func dec0(c *atomic.Int32) {
	for {
		v := c.Load()
		if v <= 0 || c.CompareAndSwap(v, v-1) {
			return
		}
	}
}
