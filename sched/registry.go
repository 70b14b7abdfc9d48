package sched

import (
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Default is the scheduler IPVS uses when none is named (ipvsadm's wlc). New
// accepts "" as this name.
const Default = "wlc"

// ErrUnknownScheduler is wrapped by New's error for a name that is not in
// Names. The caller should reject the configuration; the message lists the
// valid names.
var ErrUnknownScheduler = errors.New("unknown scheduler")

// Options tune the schedulers that have settings. The zero value selects the
// defaults, which are all in the table below Options; each field names the
// schedulers that read it, and the others ignore it (but New still rejects an
// invalid value).
type Options struct {
	// Flags are ipvsadm's -b scheduler flags: "sh-fallback" and "sh-port"
	// (sh only), "mh-fallback" and "mh-port" (mh only), and the generic
	// "flag-1", "flag-2", "flag-3" (IP_VS_SVC_F_SCHED1..3; for sh and mh,
	// flag-1 is fallback and flag-2 is port). Default: none.
	Flags []string
	// MHTableIndex sizes the mh table as the kernel's
	// CONFIG_IP_VS_MH_TAB_INDEX does: 8..17 select the primes 251, 509, 1021,
	// 2039, 4093, 8191, 16381, 32749, 65521, 131071. It also sets how far mh
	// scales weights down (the kernel's IP_VS_MH_TAB_BITS, index/2). Default
	// 12: 4093 slots, the kernel's default.
	MHTableIndex int
	// MaglevSize is the number of slots of the "maglev" table: a prime of at
	// least 7 and at most 1<<24. It should be at least 100 times the number of
	// destinations for even shares. Default 65537.
	MaglevSize uint32
	// LBLCExpiration and LBLCRExpiration are the sysctls lblc_expiration and
	// lblcr_expiration: lblc and lblcr forget a destination address unused for
	// this long (at the full check, every 30 minutes), and lblcr drops the
	// most loaded server from a set that has not changed for this long.
	// Default 24h each.
	LBLCExpiration, LBLCRExpiration time.Duration
	// Clock returns monotonic nanoseconds; lblc and lblcr read it for their
	// expiry, and the weighted schedulers for slow start (only while some
	// destination has lvs.Dest.SlowStart set), which needs the clock the
	// control plane passes to lvs.Dest's StartRamp and SetWeight. It must
	// be safe for concurrent use and must not allocate. Default: the
	// monotonic time since New.
	Clock func() int64
}

// Defaults of Options, in one table. A zero field selects its default.
const (
	defaultMHTableIndex       = 12             // CONFIG_IP_VS_MH_TAB_INDEX: 4093 slots
	defaultMaglevSize         = 65537          // Maglev paper's and Katran's default
	defaultLocalityExpiration = 24 * time.Hour // DEFAULT_EXPIRATION of lblc and lblcr
)

// MaxMaglevSize is the largest Options.MaglevSize: 64 MiB of table, far
// beyond any sane service. Package config checks maglev_table_size
// against it.
const MaxMaglevSize = 1 << 24

// Limits on Options.
const (
	minMHTableIndex = 8
	maxMHTableIndex = 17
	minMaglevSize   = 7
	maxMaglevSize   = MaxMaglevSize
)

// schedFlags are the service's scheduler flags (IP_VS_SVC_F_SCHED1..3).
type schedFlags uint8

const (
	flagSched1 schedFlags = 1 << iota // sh-fallback, mh-fallback
	flagSched2                        // sh-port, mh-port
	flagSched3                        // no scheduler reads it
)

// config is Options after validation, with the defaults filled in.
type config struct {
	flags           schedFlags
	mhTableIndex    int
	maglevSize      uint32
	lblcExpiration  int64 // ns
	lblcrExpiration int64 // ns
	clock           func() int64
	// twosSeq is twos's draw counter, shared by the pickers that changes
	// build, so that the draws go on across changes.
	twosSeq *atomic.Uint64
}

// builder builds a scheduler for dests, which New has copied and checked for
// nil entries. rr, wrr, lblc and lblcr keep state across changes and handle
// them themselves; the others rebuild from the list on each change (rebuilt:
// direct for the hashing schedulers, rebuild for the Pickers).
type builder func(dests []*lvs.Dest, c *config) (Scheduler, error)

// registry maps each ipvsadm scheduler name to its builder. Read-only.
var registry = map[string]builder{
	"rr":     newRoundRobin,
	"wrr":    newWeightedRoundRobin,
	"lc":     rebuild(newLeastConn),
	"wlc":    rebuild(newWeightedLeastConn),
	"sed":    rebuild(newShortestExpectedDelay),
	"nq":     rebuild(newNeverQueue),
	"dh":     direct[destinationHash](newDHTable),
	"sh":     direct[sourceHash](newSHTable),
	"lblc":   newLBLC,
	"lblcr":  newLBLCR,
	"fo":     rebuild(newFailover),
	"ovf":    rebuild(newOverflow),
	"mh":     direct[maglevIPVS](newMHTable),
	"twos":   rebuild(newTwoChoices),
	"maglev": direct[maglev](newMaglevTable),
}

// names is the sorted list of registry's keys.
var names = slices.Sorted(maps.Keys(registry))

// Names returns the scheduler names New accepts, sorted. The caller owns the
// slice.
func Names() []string { return slices.Clone(names) }

// Known reports whether New accepts name ("" excepted, which New reads as
// Default).
func Known(name string) bool {
	_, ok := registry[name]
	return ok
}

// New returns the scheduler called name (an ipvsadm name; "" is Default) for
// the destinations dests, in the kernel's list order (the head first), which
// decides ties. New copies the slice, not the destinations; the destinations
// may not be nil. This is the kernel's init_service over a list: a
// configuration that adds real servers A, B, C (ipvsadm -a, in that order)
// has the list C, B, A. Later changes go through the Scheduler's AddDest,
// DelDest and UpdDest, so that its state (rr's and wrr's position, wrr's
// current weight, the lblc and lblcr tables) lives on as in the kernel.
func New(name string, dests []*lvs.Dest, opts Options) (Scheduler, error) {
	if name == "" {
		name = Default
	}
	build, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("new scheduler %q: %w (valid: %s)",
			name, ErrUnknownScheduler, strings.Join(names, ", "))
	}
	for i, d := range dests {
		if d == nil {
			return nil, fmt.Errorf("new scheduler %q: destination %d is nil", name, i)
		}
	}
	c, err := resolve(name, &opts)
	if err != nil {
		return nil, fmt.Errorf("new scheduler %q: %w", name, err)
	}
	list := slices.Clone(dests)
	for i, d := range list {
		if slices.Index(list[:i], d) >= 0 {
			return nil, fmt.Errorf("new scheduler %q: destination %s: %w", name, d, ErrDestExists)
		}
	}
	s, err := build(list, c)
	if err != nil {
		return nil, fmt.Errorf("new scheduler %q: %w", name, err)
	}
	return s, nil
}

// Check reports the error New would return for the scheduler name with
// opts over n destinations, without building anything: an unknown name, a
// bad option, or more destinations than an mh or maglev table holds (for
// maglev, n counts every destination, also those of weight 0 that New
// leaves out). The control plane checks a change with it before it
// commits the weights that New then reads.
func Check(name string, n int, opts Options) error {
	if name == "" {
		name = Default
	}
	if _, ok := registry[name]; !ok {
		return fmt.Errorf("new scheduler %q: %w (valid: %s)",
			name, ErrUnknownScheduler, strings.Join(names, ", "))
	}
	c, err := resolve(name, &opts)
	if err != nil {
		return fmt.Errorf("new scheduler %q: %w", name, err)
	}
	switch size := uint64(0); name {
	case "mh":
		size = uint64(mhPrimes[c.mhTableIndex-minMHTableIndex])
		if uint64(n) > size {
			return fmt.Errorf("new scheduler %q: %d destinations do not fit %d mh slots (raise MHTableIndex)", name, n, size)
		}
	case "maglev":
		size = uint64(c.maglevSize)
		if uint64(n) > size {
			return fmt.Errorf("new scheduler %q: %d destinations do not fit %d maglev slots (raise MaglevSize)", name, n, size)
		}
	}
	return nil
}

// NewFromAdds returns the scheduler a service has after `ipvsadm -A` and
// one `ipvsadm -a` per destination of added, in that order: init_service
// over an empty list, then add_dest for each, each linked at the head, so
// that the list is added reversed. This is how a configuration file is
// read (its real servers stand for those commands), and it differs from New
// over the same list where a scheduler's state depends on the history: wrr
// with weights 4, 3, 2 added as A, B, C starts at current weight 1 (the
// weight A alone gave it) and so chooses C B A before its cycle
// A B A C B A C B A.
func NewFromAdds(name string, added []*lvs.Dest, opts Options) (Scheduler, error) {
	s, err := New(name, nil, opts)
	if err != nil {
		return nil, err
	}
	if r, ok := s.(interface{ install([]*lvs.Dest) error }); ok {
		// A Picker's state is a function of the list alone: build it
		// once over the final list.
		list := slices.Clone(added)
		slices.Reverse(list)
		for i, d := range list {
			if d == nil {
				return nil, fmt.Errorf("new scheduler %q: destination %d is nil", name, len(list)-1-i)
			}
			if slices.Index(list[:i], d) >= 0 {
				return nil, fmt.Errorf("new scheduler %q: destination %s: %w", name, d, ErrDestExists)
			}
		}
		if err := r.install(list); err != nil {
			return nil, fmt.Errorf("new scheduler %q: %w", name, err)
		}
		return s, nil
	}
	for _, d := range added {
		if d == nil {
			return nil, fmt.Errorf("new scheduler %q: a destination is nil", name)
		}
		if err := s.AddDest(d); err != nil {
			return nil, fmt.Errorf("new scheduler %q: destination %s: %w", name, d, err)
		}
	}
	return s, nil
}

// resolve validates opts for the scheduler name and fills in the defaults.
func resolve(name string, opts *Options) (*config, error) {
	c := &config{
		mhTableIndex:    defaultMHTableIndex,
		maglevSize:      defaultMaglevSize,
		lblcExpiration:  int64(defaultLocalityExpiration),
		lblcrExpiration: int64(defaultLocalityExpiration),
		clock:           opts.Clock,
		twosSeq:         new(atomic.Uint64),
	}
	for _, f := range opts.Flags {
		var owner string
		switch f {
		case "flag-1":
			c.flags |= flagSched1
		case "flag-2":
			c.flags |= flagSched2
		case "flag-3":
			c.flags |= flagSched3
		case "sh-fallback":
			c.flags |= flagSched1
			owner = "sh"
		case "sh-port":
			c.flags |= flagSched2
			owner = "sh"
		case "mh-fallback":
			c.flags |= flagSched1
			owner = "mh"
		case "mh-port":
			c.flags |= flagSched2
			owner = "mh"
		default:
			return nil, fmt.Errorf("flags: unknown flag %q (valid: flag-1, flag-2, flag-3, sh-fallback, sh-port, mh-fallback, mh-port)", f)
		}
		if owner != "" && owner != name {
			return nil, fmt.Errorf("flags: flag %q applies only to the %s scheduler", f, owner)
		}
	}
	if i := opts.MHTableIndex; i != 0 {
		if i < minMHTableIndex || i > maxMHTableIndex {
			return nil, fmt.Errorf("MHTableIndex: %d is outside %d..%d", i, minMHTableIndex, maxMHTableIndex)
		}
		c.mhTableIndex = i
	}
	if m := opts.MaglevSize; m != 0 {
		if m < minMaglevSize || m > maxMaglevSize || !big.NewInt(int64(m)).ProbablyPrime(0) {
			return nil, fmt.Errorf("MaglevSize: %d is not a prime in %d..%d", m, minMaglevSize, maxMaglevSize)
		}
		c.maglevSize = m
	}
	for _, e := range []struct {
		field string
		v     time.Duration
		dst   *int64
	}{
		{"LBLCExpiration", opts.LBLCExpiration, &c.lblcExpiration},
		{"LBLCRExpiration", opts.LBLCRExpiration, &c.lblcrExpiration},
	} {
		if e.v < 0 {
			return nil, fmt.Errorf("%s: %v is negative", e.field, e.v)
		}
		if e.v > 0 {
			*e.dst = int64(e.v)
		}
	}
	if c.clock == nil {
		start := time.Now()
		c.clock = func() int64 { return int64(time.Since(start)) }
	}
	return c, nil
}

// usableWeight returns d's weight and true when d may take a new connection:
// weight above zero, available and not overloaded. It loads the weight once,
// so that a caller comparing weights uses the value it checked.
func usableWeight(d *lvs.Dest) (int64, bool) {
	w := d.Weight.Load()
	if w <= 0 || !d.Available.Load() || d.Overloaded.Load() {
		return 0, false
	}
	return int64(w), true
}
