package health

// Quorum is keepalived's quorum of a virtual server: the least total weight
// of its live real servers. Lost below Quorum - Hysteresis, gained again at
// Quorum + Hysteresis; Up and Down are commands run (without waiting) on
// each change, with Env in their environment.
type Quorum struct {
	Quorum, Hysteresis int
	Up, Down           string
	Env                map[string]string
}

// member is what the quorum of a group needs to know of one real server.
type member struct {
	group  string
	weight int32
}

// quorumState is one group's quorum.
type quorumState struct {
	q         Quorum
	lost      bool
	evaluated bool // the first evaluation (at a Sync) is done
}

// SetQuorums sets the quorum of each group (a virtual server) that has
// one; groups not in qs have none. A group keeps its state (lost or not)
// across calls. Call it before Sync, which evaluates the quorums.
func (m *Manager[K]) SetQuorums(qs map[string]Quorum) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]*quorumState, len(qs))
	for g, q := range qs {
		s := m.quorums[g]
		if s == nil {
			s = &quorumState{}
		}
		s.q = q
		next[g] = s
	}
	m.quorums = next
}

// liveWeight returns the total weight of the live members of group: up (or
// unchecked), at their dynamic weight when an exec check gave one.
//
// Preconditions: m.mu is held.
func (m *Manager[K]) liveWeight(group string) int {
	sum := 0
	for k, mb := range m.members {
		if mb.group != group {
			continue
		}
		w := mb.weight
		if mon := m.monitors[k]; mon != nil {
			st := mon.status()
			if !st.Up {
				continue
			}
			if st.Weight >= 0 {
				w = st.Weight
			}
		}
		sum += int(w)
	}
	return sum
}

// evalQuorum re-evaluates the quorum of group after a change and runs its
// command when the quorum was lost or gained. first: the group's first
// evaluation, which sets the state without running anything; as
// keepalived's set_quorum_states, a group starts with its quorum only at
// quorum + hysteresis (the threshold of a gain), so that a start between
// the two thresholds is a lost quorum, as it would be after a loss.
func (m *Manager[K]) evalQuorum(group string, first bool) {
	m.mu.Lock()
	s := m.quorums[group]
	if s == nil || s.q.Quorum <= 0 {
		m.mu.Unlock()
		return
	}
	live := m.liveWeight(group)
	var run string
	switch {
	case first:
		s.lost = live < s.q.Quorum+s.q.Hysteresis
	case !s.lost && live < s.q.Quorum-s.q.Hysteresis:
		s.lost, run = true, s.q.Down
		m.log.Warn("quorum lost", "virtual", group, "live_weight", live, "quorum", s.q.Quorum)
	case s.lost && live >= s.q.Quorum+s.q.Hysteresis:
		s.lost, run = false, s.q.Up
		m.log.Info("quorum gained", "virtual", group, "live_weight", live, "quorum", s.q.Quorum)
	}
	env := s.q.Env
	m.mu.Unlock()
	if run != "" {
		m.Command(run, env)
	}
}

// QuorumLost reports whether group's quorum is lost.
func (m *Manager[K]) QuorumLost(group string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.quorums[group]
	return s != nil && s.lost
}
