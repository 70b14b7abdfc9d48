package forward

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lvsd/lvsd/lvs"
)

// Fragments are reassembled, as the kernel does before IPVS sees them:
// ip_defrag before LOCAL_IN and ip_vs_gather_frags for replies (IPv4),
// nf_defrag_ipv6 (IPv6). Every fragment addressed to the director (unicast
// to its MAC on Ethernet links) is taken: to a VIP, a NAT reply, or for the
// netstack, which then gets the whole datagram. Reassembly, rather than
// steering later fragments by (source, destination, protocol, ID), because
// NAT must rewrite ports and the L4 checksum, which covers the whole
// datagram, and because a later fragment may arrive before the first.
//
// A complete datagram is copied into the worker's own buffer (Worker.rbuf)
// and processed there as any packet; what leaves is re-fragmented as the
// kernel's ip_do_fragment / ip6_fragment would (refragment).
//
// The fragments wait in one reassembler per Forwarder, shared by its
// workers under a mutex: fragments of one datagram may arrive on different
// queues (a flow hash over addresses and ports cannot place a later
// fragment, which has no ports), and the lock is taken only by fragments,
// never by other packets, whose only cost is parse's test of the fragment
// bits it already made. Its memory is allocated once, in New: the
// fragments' bytes go into fixed blocks of a pool bounded by
// Options.FragMemory (the kernel's ipfrag_high_thresh, 4 MiB), and a
// datagram's bookkeeping into a fixed table of queues. Nothing is
// allocated per fragment.

// Reassembly defaults, as the kernel's sysctls: ipfrag_high_thresh (and
// nf_conntrack_frag6_high_thresh), ipfrag_time, nf_conntrack_frag6_timeout.
const (
	DefaultFragMemory   = 4 << 20
	DefaultFragTimeout4 = 30 * time.Second
	DefaultFragTimeout6 = 60 * time.Second
)

const (
	// fragBlock is the unit of the fragment memory: a datagram's bytes
	// (after its header) live in blocks of this size, one per 1 KiB of
	// offset it has received.
	fragBlock = 1024
	// maxFragPages is the number of blocks of the largest datagram.
	maxFragPages = (0xffff + fragBlock - 1) / fragBlock
	// maxFrags bounds the fragments of one datagram: a 64 KiB datagram
	// cut for a 576-byte path has 118. A datagram with more is dropped
	// (DropFragLimit); the kernel has no such bound, only its memory one.
	maxFrags = 128
	// fragHdrMax bounds the header kept from a first fragment: an IPv4
	// header with options (60), or an IPv6 header with the extension
	// headers before its fragment header. A first fragment with more is
	// dropped (DropFragLimit).
	fragHdrMax = 256
	// fragQueueBlocks is the fragment memory per queue of the table: a
	// queue holds at least one block, so a quarter of the blocks' number
	// of queues lets small datagrams use the memory as well.
	fragQueueBlocks = 4
)

// Queue flags, as the kernel's INET_FRAG_FIRST_IN and INET_FRAG_LAST_IN.
const (
	fragFirstIn = 1
	fragLastIn  = 2
)

// fragKey identifies a datagram being reassembled: IPv4 by source,
// destination, protocol and 16-bit ID (ip4_frag_match); IPv6 by source,
// destination and 32-bit ID (no protocol: it is not in a fragment's fixed
// part).
type fragKey struct {
	src, dst lvs.Addr
	id       uint32
	proto    uint8
	v6       bool
}

type fragRange struct{ off, end uint16 }

