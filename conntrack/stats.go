package conntrack

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// Counters are cumulative counters of a real server or a virtual service,
// as ipvsadm --stats shows them. Bytes are IP bytes (headers included).
type Counters struct {
	Conns             uint64
	InPkts, OutPkts   uint64
	InBytes, OutBytes uint64
}

func countersOf(s *lvs.Stats) Counters {
	return Counters{
		Conns:  s.Conns.Load(),
		InPkts: s.InPkts.Load(), OutPkts: s.OutPkts.Load(),
		InBytes: s.InBytes.Load(), OutBytes: s.OutBytes.Load(),
	}
}

func (c *Counters) add(o Counters) {
	c.Conns += o.Conns
	c.InPkts += o.InPkts
	c.OutPkts += o.OutPkts
	c.InBytes += o.InBytes
	c.OutBytes += o.OutBytes
}

// Rates are rate estimates as ipvsadm --rate shows them: per second,
// bytes per second for the byte rates. Stats reports them; lvs.Stats has
// none, to keep an lvs.Dest within its 128 bytes.
type Rates struct {
	CPS, InPPS, OutPPS, InBPS, OutBPS uint64
}

// estimator is IPVS's rate estimator (ip_vs_est.c): every 2 s the rate over
// the interval, in fixed point (packets and connections scaled by 2^10,
// bytes by 2^5), is blended into an exponentially weighted average with
// weight 1/4.
type estimator struct {
	last                              Counters
	cps, inpps, outpps, inbps, outbps int64
}

// update takes a sample of the counters, EstimateInterval after the last.
func (e *estimator) update(c Counters) {
	ewma := func(avg *int64, now, last uint64, shift uint) {
		rate := int64(now-last) << shift
		*avg += (rate - *avg) >> 2
	}
	// Scaled by 2^10 (2^5 for bytes), divided by the 2 s interval.
	ewma(&e.cps, c.Conns, e.last.Conns, 9)
	ewma(&e.inpps, c.InPkts, e.last.InPkts, 9)
	ewma(&e.outpps, c.OutPkts, e.last.OutPkts, 9)
	ewma(&e.inbps, c.InBytes, e.last.InBytes, 4)
	ewma(&e.outbps, c.OutBytes, e.last.OutBytes, 4)
	e.last = c
}

// rates reads the estimates as ip_vs_read_estimator does (rounding up).
func (e *estimator) rates() Rates {
	return Rates{
		CPS:    uint64(e.cps+0x1ff) >> 10,
		InPPS:  uint64(e.inpps+0x1ff) >> 10,
		OutPPS: uint64(e.outpps+0x1ff) >> 10,
		InBPS:  uint64(e.inbps+0xf) >> 5,
		OutBPS: uint64(e.outbps+0xf) >> 5,
	}
}

// cell holds one worker's packet counters of one binding. Only the owning
// worker writes it (a load and a store, no locked instruction); anyone may
// read it.
type cell struct {
	inPkts, inBytes, outPkts, outBytes atomic.Uint64
	// fails counts handshake failures (failures.go).
	fails atomic.Uint64
}

const pageSize = 256

type page [pageSize]cell

// workerStats are the counters of one packet-path goroutine (one Entry from
// NewEntry), indexed by binding.
type workerStats struct {
	// pages grows (a new slice) only by its owner; readers load it.
	pages atomic.Pointer[[]*page]
}

// cell returns the owner's cell of binding i, growing the pages if needed
// (an allocation once per 256 real servers).
func (w *workerStats) cell(i uint32) *cell {
	pages := *w.pages.Load()
	p := int(i / pageSize)
	if p >= len(pages) || pages[p] == nil {
		grown := make([]*page, max(p+1, len(pages)))
		copy(grown, pages)
		grown[p] = new(page)
		w.pages.Store(&grown)
		pages = grown
	}
	return &pages[p][i%pageSize]
}

// peek returns the cell of binding i, or nil if the worker never counted it.
func (w *workerStats) peek(i uint32) *cell {
	pages := *w.pages.Load()
	if p := int(i / pageSize); p < len(pages) && pages[p] != nil {
		return &pages[p][i%pageSize]
	}
	return nil
}

func bump(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }

