package conntrack

// The state of connections that lvsd's SYN proxy opened (package forward,
// synproxy.go): the director answered the client's SYN itself with a
// cookie as its initial sequence number, created the entry only on the
// client's valid ACK, and opened the connection to the real server with a
// SYN of its own. The real server picks its own initial sequence number,
// so every segment of the connection is translated by the difference
// (delta): the server's sequence numbers toward the client, the client's
// acknowledgments (and SACK blocks) toward the server.
//
// The state lives beside the entries, in an array per chunk allocated on
// the chunk's first SYN-proxy entry (24 bytes per entry), so that rec keeps
// its size and other entries pay nothing; wordSynproxy marks the entries
// that have it. The fields written at insertion are written under the
// shard's lock before any slot refers to the entry; phase and delta are
// atomics, written once by the packet path that sees the real server's
// SYN-ACK.

import (
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// Synproxy is what the SYN proxy records of a connection when it creates
// it, and reads back for its later segments.
type Synproxy struct {
	// Cookie is the director's initial sequence number toward the client
	// (the cookie); ClientISN the client's initial sequence number.
	Cookie, ClientISN uint32
	// MSS and SACK are the options of the client's SYN that the cookie
	// carried (MSS rounded down to the cookie's table), replayed to the
	// real server in the director's SYN.
	MSS  uint16
	SACK bool
	// Window is the window field of the client's ACK that opened the
	// connection, sent to the real server in the ACK that completes its
	// handshake.
	Window uint16
}

// synState is one entry's state. phase is synOpening until the real
// server's SYN-ACK gave delta, then synOpen.
//
// Every field is an atomic: an Entry that outlived its connection may read
// them while a new connection's insertion writes them (the generation check
// after the read discards what it read).
type synState struct {
	cookie, cisn atomic.Uint32
	mssWin       atomic.Uint32 // MSS<<16 | Window
	sack         atomic.Uint32
	phase        atomic.Uint32
	delta        atomic.Uint32
}

const (
	synOpening = 1 // the director sent its SYN; the real server has not answered
	synOpen    = 2 // delta is valid
)

// InsertSynproxy is InsertInto for a connection of the SYN proxy: the
// entry records sp and is marked (Entry.Synproxy) before any lookup can
// find it. Its phase starts as opening (SynproxyOf reports no delta).
func (t *Table) InsertSynproxy(e *Entry, in *lvs.Tuple, d *lvs.Dest, svc *lvs.Stats, clientMAC lvs.MAC, now int64, ctl Controller, sp *Synproxy) (created bool, err error) {
	return t.insert(e, in, d, svc, clientMAC, now, ctl, sp)
}

// SynproxyOf fills sp with what the SYN proxy recorded of e and returns
// whether the real server's SYN-ACK has been seen (open) and the sequence
// delta (the server's ISN minus the cookie). ok is false when e is not a
// SYN-proxy connection or has left the table. It takes no lock and does
// not allocate.
func (t *Table) SynproxyOf(e *Entry, sp *Synproxy) (open bool, delta uint32, ok bool) {
	st := t.synState(e)
	if st == nil {
		return false, 0, false
	}
	sp.Cookie, sp.ClientISN = st.cookie.Load(), st.cisn.Load()
	mw := st.mssWin.Load()
	sp.MSS, sp.Window = uint16(mw>>16), uint16(mw)
	sp.SACK = st.sack.Load() != 0
	open = st.phase.Load() == synOpen
	if open {
		delta = st.delta.Load()
	}
	if !t.live(e) {
		return false, 0, false
	}
	return open, delta, true
}

// SynproxyOpen records the delta of e from the real server's SYN-ACK and
// reports whether this call did (the first SYN-ACK); a later one, or one
// for an entry that is not the SYN proxy's, changes nothing.
func (t *Table) SynproxyOpen(e *Entry, delta uint32) bool {
	st := t.synState(e)
	if st == nil || st.phase.Load() != synOpening {
		return false
	}
	// delta first: a reader that sees synOpen reads it after.
	st.delta.Store(delta)
	return st.phase.CompareAndSwap(synOpening, synOpen)
}

// live reports whether e's connection is still in the table.
func (t *Table) live(e *Entry) bool {
	w := t.rec(e.loc).word.Load()
	return genOf(w) == e.gen && stateOf(w) != stateDead && w&wordSynproxy != 0
}

// synState returns the state of e, or nil when e is not a live SYN-proxy
// connection.
func (t *Table) synState(e *Entry) *synState {
	if !e.Synproxy || e.loc == 0 || e.t != t || !t.live(e) {
		return nil
	}
	s := &t.shards[e.loc>>idxBits]
	i := e.loc & maxIdx
	a := (*s.chunks.Load())[i>>chunkLog].syn.Load()
	if a == nil {
		return nil
	}
	return &a[i&(chunkSize-1)]
}

// setSynproxy records sp for entry i of s, allocating its chunk's array if
// needed.
//
// Preconditions: s.mu is held; no slot refers to the entry yet.
func (s *shard) setSynproxy(i uint32, sp *Synproxy) {
	c := (*s.chunks.Load())[i>>chunkLog]
	a := c.syn.Load()
	if a == nil {
		a = new([chunkSize]synState)
		c.syn.Store(a)
	}
	st := &a[i&(chunkSize-1)]
	st.cookie.Store(sp.Cookie)
	st.cisn.Store(sp.ClientISN)
	st.mssWin.Store(uint32(sp.MSS)<<16 | uint32(sp.Window))
	var sack uint32
	if sp.SACK {
		sack = 1
	}
	st.sack.Store(sack)
	st.delta.Store(0)
	st.phase.Store(synOpening)
}