// fragQueue is one datagram being reassembled. The fields say what the
// kernel's inet_frag_queue says of the same name.
type fragQueue struct {
	key fragKey
	// next links the hash chain of a queue in use and the free list;
	// older and newer the queue's family's list in arrival (and so
	// deadline) order. -1 ends each.
	next, older, newer int32
	deadline           int64
	length, meat       int                   // q.len (end of the data known so far) and q.meat (bytes received)
	maxSize, maxDF     int                   // largest fragment (IPv4: IP length; IPv6: payload length), largest with DF
	flags              uint8                 // fragFirstIn, fragLastIn
	ecn                uint8                 // the fragments' ECN codepoints, as bits (fragECNBits)
	nfrags             int                   // fragments held
	hdrLen             int                   // bytes of hdr: the first fragment's header (IPv6: before its fragment header)
	nh                 int                   // IPv6: offset in hdr of the next-header byte that named the fragment header
	fragNext           uint8                 // IPv6: the next header the first fragment's fragment header names
	runs               [maxFrags / 64]uint64 // bit i: frags[i] starts a run (inet_frag_queue_insert's)
	frags              [maxFrags]fragRange   // sorted by offset, disjoint
	pages              [maxFragPages]int32   // block index + 1 of each 1 KiB of data, 0 when none
	hdr                [fragHdrMax]byte
}

func (q *fragQueue) runStart(i int) bool { return q.runs[i/64]&(1<<(i%64)) != 0 }

// reassembler holds the datagrams being reassembled on one link.
type reassembler struct {
	timeout4, timeout6 int64
	seed               uint64

	mu sync.Mutex
	// Everything below is guarded by mu.
	queues  []fragQueue
	buckets []int32 // hash chains of queues in use, by hash of key
	free    int32   // free queues, linked by next
	// oldest and newest of each family (0: IPv4, 1: IPv6).
	oldest, newest [2]int32
	blocks         []byte  // the fragment memory, len(freeBlk) blocks
	freeBlk        []int32 // indexes of free blocks (a stack)
	nfree          int
	used           int // queues in use
}

func newReassembler(memory int, t4, t6 time.Duration) *reassembler {
	nblk := max(memory/fragBlock, 1)
	nq := max(nblk/fragQueueBlocks, 1)
	nb := 1
	for nb < nq {
		nb <<= 1
	}
	r := &reassembler{
		timeout4: int64(t4), timeout6: int64(t6), seed: rand.Uint64(),
		queues:  make([]fragQueue, nq),
		buckets: make([]int32, nb),
		blocks:  make([]byte, nblk*fragBlock),
		freeBlk: make([]int32, nblk),
		nfree:   nblk,
		oldest:  [2]int32{-1, -1}, newest: [2]int32{-1, -1},
	}
	for i := range r.buckets {
		r.buckets[i] = -1
	}
	for i := range r.queues {
		r.queues[i].next = int32(i + 1)
	}
	r.queues[nq-1].next = -1
	for i := range r.freeBlk {
		r.freeBlk[i] = int32(i)
	}
	return r
}

// size returns the bytes r holds: the blocks, the queue table and the hash
// buckets, allocated once in newReassembler; they never grow.
func (r *reassembler) size() int {
	return len(r.blocks) + 4*len(r.freeBlk) + len(r.queues)*int(reflect.TypeFor[fragQueue]().Size()) + 4*len(r.buckets)
}

func (r *reassembler) hash(k *fragKey) int {
	h := r.seed ^ uint64(k.id)*0x9e3779b97f4a7c15 ^ uint64(k.proto)<<56
	for _, a := range [2]*lvs.Addr{&k.src, &k.dst} {
		h ^= binary.LittleEndian.Uint64(a[0:8])
		h *= 0xff51afd7ed558ccd
		h ^= binary.LittleEndian.Uint64(a[8:16])
		h *= 0xc4ceb9fe1a85ec53
		h ^= h >> 33
	}
	return int(h & uint64(len(r.buckets)-1))
}

// find returns the queue of k, or -1.
// Preconditions: r.mu held.
func (r *reassembler) find(k *fragKey) int32 {
	for i := r.buckets[r.hash(k)]; i >= 0; i = r.queues[i].next {
		if r.queues[i].key == *k {
			return i
		}
	}
	return -1
}