// CountIn adds one packet of n IP bytes from the client to the connection's
// counters: to its Entry's worker counters (from NewEntry), which the table
// sums into the destination's and the service's lvs.Stats every
// EstimateInterval and on Stats; for an Entry without them, directly to
// Dest.Stats and Svc with atomic adds.
func (e *Entry) CountIn(n int) {
	if e.ws != nil && e.bind != 0 {
		c := e.ws.cell(e.bind)
		bump(&c.inPkts, 1)
		bump(&c.inBytes, uint64(n))
		return
	}
	e.Dest.Stats.InPkts.Add(1)
	e.Dest.Stats.InBytes.Add(uint64(n))
	if e.Svc != nil {
		e.Svc.InPkts.Add(1)
		e.Svc.InBytes.Add(uint64(n))
	}
}

// CountOut is CountIn for a packet from the real server.
func (e *Entry) CountOut(n int) {
	if e.ws != nil && e.bind != 0 {
		c := e.ws.cell(e.bind)
		bump(&c.outPkts, 1)
		bump(&c.outBytes, uint64(n))
		return
	}
	e.Dest.Stats.OutPkts.Add(1)
	e.Dest.Stats.OutBytes.Add(uint64(n))
	if e.Svc != nil {
		e.Svc.OutPkts.Add(1)
		e.Svc.OutBytes.Add(uint64(n))
	}
}

// stats is the table's statistics state.
type stats struct {
	wmu sync.Mutex
	// workers are the counters of every NewEntry. Guarded by wmu.
	workers []*workerStats

	mu sync.Mutex
	// services accumulate the counters and rates of each virtual service
	// across reloads and removed real servers; total of everything.
	// Guarded by mu.
	services map[lvs.ServiceKey]*serviceStats
	total    serviceStats
}

type serviceStats struct {
	c   Counters
	est estimator
}

func (s *stats) init() { s.services = make(map[lvs.ServiceKey]*serviceStats) }

func (s *stats) newWorker() *workerStats {
	w := &workerStats{}
	pages := []*page{}
	w.pages.Store(&pages)
	s.wmu.Lock()
	s.workers = append(s.workers, w)
	s.wmu.Unlock()
	return w
}

// fold adds what the workers counted since the last fold to the
// destinations' and services' lvs.Stats, and each destination's growth
// since the last fold (forward's own counts included) to its service's
// accumulated counters and the total. It returns the bindings.
//
// Preconditions: t.st.mu is held.
func (t *Table) fold() []*binding {
	t.st.wmu.Lock()
	ws := slices.Clone(t.st.workers)
	t.st.wmu.Unlock()
	bs := *t.binds.Load()
	for i := 1; i < len(bs); i++ {
		b := bs[i]
		var sum [4]uint64
		fails := b.expFails.Load()
		for _, w := range ws {
			if c := w.peek(uint32(i)); c != nil {
				sum[0] += c.inPkts.Load()
				sum[1] += c.inBytes.Load()
				sum[2] += c.outPkts.Load()
				sum[3] += c.outBytes.Load()
				fails += c.fails.Load()
			}
		}
		b.failures = fails
		if sum != b.folded {
			d := [4]uint64{sum[0] - b.folded[0], sum[1] - b.folded[1], sum[2] - b.folded[2], sum[3] - b.folded[3]}
			b.folded = sum
			addStats(&b.dest.Stats, d)
			if svc := b.svc.Load(); svc != nil {
				addStats(svc, d)
			}
		}
		now := countersOf(&b.dest.Stats)
		if now != b.seen {
			delta := Counters{
				Conns:  now.Conns - b.seen.Conns,
				InPkts: now.InPkts - b.seen.InPkts, OutPkts: now.OutPkts - b.seen.OutPkts,
				InBytes: now.InBytes - b.seen.InBytes, OutBytes: now.OutBytes - b.seen.OutBytes,
			}
			b.seen = now
			t.st.service(b.key).c.add(delta)
			t.st.total.c.add(delta)
		}
	}
	return bs
}

func addStats(s *lvs.Stats, d [4]uint64) {
	if d[0] != 0 {
		s.InPkts.Add(d[0])
		s.InBytes.Add(d[1])
	}
	if d[2] != 0 {
		s.OutPkts.Add(d[2])
		s.OutBytes.Add(d[3])
	}
}

