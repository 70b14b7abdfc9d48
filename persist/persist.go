package persist

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Options configure a Table. Every field is optional; the defaults are:
//
//	Max    DefaultMax (1,048,576 templates)
//	Clock  nanoseconds since New on the monotonic clock
type Options struct {
	// Max is the most templates the table holds; Create refuses more with
	// ErrFull.
	Max int
	// Clock returns the current time in nanoseconds, monotonic. It must be
	// the connection table's clock. Tests inject a fake one.
	Clock func() int64
}

// DefaultMax is the default Options.Max.
const DefaultMax = 1 << 20

// ExpireInterval is how often Run expires templates.
const ExpireInterval = time.Second

// ErrFull is returned by Create when the table holds Options.Max templates:
// refuse the new connection and count the drop, as IPVS does when it cannot
// allocate a template.
var ErrFull = errors.New("persistence template table full")

const (
	numShardsLog = 6
	numShards    = 1 << numShardsLog
)

// Key identifies a template, as IPVS's template tuple
// <protocol, client network, 0, virtual address, virtual port>. It is a
// comparable value; Policy.Key builds it from a packet's tuple.
type Key struct {
	// Client is the client's address masked with the service's netmask.
	Client lvs.Addr
	// VAddr is the virtual address.
	VAddr lvs.Addr
	// VPort is the virtual port, or 0 for a service over several ports.
	VPort uint16
	Proto lvs.Proto
}

// Policy is the persistence of one virtual service. It is immutable once
// published (a reload builds a new one; the templates stay in the Table).
type Policy struct {
	// Table holds the templates; one table serves every service.
	Table *Table
	// Timeout is the persistence timeout in nanoseconds (ipvsadm -p), above
	// zero.
	Timeout int64
	// Mask is the netmask (ipvsadm -M) in lvs.Addr form: see Mask.
	Mask lvs.Addr
	// Port is the port of the service's template keys: its virtual port, or
	// 0 when the service spans several ports, which then share templates.
	Port uint16
}