// create takes a free queue for k, or returns -1 when there is none or the
// fragment memory is used up (the kernel creates no queue above its high
// threshold either).
// Preconditions: r.mu held; k has no queue.
func (r *reassembler) create(k *fragKey, now int64) int32 {
	i := r.free
	if i < 0 || r.nfree == 0 {
		return -1
	}
	q := &r.queues[i]
	r.free = q.next
	fam := 0
	q.deadline = now + r.timeout4
	if k.v6 {
		fam = 1
		q.deadline = now + r.timeout6
	}
	q.key = *k
	q.length, q.meat, q.maxSize, q.maxDF = 0, 0, 0, 0
	q.flags, q.ecn, q.nfrags, q.hdrLen = 0, 0, 0, 0
	q.runs = [maxFrags / 64]uint64{}
	b := r.hash(k)
	q.next = r.buckets[b]
	r.buckets[b] = i
	q.older, q.newer = r.newest[fam], -1
	if q.older >= 0 {
		r.queues[q.older].newer = i
	} else {
		r.oldest[fam] = i
	}
	r.newest[fam] = i
	r.used++
	return i
}

// kill frees queue i and its blocks, and returns the fragments it held.
// Preconditions: r.mu held.
func (r *reassembler) kill(i int32) int {
	q := &r.queues[i]
	for p, blk := range q.pages {
		if blk != 0 {
			r.freeBlk[r.nfree] = blk - 1
			r.nfree++
			q.pages[p] = 0
		}
	}
	b := r.hash(&q.key)
	if r.buckets[b] == i {
		r.buckets[b] = q.next
	} else {
		for j := r.buckets[b]; j >= 0; j = r.queues[j].next {
			if r.queues[j].next == i {
				r.queues[j].next = q.next
				break
			}
		}
	}
	fam := 0
	if q.key.v6 {
		fam = 1
	}
	if q.older >= 0 {
		r.queues[q.older].newer = q.newer
	} else {
		r.oldest[fam] = q.newer
	}
	if q.newer >= 0 {
		r.queues[q.newer].older = q.older
	} else {
		r.newest[fam] = q.older
	}
	n := q.nfrags
	q.next = r.free
	r.free = i
	r.used--
	return n
}

// expire frees the queues whose timeout has passed (each family's list is
// in deadline order) and returns the fragments they held. The kernel's
// timer fires once per queue, set at its creation; lvsd looks when a
// fragment arrives, so memory held by expired queues is reclaimed no later
// than the next fragment needs it.
// Preconditions: r.mu held.
func (r *reassembler) expire(now int64) int {
	n := 0
	for fam := range r.oldest {
		for i := r.oldest[fam]; i >= 0 && r.queues[i].deadline <= now; i = r.oldest[fam] {
			n += r.kill(i)
		}
	}
	return n
}

// fragECNBits maps an ECN codepoint to the kernel's IPFRAG_ECN_* bit.
func fragECNBits(tos uint8) uint8 { return 1 << (tos & 3) }

// fragECN is the kernel's ip_frag_ecn_table: for the union of the
// fragments' ECN bits (not-ECT 1, ECT(1) 2, ECT(0) 4, CE 8), the bits to
// OR into the reassembled header, or 0xff for a mix that must be dropped
// (RFC 3168 section 5.3).
func fragECN(bits uint8) uint8 {
	const notECT, ce = 1, 8
	switch {
	case bits&notECT != 0 && bits != notECT:
		return 0xff
	case bits&ce != 0 && bits != ce:
		return 3 // INET_ECN_CE
	}
	return 0
}

// insertResult is inet_frag_queue_insert's verdict.
type insertResult uint8

const (
	fragInsertOK insertResult = iota
	fragInsertDup
	fragInsertOverlap
)

// place finds where [off, end) goes among q's fragments, as the kernel's
// inet_frag_queue_insert: after the last fragment (a run goes on when it
// starts where the last one ends), or in a gap between runs (a new run); a
// fragment inside one run is a duplicate, any other overlap condemns the
// datagram (RFC 5722, which the kernel applies to IPv4 as well). It returns
// the index to insert at and whether the fragment starts a run; it changes
// nothing.
func (q *fragQueue) place(off, end int) (at int, run bool, res insertResult) {
	n := q.nfrags
	if n == 0 {
		return 0, true, fragInsertOK
	}
	lastEnd := int(q.frags[n-1].end)
	if lastEnd < end {
		if off < lastEnd {
			return 0, false, fragInsertOverlap
		}
		return n, off != lastEnd, fragInsertOK
	}
	// Runs are disjoint and sorted: a scan finds what the kernel's search
	// of its tree of runs finds.
	for s := 0; s < n; {
		e := s + 1
		for e < n && !q.runStart(e) {
			e++
		}
		runOff, runEnd := int(q.frags[s].off), int(q.frags[e-1].end)
		switch {
		case end <= runOff:
			return s, true, fragInsertOK
		case off >= runEnd:
		case off >= runOff && end <= runEnd:
			return 0, false, fragInsertDup
		default:
			return 0, false, fragInsertOverlap
		}
		s = e
	}
	return n, true, fragInsertOK // not reached: end <= lastEnd
}

