package health

// Passive detection: real servers ejected on the failures the fast path
// counts (conntrack/failures.go), without probing them, as HAProxy's
// `observe layer4` with `error-limit` and `on-error mark-down`, and
// Envoy's outlier detection.

import (
	"sync"
	"time"

	"github.com/lvsd/lvsd/config"
)

// PassiveObs is what the caller knows of one real server with passive
// detection at an observation.
type PassiveObs[K comparable] struct {
	Key K
	// Group is the server's virtual service: MaxEjectedPercent and the
	// last-server rule count within it.
	Group string
	// Failures is the server's cumulative count of failed handshakes
	// (only its growth between observations matters).
	Failures uint64
	// Down reports the server out of service for another reason (an
	// active check): it is not ejected, counts as out of service for the
	// share, and an ejection that ends while it is down ends without a
	// return (the check brings it back).
	Down   bool
	Config config.Passive
}

// PassiveEdge is a decision of Observe: eject the server (Eject, for
// For) or return it to service (!Eject).
type PassiveEdge[K comparable] struct {
	Key   K
	Eject bool
	For   time.Duration
}

// PassiveStatus is what passive detection knows of one server.
type PassiveStatus struct {
	// Ejected reports the server out by passive detection, until Until.
	Ejected bool
	Until   time.Time
	// Ejections counts the ejections of the current back-off series (the
	// next lasts BaseEjection × 2^Ejections); Failures the failures seen
	// since detection started, Window those of the current window.
	Ejections        int
	Failures, Window uint64
	// Total counts every ejection since detection started for the server
	// (Ejections restarts with each series; Total never goes down).
	Total uint64
	// Held counts threshold crossings that did not eject because of
	// MaxEjectedPercent or the last-server rule.
	Held uint64
}

type passiveState struct {
	group    string
	last     uint64 // Failures at the last observation
	since    time.Time
	returned time.Time // end of the last ejection
	st       PassiveStatus
}

// Passive decides ejections from failure counts. It is safe for
// concurrent use; its methods never block on I/O.
type Passive[K comparable] struct {
	mu      sync.Mutex
	servers map[K]*passiveState // guarded by mu
}

// NewPassive returns a Passive with no server.
func NewPassive[K comparable]() *Passive[K] {
	return &Passive[K]{servers: make(map[K]*passiveState)}
}

// Observe takes the state of every server with passive detection at time
// now (the caller calls it at a steady pace, every few seconds) and
// returns the edges to apply, in the order of obs. A server that obs no
// longer lists is forgotten, with a return edge if it was ejected.
//
// The rules: a server's failures are counted in windows of
// Config.Interval; when a window's count reaches Config.Failures the
// server is ejected for BaseEjection × 2^(n-1) (n: its ejections in the
// series), at most MaxEjection, provided that afterwards at most
// MaxEjectedPercent of its group's servers (rounded down, at least one)
// are ejected and at least one of them is in service. At the end of the
// ejection it returns (unless Down). A server in service MaxEjection
// after its return starts a new series.
func (p *Passive[K]) Observe(now time.Time, obs []PassiveObs[K]) []PassiveEdge[K] {
	p.mu.Lock()
	defer p.mu.Unlock()
	var edges []PassiveEdge[K]
	listed := make(map[K]bool, len(obs))
	for _, o := range obs {
		listed[o.Key] = true
	}
	for k, s := range p.servers {
		if !listed[k] {
			if s.st.Ejected {
				edges = append(edges, PassiveEdge[K]{Key: k})
			}
			delete(p.servers, k)
		}
	}
	type share struct{ n, out int }
	shares := make(map[string]*share)
	for _, o := range obs {
		s := p.servers[o.Key]
		if s == nil {
			s = &passiveState{last: o.Failures, since: now}
			p.servers[o.Key] = s
		}
		s.group = o.Group
		sh := shares[o.Group]
		if sh == nil {
			sh = &share{}
			shares[o.Group] = sh
		}
		sh.n++
		if o.Down || s.st.Ejected {
			sh.out++
		}
	}
	for _, o := range obs {
		s := p.servers[o.Key]
		c := o.Config
		delta := o.Failures - s.last
		if o.Failures < s.last {
			delta = 0
		}
		s.last = o.Failures
		s.st.Failures += delta
		sh := shares[o.Group]
		if s.st.Ejected {
			if now.Before(s.st.Until) {
				continue
			}
			s.st.Ejected = false
			s.returned, s.since, s.st.Window = now, now, 0
			if !o.Down {
				sh.out--
				edges = append(edges, PassiveEdge[K]{Key: o.Key})
			}
			continue
		}
		if now.Sub(s.since) >= c.Interval {
			s.since, s.st.Window = now, 0
		}
		s.st.Window += delta
		if o.Down || s.st.Window < uint64(max(c.Failures, 1)) {
			continue
		}
		// maxOut: the share, at least one server, never all.
		maxOut := max(sh.n*c.MaxEjectedPercent/100, 1)
		if sh.out+1 > maxOut || sh.out+1 >= sh.n {
			s.st.Held++
			continue
		}
		if s.st.Ejections > 0 && !s.returned.IsZero() && now.Sub(s.returned) >= c.MaxEjection {
			s.st.Ejections = 0
		}
		s.st.Ejections++
		s.st.Total++
		d := c.BaseEjection
		for i := 1; i < s.st.Ejections && d < c.MaxEjection; i++ {
			d *= 2
		}
		d = min(d, c.MaxEjection)
		s.st.Ejected, s.st.Until, s.st.Window = true, now.Add(d), 0
		sh.out++
		edges = append(edges, PassiveEdge[K]{Key: o.Key, Eject: true, For: d})
	}
	return edges
}

// Confirm tells that an active check brought server k up: an ejection in
// progress ends (without an edge: the check's edge already put it back).
func (p *Passive[K]) Confirm(k K, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.servers[k]; s != nil && s.st.Ejected {
		s.st.Ejected = false
		s.returned, s.since, s.st.Window = now, now, 0
	}
}

// StatusOf returns what passive detection knows of server k; false when
// it has no passive detection.
func (p *Passive[K]) StatusOf(k K) (PassiveStatus, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.servers[k]; s != nil {
		return s.st, true
	}
	return PassiveStatus{}, false
}