// service returns the accumulator of service k.
//
// Preconditions: s.mu is held.
func (s *stats) service(k lvs.ServiceKey) *serviceStats {
	sv := s.services[k]
	if sv == nil {
		sv = &serviceStats{}
		s.services[k] = sv
	}
	return sv
}

// Estimate folds the workers' counters into lvs.Stats and updates every
// rate estimate (Stats reports them). It assumes EstimateInterval since its last call: Run calls it
// at that pace; tests call it to stand for one interval.
func (t *Table) Estimate() {
	t.st.mu.Lock()
	defer t.st.mu.Unlock()
	bs := t.fold()
	for _, sv := range t.st.services {
		sv.est.update(sv.c)
	}
	t.st.total.est.update(t.st.total.c)
	for _, b := range bs[1:] {
		b.est.update(b.seen)
	}
}

// DestStats are the statistics of one real server.
type DestStats struct {
	Dest    *lvs.Dest
	Service lvs.ServiceKey
	// ActiveConns and InactiveConns are the destination's counts now.
	ActiveConns, InactiveConns int32
	// Failures counts the handshakes of the real server that failed
	// (failures.go), since the table first saw it.
	Failures uint64
	Counters
	Rates
}

// ServiceStats are the statistics of one virtual service: every
// connection it has had, including those of real servers since removed.
type ServiceStats struct {
	Service lvs.ServiceKey
	Counters
	Rates
}

// StatsSnapshot is the table's report for a control plane: counters exact
// at the time of the call, rates as of the last Estimate.
type StatsSnapshot struct {
	// Conns is the number of connections in the table; Max the limit;
	// Unestablished the connections that never established (UDP flows,
	// TCP handshakes), which Options.Reserve bounds.
	Conns, Max, Unestablished int
	// Evicted counts connections evicted to make room (half-open, idle
	// UDP or closed); Refused new connections refused with ErrFull;
	// NodestExpired connections removed because their real server was
	// (ExpireNodestConn); Reused connections in TIME_WAIT or CLOSE removed
	// by a new SYN of the same client port.
	Evicted, Refused, NodestExpired, Reused uint64
	// SourceLimited and SourceRated count new connections refused by
	// Admit: their source prefix held SourceLimits.Conns connections, or
	// opened SourceLimits.NewPerSec in the second.
	SourceLimited, SourceRated uint64
	// RSTOutOfWindow counts RST segments Track refused.
	RSTOutOfWindow uint64
	// Dests has one element per real server the table has seen, in the
	// order it first saw them; Services one per virtual service, by
	// address, port and protocol.
	Dests    []DestStats
	Services []ServiceStats
	// Total is the sum over every service.
	Total Counters
	Rates Rates
}

// Stats returns the table's statistics. It folds the workers' counters
// first, so the counters are exact; it takes the statistics lock, never a
// shard's.
func (t *Table) Stats() StatsSnapshot {
	t.st.mu.Lock()
	defer t.st.mu.Unlock()
	bs := t.fold()
	r := StatsSnapshot{
		Conns: t.Len(), Max: t.Max(),
		Evicted: t.evicted.Load(), Refused: t.refused.Load(),
		NodestExpired: t.nodest.Load(), Reused: t.reused.Load(),
		Unestablished: int(t.soft.Load()),
		SourceLimited: t.src.limited.Load(), SourceRated: t.src.rated.Load(),
		RSTOutOfWindow: t.rstDropped.Load(),
		Total:          t.st.total.c, Rates: t.st.total.est.rates(),
	}
	for _, b := range bs[1:] {
		r.Dests = append(r.Dests, DestStats{
			Dest: b.dest, Service: b.key,
			ActiveConns: b.dest.ActiveConns.Load(), InactiveConns: b.dest.InactiveConns.Load(),
			Failures: b.failures, Counters: b.seen, Rates: b.est.rates(),
		})
	}
	for k, sv := range t.st.services {
		r.Services = append(r.Services, ServiceStats{Service: k, Counters: sv.c, Rates: sv.est.rates()})
	}
	slices.SortFunc(r.Services, func(a, b ServiceStats) int {
		if c := slices.Compare(a.Service.Addr[:], b.Service.Addr[:]); c != 0 {
			return c
		}
		if a.Service.Port != b.Service.Port {
			return int(a.Service.Port) - int(b.Service.Port)
		}
		return int(a.Service.Proto) - int(b.Service.Proto)
	})
	return r
}