// insert puts [off, end) at index at (from place).
func (q *fragQueue) insert(at int, run bool, off, end int) {
	// Shift frags and run bits from at on by one.
	for i := q.nfrags; i > at; i-- {
		q.frags[i] = q.frags[i-1]
		q.setRun(i, q.runStart(i-1))
	}
	q.frags[at] = fragRange{uint16(off), uint16(end)}
	q.setRun(at, run)
	q.nfrags++
}

func (q *fragQueue) setRun(i int, v bool) {
	if v {
		q.runs[i/64] |= 1 << (i % 64)
	} else {
		q.runs[i/64] &^= 1 << (i % 64)
	}
}

// missingPages returns how many blocks bytes [off, end) of q still need.
func (q *fragQueue) missingPages(off, end int) int {
	n := 0
	for p := off / fragBlock; p <= (end-1)/fragBlock; p++ {
		if q.pages[p] == 0 {
			n++
		}
	}
	return n
}

// write copies data, the bytes at offset off of q's datagram, into q's
// blocks, taking the blocks it lacks.
// Preconditions: r.mu held; r has the blocks (missingPages).
func (r *reassembler) write(q *fragQueue, off int, data []byte) {
	for len(data) > 0 {
		p := off / fragBlock
		if q.pages[p] == 0 {
			r.nfree--
			q.pages[p] = r.freeBlk[r.nfree] + 1
		}
		in := off % fragBlock
		blk := r.blocks[int(q.pages[p]-1)*fragBlock:][:fragBlock]
		n := copy(blk[in:], data)
		data, off = data[n:], off+n
	}
}

// read copies the q.length bytes of q's datagram into dst.
// Preconditions: r.mu held.
func (r *reassembler) read(q *fragQueue, dst []byte) {
	for off := 0; off < q.length; off += fragBlock {
		blk := r.blocks[int(q.pages[off/fragBlock]-1)*fragBlock:][:fragBlock]
		copy(dst[off:min(off+fragBlock, q.length)], blk)
	}
}

// reasmInfo describes the datagram a worker reassembled last, for
// refragment. Valid while fragment processes it.
type reasmInfo struct {
	v6      bool
	ipLen   int    // the reassembled IP packet's length
	hdrLen  int    // IPv4: its header; IPv6: its unfragmentable part (before the fragment header)
	nh      int    // IPv6: offset in the packet of the next-header byte that named the fragment header
	first   uint8  // IPv4: protocol; IPv6: the fixed header's next header
	id      uint16 // IPv4: identification
	df      bool   // IPv4: reassembled with DF (every fragment had it)
	fragMax int    // the largest fragment received (IP length): IPCB/IP6CB frag_max_size
	nfrags  int
	ends    [maxFrags]uint16 // the received fragments' ends, in order
}

// reasmHeadroom is the headroom in front of a reassembled datagram in
// Worker.rbuf: what TUN encapsulation, ICMP errors and Emit need, and an
// IPv6 fragment header that refragment inserts.
const reasmHeadroom = 128

// rbufSize is the size of Worker.rbuf: the headroom, an Ethernet header and
// the largest IPv6 datagram (40 + 65535).
const rbufSize = reasmHeadroom + header.EthernetMinimumSize + header.IPv6MinimumSize + 0xffff