// Mask returns the netmask of a prefix length in the 16-byte form of
// lvs.Addr: for IPv4 (v4 true, bits 0..32) the IPv4-mapped prefix is kept
// whole so that a masked address stays an IPv4 address; for IPv6 bits is
// 0..128. Out-of-range lengths are clamped.
func Mask(bits int, v4 bool) lvs.Addr {
	if v4 {
		bits = 96 + min(max(bits, 0), 32)
	}
	bits = min(max(bits, 0), 128)
	var m lvs.Addr
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

// Key returns the template key of the flow t (client to virtual service).
func (p *Policy) Key(t *lvs.Tuple) Key {
	k := Key{VAddr: t.Dst, VPort: p.Port, Proto: t.Proto}
	for i := range k.Client {
		k.Client[i] = t.Src[i] & p.Mask[i]
	}
	return k
}

// Template is one persistence template. Key, Dest and Timeout are immutable;
// the rest is atomic.
type Template struct {
	Key  Key
	Dest *lvs.Dest
	// Timeout is the persistence timeout the template was created with (ns).
	Timeout int64

	// deadline is the clock time the timer runs out at.
	deadline atomic.Int64
	// n counts the connections the template controls (IPVS's n_control).
	n atomic.Int32
	// removed is set when the template leaves the table.
	removed atomic.Bool
}

// Release ends the control of one connection over the template: the
// connection table calls it when a connection made through the template
// leaves the table, and the forwarder when it made none (a one-packet
// datagram, or a connection that could not be inserted). It implements
// conntrack.Controller.
func (tp *Template) Release() {
	if tp.n.Add(-1) < 0 {
		tp.n.Add(1) // a double release: never below zero
	}
}

// Controlled returns the number of connections the template controls.
func (tp *Template) Controlled() int { return int(tp.n.Load()) }

// Deadline returns the clock time the template's timer runs out at.
func (tp *Template) Deadline() int64 { return tp.deadline.Load() }

// Removed reports whether the template has left the table (expired or
// invalidated). Connections it controls keep working.
func (tp *Template) Removed() bool { return tp.removed.Load() }

// acquire adds a controlled connection and restarts the timer, as IPVS's
// ip_vs_control_add and ip_vs_conn_put on a template.
func (tp *Template) acquire(now int64) {
	tp.n.Add(1)
	tp.deadline.Store(now + tp.Timeout)
}

// expired reports whether the timer ran out with no controlled connection:
// IPVS would have freed the template.
func (tp *Template) expired(now int64) bool {
	return now >= tp.deadline.Load() && tp.n.Load() <= 0
}

// usable is ip_vs_check_template: the real server is available, and not
// quiescent when quiescent templates expire.
func (tp *Template) usable(expireQuiescent bool) bool {
	d := tp.Dest
	return d.Available.Load() && !(expireQuiescent && d.Weight.Load() == 0)
}

type shard struct {
	mu sync.RWMutex
	// m maps keys to their templates. Guarded by mu.
	m map[Key]*Template

	// Keeps the locks of neighbouring shards out of one cache line.
	_ [64]byte
}

// Table is the template table. Its methods are safe for concurrent use.
type Table struct {
	shards [numShards]shard
	seed   uint64
	max    int64
	clock  func() int64

	// n counts templates in the table, including ones being inserted.
	n atomic.Int64
	// expireQuiescent is the sysctl expire_quiescent_template.
	expireQuiescent atomic.Bool

	expireMu sync.Mutex
	// cand is Expire's reusable list of candidates. Guarded by expireMu.
	cand []*Template
}

// New returns an empty table.
func New(opts Options) *Table {
	t := &Table{seed: rand.Uint64(), max: int64(opts.Max), clock: opts.Clock}
	if t.max <= 0 {
		t.max = DefaultMax
	}
	if t.clock == nil {
		start := time.Now()
		t.clock = func() int64 { return int64(time.Since(start)) }
	}
	for i := range t.shards {
		t.shards[i].m = make(map[Key]*Template)
	}
	return t
}

// Now returns the table's clock.
func (t *Table) Now() int64 { return t.clock() }

// Len returns the number of templates.
func (t *Table) Len() int { return int(t.n.Load()) }

// SetExpireQuiescent sets IPVS's sysctl expire_quiescent_template: when on,
// a template whose real server has weight 0 is invalidated at its next
// lookup, so that persistent clients move off a quiescent server at once;
// when off (the default, as IPVS), they stay until their templates expire.
func (t *Table) SetExpireQuiescent(on bool) { t.expireQuiescent.Store(on) }

func (t *Table) shardOf(k *Key) *shard {
	const m1, m2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9
	h := t.seed ^ (uint64(k.VPort)<<8 | uint64(k.Proto))
	h = (h ^ binary.LittleEndian.Uint64(k.Client[0:8])) * m1
	h = (h ^ binary.LittleEndian.Uint64(k.Client[8:16])) * m2
	h ^= h >> 31
	h = (h ^ binary.LittleEndian.Uint64(k.VAddr[8:16])) * m1
	h ^= h >> 29
	return &t.shards[h>>(64-numShardsLog)]
}

// Get returns the valid template of k and acquires it for one new
// connection (the caller must Release it once), or nil. A template whose
// real server is unavailable (or quiescent, with expire_quiescent_template)
// is invalidated: removed from the table, so that the client is scheduled
// again. Get takes one shard read lock and does not allocate (an
// invalidation takes the write lock).
func (t *Table) Get(k *Key, now int64) *Template {
	s := t.shardOf(k)
	eq := t.expireQuiescent.Load()
	s.mu.RLock()
	tp := s.m[*k]
	if tp == nil {
		s.mu.RUnlock()
		return nil
	}
	if !tp.expired(now) && tp.usable(eq) {
		// Under the read lock, so that Expire (which removes under the
		// write lock) cannot remove a template being acquired.
		tp.acquire(now)
		s.mu.RUnlock()
		return tp
	}
	s.mu.RUnlock()
	// Expired (Expire has not come by yet) or invalid: remove it unless it
	// was replaced or revived meanwhile.
	s.mu.Lock()
	if cur := s.m[*k]; cur == tp && (tp.expired(now) || !tp.usable(eq)) {
		t.remove(s, tp)
	}
	s.mu.Unlock()
	return nil
}

// Create binds k to the real server d, which the scheduler has just chosen,
// for timeout nanoseconds, and returns the new template, acquired for one
// connection. If another reader created a valid template for k meanwhile,
// Create returns that one, acquired, instead: the caller must use the
// returned template's Dest. Over Options.Max it returns ErrFull.
func (t *Table) Create(k *Key, d *lvs.Dest, timeout, now int64) (*Template, error) {
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m[*k]; old != nil {
		if !old.expired(now) && old.usable(t.expireQuiescent.Load()) {
			old.acquire(now)
			return old, nil
		}
		t.remove(s, old)
	}
	if t.n.Add(1) > t.max {
		t.n.Add(-1)
		return nil, ErrFull
	}
	tp := &Template{Key: *k, Dest: d, Timeout: timeout}
	tp.acquire(now)
	s.m[*k] = tp
	d.PersistConns.Add(1)
	return tp, nil
}

// remove deletes tp from its shard s.
//
// Preconditions: s.mu is held for writing; s.m holds tp.
func (t *Table) remove(s *shard, tp *Template) {
	delete(s.m, tp.Key)
	tp.removed.Store(true)
	tp.Dest.PersistConns.Add(-1)
	t.n.Add(-1)
}

// Expire runs the templates' timers at time now, as IPVS's
// ip_vs_conn_expire does for templates: a template whose timer ran out is
// removed if it controls no connection, and its timer restarts (for its
// timeout from now) if it still does. It returns how many it removed.
// Templates whose real server became unavailable are left to their timers
// and to Get, as in IPVS, so that a server back before the client's next
// connection keeps its clients.
func (t *Table) Expire(now int64) int {
	t.expireMu.Lock()
	defer t.expireMu.Unlock()
	removed := 0
	for i := range t.shards {
		s := &t.shards[i]
		cand := t.cand[:0]
		s.mu.RLock()
		for _, tp := range s.m {
			if now < tp.deadline.Load() {
				continue
			}
			if tp.n.Load() > 0 {
				// Still in control: restart the timer (a race with a
				// concurrent acquire only moves the deadline within the
				// same timeout).
				tp.deadline.Store(now + tp.Timeout)
				continue
			}
			cand = append(cand, tp)
		}
		s.mu.RUnlock()
		if len(cand) > 0 {
			s.mu.Lock()
			for _, tp := range cand {
				if s.m[tp.Key] == tp && tp.expired(now) {
					t.remove(s, tp)
					removed++
				}
			}
			s.mu.Unlock()
		}
		clear(cand)
		t.cand = cand[:0]
	}
	return removed
}

// Run expires templates every ExpireInterval until ctx is done. The caller
// owns the goroutine that runs it.
func (t *Table) Run(ctx context.Context) {
	tick := time.NewTicker(ExpireInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Expire(t.clock())
		}
	}
}

