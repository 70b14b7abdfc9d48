package sched

import (
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// Sizes and times of the lblc and lblcr tables, the kernel's constants.
const (
	localityTabBits = 10 // CONFIG_IP_VS_LBLC_TAB_BITS, CONFIG_IP_VS_LBLCR_TAB_BITS
	localityTabSize = 1 << localityTabBits
	localityTabMask = localityTabSize - 1
	// localityMaxEntries is the size above which the periodic check drops
	// entries unused for localityEntryTimeout.
	localityMaxEntries = localityTabSize * 16
	// localityCheckInterval is the period of the kernel's check timer.
	localityCheckInterval = int64(60 * time.Second)
	// localityEntryTimeout is how long an entry must be unused before the
	// check may drop it from a table over localityMaxEntries.
	localityEntryTimeout = int64(6 * time.Minute)
	// localityFullCheckTicks: every this many checks without pressure, the
	// check drops every entry unused for the expiration (30 minutes).
	localityFullCheckTicks = 30
)

// localityTable maps a destination address (the flow's Dst) to a value, in
// the kernel's layout: 1024 buckets of chains, a rover that the collection
// resumes from, and the periodic check (check, from the owner's Tick).
//
// The table is not safe for concurrent use; its owner's mutex guards it.
// Lookups do not allocate; add allocates one entry.
type localityTable[V any] struct {
	buckets [localityTabSize]*localityEntry[V]
	entries int // entries in buckets
	rover   int // bucket the last collection stopped at
	counter int // checks since the last full check, from 1
	// expiration is lblc_expiration or lblcr_expiration (ns).
	expiration int64
}

type localityEntry[V any] struct {
	next    *localityEntry[V]
	addr    lvs.Addr
	lastuse int64 // ns
	v       V
}

func (t *localityTable[V]) init(expiration int64) {
	t.counter = 1
	t.expiration = expiration
}

// localityBucket is the kernel's lblc and lblcr hash of an address:
// hash_32 of the folded address to 10 bits.
func localityBucket(a *lvs.Addr) int {
	return int(hash32(addrFold(a), localityTabBits))
}

// get returns the entry for a, or nil.
func (t *localityTable[V]) get(a *lvs.Addr) *localityEntry[V] {
	for e := t.buckets[localityBucket(a)]; e != nil; e = e.next {
		if e.addr == *a {
			return e
		}
	}
	return nil
}

// add inserts a new entry for a, last used now, at the head of its chain.
// The caller has checked that a has none.
func (t *localityTable[V]) add(a *lvs.Addr, now int64) *localityEntry[V] {
	h := localityBucket(a)
	e := &localityEntry[V]{next: t.buckets[h], addr: *a, lastuse: now}
	t.buckets[h] = e
	t.entries++
	return e
}

// check is one run of the kernel's periodic timer: a full check every 30th
// run, otherwise, only while the table is over localityMaxEntries, dropping
// about a third more than the excess (at most half the maximum) of the
// entries unused for localityEntryTimeout.
func (t *localityTable[V]) check(now int64) {
	if t.counter%localityFullCheckTicks == 0 {
		t.collect(now-t.expiration, -1)
		t.counter = 1
		return
	}
	if t.entries <= localityMaxEntries {
		t.counter++
		return
	}
	goal := (t.entries - localityMaxEntries) * 4 / 3
	goal = min(goal, localityMaxEntries/2)
	t.collect(now-localityEntryTimeout, goal)
}

// collect drops the entries last used at or before cutoff, bucket by bucket
// from the one after the rover, and stops after the bucket in which goal
// entries have been dropped (never when goal < 0).
func (t *localityTable[V]) collect(cutoff int64, goal int) {
	j := t.rover
	for range localityTabSize {
		j = (j + 1) & localityTabMask
		dropped := 0
		for p := &t.buckets[j]; *p != nil; {
			if e := *p; e.lastuse <= cutoff {
				*p = e.next
				dropped++
			} else {
				p = &e.next
			}
		}
		t.entries -= dropped
		if goal >= 0 {
			if goal -= dropped; goal <= 0 {
				break
			}
		}
	}
	t.rover = j
}