// fragment handles a fragment (parse returned fragV; w.pk has its
// addresses, protocol and offsets). It returns Held while the datagram is
// incomplete, Drop with a reason counted, or, for the fragment that
// completes a datagram, the verdict of the whole datagram, processed as
// any packet: ToStack with p rewritten into the datagram, Transmit with
// p holding the last frame to write (the others went through p.Emit).
func (w *Worker) fragment(p *Packet, b []byte) Verdict {
	pk := &w.pk
	if w.fragMax != 0 {
		// A fragment inside a reassembled datagram (a second fragment
		// header): w.rbuf is in use.
		return w.drop(DropFragment)
	}
	if p.VNet.GSOType != VirtioNetHdrGSONone || p.VNet.Flags&VirtioNetHdrFNeedsCsum != 0 {
		return w.drop(DropBadVNetHdr) // a kernel never offloads a fragment
	}
	k := fragKey{src: pk.t.Src, dst: pk.t.Dst, proto: uint8(pk.t.Proto), v6: pk.v6}
	var (
		off, end, hdrEnd int
		more, df         bool
		tos              uint8
		size             int // the kernel's max_size measure of this fragment
	)
	ip := b[pk.l3:pk.ipEnd]
	if pk.v6 {
		fh := pk.fh - pk.l3
		k.proto = 0
		k.id = binary.BigEndian.Uint32(ip[fh+4 : fh+8])
		fo := binary.BigEndian.Uint16(ip[fh+2 : fh+4])
		off, more = int(fo&^7), fo&1 != 0
		hdrEnd = fh
		end = off + len(ip) - (fh + 8)
		tos = uint8(binary.BigEndian.Uint16(ip[0:2]) >> 4)
		size = len(ip) - header.IPv6MinimumSize
		if end > 0xffff {
			return w.drop(DropFragment) // offset is too large
		}
	} else {
		k.id = uint32(binary.BigEndian.Uint16(ip[4:6]))
		fo := binary.BigEndian.Uint16(ip[6:8])
		off, more, df = int(fo&ipv4OffsetMask)*8, fo&ipv4MF != 0, fo&ipv4DF != 0
		hdrEnd = pk.l4 - pk.l3
		end = off + len(ip) - hdrEnd
		tos = ip[1]
		size = len(ip)
		if end > 0xffff {
			// Beyond any datagram: the kernel finds it at reassembly
			// (oversized) and drops the whole datagram there.
			return w.drop(DropFragment)
		}
	}

	r := w.f.reasm
	now := w.f.table.Now()
	r.mu.Lock()
	if n := r.expire(now); n > 0 {
		w.c.drops[DropFragTimeout].add(uint64(n))
	}
	qi := r.find(&k)
	if qi < 0 {
		if qi = r.create(&k, now); qi < 0 {
			r.mu.Unlock()
			return w.drop(DropFragLimit)
		}
	}
	q := &r.queues[qi]
	// The kernel's ip_frag_queue / nf_ct_frag6_queue checks, in order.
	if !more {
		// The last fragment: nothing may lie beyond it, and a second one
		// must end where the first did.
		if end < q.length || q.flags&fragLastIn != 0 && end != q.length {
			if pk.v6 {
				return w.fragDrop(r, qi, DropFragment, false) // only this fragment
			}
			return w.fragDrop(r, qi, DropFragment, true)
		}
	} else {
		if end&7 != 0 {
			if pk.v6 {
				return w.fragDrop(r, qi, DropFragment, true) // not rounded to 8 bytes
			}
			end &^= 7 // IPv4 drops the odd tail
		}
		if end > q.length && q.flags&fragLastIn != 0 {
			if pk.v6 {
				return w.fragDrop(r, qi, DropFragment, false)
			}
			return w.fragDrop(r, qi, DropFragment, true)
		}
	}
	if end == off {
		if pk.v6 {
			return w.fragDrop(r, qi, DropFragment, false)
		}
		return w.fragDrop(r, qi, DropFragment, true)
	}
	at, run, res := q.place(off, end)
	switch res {
	case fragInsertDup:
		return w.fragDrop(r, qi, DropFragDup, false)
	case fragInsertOverlap:
		return w.fragDrop(r, qi, DropFragOverlap, true)
	}
	if q.nfrags == maxFrags || off == 0 && hdrEnd > fragHdrMax {
		return w.fragDrop(r, qi, DropFragLimit, true)
	}
	if r.nfree < q.missingPages(off, end) {
		// Out of fragment memory: this fragment is lost, the datagram
		// may still complete if it is sent again before its timeout.
		return w.fragDrop(r, qi, DropFragLimit, false)
	}

	// Checks done: the fragment joins its queue.
	if !more {
		q.flags |= fragLastIn
		q.length = end
	} else if end > q.length {
		q.length = end
	}
	q.insert(at, run, off, end)
	dataAt := hdrEnd
	if pk.v6 {
		dataAt += 8 // the fragment header
	}
	r.write(q, off, ip[dataAt:dataAt+end-off])
	q.meat += end - off
	q.ecn |= fragECNBits(tos)
	q.maxSize = max(q.maxSize, size)
	if df {
		q.maxDF = max(q.maxDF, size)
	}
	if off == 0 {
		q.flags |= fragFirstIn
		q.hdrLen = copy(q.hdr[:], ip[:hdrEnd])
		if pk.v6 {
			q.nh = pk.nh - pk.l3
			q.fragNext = ip[hdrEnd]
		}
	}
	if q.flags != fragFirstIn|fragLastIn || q.meat != q.length {
		r.mu.Unlock()
		w.c.fragsHeld.inc()
		return Held
	}
	return w.reassemble(p, r, qi)
}