// Info describes a template, for listings (ipvsadm -Lc shows templates as
// connections of protocol NONE).
type Info struct {
	Client     netip.Addr // the client network's address (masked)
	VAddr      netip.Addr
	VPort      uint16
	Proto      lvs.Proto
	Dest       *lvs.Dest
	Controlled int
	// Expires is the time left on the template's timer (ns); it restarts
	// when it runs out while Controlled is above zero.
	Expires int64
}

// Range calls fn for every template until fn returns false. It holds no
// lock while fn runs; templates created or removed meanwhile may or may not
// be seen. It allocates.
func (t *Table) Range(fn func(Info) bool) {
	now := t.clock()
	var buf []*Template
	for i := range t.shards {
		s := &t.shards[i]
		buf = buf[:0]
		s.mu.RLock()
		for _, tp := range s.m {
			buf = append(buf, tp)
		}
		s.mu.RUnlock()
		for _, tp := range buf {
			in := Info{
				Client: tp.Key.Client.Netip(), VAddr: tp.Key.VAddr.Netip(), VPort: tp.Key.VPort,
				Proto: tp.Key.Proto, Dest: tp.Dest, Controlled: tp.Controlled(),
				Expires: max(tp.deadline.Load()-now, 0),
			}
			if !fn(in) {
				return
			}
		}
	}
}

// Peek is Get for a dry run (a trace of a described packet): the valid
// template of k that Get would return, without acquiring it, restarting
// its timer or removing an invalid one; nil when Get would return nil.
func (t *Table) Peek(k *Key, now int64) *Template {
	s := t.shardOf(k)
	eq := t.expireQuiescent.Load()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if tp := s.m[*k]; tp != nil && !tp.expired(now) && tp.usable(eq) {
		return tp
	}
	return nil
}