// fragDrop ends fragment's handling of a fragment it drops, of queue qi:
// with whole the datagram is discarded with it, its held fragments counted
// with the same reason; without, the queue stays, unless it holds nothing
// (this fragment created it). It unlocks r.
// Preconditions: r.mu held.
func (w *Worker) fragDrop(r *reassembler, qi int32, reason DropReason, whole bool) Verdict {
	if whole || r.queues[qi].nfrags == 0 {
		if n := r.kill(qi); n > 0 {
			w.c.drops[reason].add(uint64(n))
		}
	}
	r.mu.Unlock()
	return w.drop(reason)
}

// reassemble builds the datagram of the complete queue qi in w.rbuf, frees
// the queue, unlocks r, and processes the datagram (see fragment).
// Preconditions: r.mu held.
func (w *Worker) reassemble(p *Packet, r *reassembler, qi int32) Verdict {
	q := &r.queues[qi]
	ri := &w.ri
	ri.v6 = q.key.v6
	ri.hdrLen = q.hdrLen
	ri.nfrags = q.nfrags
	for i := range q.nfrags {
		ri.ends[i] = q.frags[i].end
	}
	ecn := fragECN(q.ecn)
	l2 := 0
	if w.f.link == Ethernet {
		l2 = header.EthernetMinimumSize
	}
	at := reasmHeadroom + l2
	ipLen := q.hdrLen + q.length
	if ri.v6 && ipLen-header.IPv6MinimumSize > 0xffff || !ri.v6 && ipLen > 0xffff || ecn == 0xff {
		// Oversized, or ECN-capable and not-ECT fragments mixed: the
		// datagram (this fragment included) is dropped.
		n := r.kill(qi)
		r.mu.Unlock()
		w.c.drops[DropFragment].add(uint64(n))
		return Drop
	}
	pkt := w.rbuf[at : at+ipLen]
	copy(pkt, q.hdr[:q.hdrLen])
	r.read(q, pkt[q.hdrLen:])
	if ri.v6 {
		ri.nh = q.nh
		pkt[q.nh] = q.fragNext
		binary.BigEndian.PutUint16(pkt[4:6], uint16(ipLen-header.IPv6MinimumSize))
		pkt[1] |= ecn << 4
		ri.fragMax = header.IPv6MinimumSize + q.maxSize
		ri.first = pkt[6]
	} else {
		binary.BigEndian.PutUint16(pkt[2:4], uint16(ipLen))
		pkt[1] |= ecn
		ri.df = q.maxDF == q.maxSize
		var fo uint16
		if ri.df {
			fo = ipv4DF
		}
		binary.BigEndian.PutUint16(pkt[6:8], fo)
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:12], ^checksum.Checksum(pkt[:q.hdrLen], 0))
		ri.fragMax = max(q.maxSize, q.maxDF)
		ri.first = pkt[9]
		ri.id = binary.BigEndian.Uint16(pkt[4:6])
	}
	ri.ipLen = ipLen
	r.kill(qi)
	r.mu.Unlock()
	w.c.reassembled.inc()

	if l2 != 0 {
		eth := w.rbuf[reasmHeadroom:at]
		setMACs(eth, &w.f.mac, &w.pk.srcMAC)
		et := header.IPv4ProtocolNumber
		if ri.v6 {
			et = header.IPv6ProtocolNumber
		}
		binary.BigEndian.PutUint16(eth[12:14], uint16(et))
	}
	rp := &w.rp
	*rp = Packet{Buf: w.rbuf, Off: reasmHeadroom, Len: l2 + ipLen, Emit: p.Emit}
	w.fragMax = ri.fragMax
	v := w.Process(rp)
	w.fragMax = 0
	switch v {
	case ToStack:
		if rp.Len > len(p.Buf)-p.Off {
			// (A link's buffer holds 64 KiB: not on a real link.)
			w.c.toStack.add(^uint64(0)) // not delivered after all
			return w.drop(DropUnsupported)
		}
		p.Len = copy(p.Buf[p.Off:], rp.Frame())
		p.VNet = VNetHdr{}
		return ToStack
	case Transmit:
		if w.isDatagram(rp) {
			return w.refragment(p, rp)
		}
		// A tunnelled packet (whose outer header tunnel sized and, if
		// need be, fragmented) or an ICMP error about the datagram.
		return w.lastFrame(p, rp.Buf, rp.Off, rp.Len)
	case AwaitNeighbor:
		// A datagram leaves as fragments, which cannot wait as one frame.
		return w.dropLog(DropNoNeighbor)
	}
	return v
}

// lastFrame hands the frame buf[off:off+n], the last one a reassembled
// datagram makes, to the link: copied into p's buffer at p.Off for a
// Transmit verdict (the link writes from its own buffer), or, when it does
// not fit there, through p.Emit, and then nothing remains (Held).
func (w *Worker) lastFrame(p *Packet, buf []byte, off, n int) Verdict {
	if n <= len(p.Buf)-p.Off {
		p.Len = copy(p.Buf[p.Off:], buf[off:off+n])
		p.VNet = VNetHdr{}
		return Transmit
	}
	if p.Emit == nil || off < EmitHeadroom {
		return w.drop(DropUnsupported)
	}
	p.Emit.Emit(buf, off, n) // a lost frame is counted by the link
	return Held
}

// isDatagram reports whether the frame processed from a reassembled
// datagram is that datagram, rewritten (NAT, DR: to be re-fragmented),
// rather than a new packet built around it.
func (w *Worker) isDatagram(rp *Packet) bool {
	ri := &w.ri
	l3 := rp.Off
	if w.f.link == Ethernet {
		l3 += header.EthernetMinimumSize
	}
	ip := rp.Buf[l3 : rp.Off+rp.Len]
	if ri.v6 {
		return len(ip) == ri.ipLen && ip[0]>>4 == 6 && ip[6] == ri.first
	}
	return len(ip) == ri.ipLen && ip[0]>>4 == 4 && ip[9] == ri.first &&
		binary.BigEndian.Uint16(ip[4:6]) == ri.id
}

// refragment sends the rewritten datagram in rp as fragments, as the
// kernel sends a reassembled packet (ip_fragment and ip_do_fragment for
// IPv4, ip6_fragment for IPv6, both with the frag_max_size that
// reassembly recorded):
//
//   - the fragments are cut where the received ones were, when each of
//     those fits (the kernel's fast path over the frag_list); otherwise in
//     pieces of the largest multiple of 8 that fits;
//   - what fits: the link's MTU and the largest fragment received (IPv4),
//     the largest fragment received but at least 1280 (IPv6; a larger one
//     than the link's MTU was dropped, DropTooBig);
//   - IPv4 fragments carry the datagram's header (its identification, DF
//     when every fragment had it), options not to be copied replaced by
//     no-operations after the first (ip_options_fragment); IPv6 fragments
//     carry its unfragmentable part and a fragment header with a new
//     identification.
//
// Every fragment but the last goes through p.Emit; the last is written into
// p for the Transmit verdict (see lastFrame).
func (w *Worker) refragment(p, rp *Packet) Verdict {
	ri := &w.ri
	l2 := 0
	if w.f.link == Ethernet {
		l2 = header.EthernetMinimumSize
	}
	l3 := rp.Off + l2
	var mtu, hdr int // largest fragment; header bytes in front of each piece of data
	if ri.v6 {
		if ri.fragMax > w.f.mtu {
			return w.drop(DropTooBig)
		}
		mtu = max(ri.fragMax, header.IPv6MinimumMTU)
		hdr = ri.hdrLen + 8
	} else {
		mtu = min(w.f.mtu, ri.fragMax)
		hdr = ri.hdrLen
	}
	room := mtu - hdr // data per fragment
	if room < 8 {
		return w.drop(DropUnsupported)
	}
	data := ri.ipLen - ri.hdrLen
	fast := true
	for i, prev := 0, 0; i < ri.nfrags; i++ {
		n := int(ri.ends[i]) - prev
		if n > room || n&7 != 0 && i < ri.nfrags-1 {
			fast = false
			break
		}
		prev = int(ri.ends[i])
	}
	nfr := ri.nfrags
	if !fast {
		nfr = (data + room&^7 - 1) / (room &^ 7)
	}
	if nfr > 1 && p.Emit == nil {
		return w.drop(DropUnsupported)
	}
	// The headers, saved: writing each fragment's overwrites what came
	// before it, which has gone out.
	tmpl := w.ftmpl[:l2+ri.hdrLen]
	copy(tmpl, rp.Buf[rp.Off:l3+ri.hdrLen])
	var id uint32
	if ri.v6 {
		id = w.f.fragID.Add(1)
	}
	dataAt := l3 + ri.hdrLen // the datagram's data, in rp.Buf
	for i, off := 0, 0; i < nfr; i++ {
		var n int
		if fast {
			n = int(ri.ends[i]) - off
		} else {
			n = min(room&^7, data-off)
		}
		last := off+n == data
		start := dataAt + off - l2 - hdr
		f := rp.Buf[start : dataAt+off+n]
		copy(f, tmpl)
		ip := f[l2:]
		if ri.v6 {
			binary.BigEndian.PutUint16(ip[4:6], uint16(hdr-header.IPv6MinimumSize+n))
			ip[ri.nh] = ip6Fragment
			fh := ip[ri.hdrLen : ri.hdrLen+8]
			fh[0], fh[1] = tmpl[l2+ri.nh], 0
			fo := uint16(off)
			if !last {
				fo |= 1
			}
			binary.BigEndian.PutUint16(fh[2:4], fo)
			binary.BigEndian.PutUint32(fh[4:8], id)
		} else {
			if i == 1 {
				ipv4OptionsFragment(tmpl[l2+header.IPv4MinimumSize : l2+ri.hdrLen])
				copy(f, tmpl)
			}
			binary.BigEndian.PutUint16(ip[2:4], uint16(hdr+n))
			fo := uint16(off / 8)
			if !last {
				fo |= ipv4MF
			}
			if ri.df {
				fo |= ipv4DF
			}
			binary.BigEndian.PutUint16(ip[6:8], fo)
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip[:hdr], 0))
		}
		if last {
			return w.lastFrame(p, rp.Buf, start, len(f))
		}
		p.Emit.Emit(rp.Buf, start, len(f)) // a lost fragment is counted by the link
		off += n
	}
	return Transmit // not reached: the last fragment returns
}

// ipv4OptionsFragment replaces, in the options opts of an IPv4 header, each
// option whose copied flag is clear by no-operations, as the kernel's
// ip_options_fragment prepares the header of the fragments after the first.
func ipv4OptionsFragment(opts []byte) {
	for len(opts) > 0 {
		switch opts[0] {
		case 0: // end of options
			return
		case 1: // no-operation
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			return
		}
		n := int(opts[1])
		if opts[0]&0x80 == 0 {
			for i := range n {
				opts[i] = 1
			}
		}
		opts = opts[n:]
	}
}
