package conntrack

// Sequence windows of NAT TCP connections, for RFC 5961-style checks of
// RST segments: the director sees both directions of a NAT connection, so
// it knows how far each side has sent and how much the other accepts, and
// drops an RST whose sequence number lies outside that window (a blind
// reset needs to guess it, one chance in 2^32/window instead of one in
// one). IPVS has no such check: any RST with the connection's addresses
// and ports moves it to CLOSE, and it expires 10 s later.
//
// The windows live beside the entries, in an array per chunk allocated on
// the chunk's first NAT TCP entry (16 bytes per entry), so that rec keeps
// its size and DR, TUN and UDP entries pay nothing. They are written by the
// packet path without a lock: a lost update under a race only makes the
// window a little stale, and the check leaves a window's width of slack.

import (
	"sync/atomic"

	"github.com/lvsd/lvsd/lvs"
)

// seqWin is one connection's windows, indexed by direction (0: from the
// client, 1: from the real server). nxt is the sequence number after the
// highest one the side sent (SYN and FIN count one); win packs the side's
// window scale option (bits 27-31: 0 to 14 from its SYN, winNoOpt when its
// SYN had none, winNoScale when its SYN was not seen) and the largest
// window it advertised, scaled (bits 0-26, clamped). Zero means nothing
// seen from that side. As RFC 7323 says, a side's windows are scaled only
// when both SYNs carried the option.
type seqWin struct {
	nxt [2]atomic.Uint32
	win [2]atomic.Uint32
}

const (
	winScaleShift = 27
	winMax        = 1<<winScaleShift - 1
	winNoOpt      = 30 // the side's SYN carried no window scale option
	winNoScale    = 31 // the side's SYN was not seen
)

// Segment is what the window checks read of a TCP segment.
type Segment struct {
	// Flags are the TCP flags (FlagSYN, ...).
	Flags uint8
	// Seq is the sequence number; Len the segment's length in sequence
	// space (payload, plus one for SYN and one for FIN).
	Seq, Len uint32
	// Win is the window field; WScale the window scale option of a SYN
	// (0 to 14), or -1 when the segment carries none.
	Win    uint16
	WScale int8
}

// Track checks a segment of the NAT TCP connection e (fromClient false: a
// reply) against its windows and records it. It returns false for an RST
// whose sequence number lies outside the window its receiver accepts: the
// caller drops the segment, which changes nothing (no state change, no
// timer refresh). With Options.CheckRST off, on connections that are not
// NAT TCP, or before the other side was seen, it accepts everything. It
// takes no lock and does not allocate.
//
// A SYN on an established connection is accepted: IPVS's tables keep the
// connection ESTABLISHED, and the real server answers it with a challenge
// ACK (RFC 5961 section 4), which a client that restarted needs to reset
// the old connection. It records nothing, nor does a segment outside the
// window the RST check uses: a blind attacker cannot move the window
// before its RST.
func (t *Table) Track(e *Entry, s *Segment, fromClient bool) bool {
	if !t.checkRST.Load() || e.loc == 0 || e.t != t || e.In.Proto != lvs.TCP || e.Method != lvs.NAT {
		return true
	}
	sw := t.seqWin(e.loc)
	if sw == nil {
		return true
	}
	if r := t.rec(e.loc); genOf(r.word.Load()) != e.gen {
		return true
	}
	d := 1
	if fromClient {
		d = 0
	}
	if s.Flags&FlagRST != 0 {
		nxt := sw.nxt[d].Load()
		rw := sw.win[1-d].Load()
		if nxt == 0 && sw.win[d].Load() == 0 || rw == 0 {
			return true // a side not seen yet: nothing to check against
		}
		if rw>>winScaleShift == winNoScale && sw.win[d].Load()>>winScaleShift != winNoScale {
			// The sender's SYN was seen and the receiver's was not:
			// the handshake has not synchronised the receiver with
			// this connection, and what it sent belongs to another. A
			// server's TIME_WAIT of an earlier connection on the same
			// addresses and ports answers the client's SYN with that
			// connection's ACK, and the client resets it with this
			// RST (RFC 793: an unacceptable ACK in SYN-SENT), whose
			// sequence number is that ACK's. Dropped, the TIME_WAIT
			// would answer every retried SYN the same way until it
			// expires; passed, as IPVS passes every RST, it ends the
			// TIME_WAIT and the client's next SYN opens the connection.
			return true
		}
		w := int64(max(rw&winMax, 1))
		if diff := int64(int32(s.Seq - nxt)); diff < -w || diff > w {
			t.rstDropped.Add(1)
			return false
		}
		return true
	}
	// A segment moves its side's next sequence number, and its window,
	// only from within the window its receiver advertised: a sender never
	// goes past it, and a blind attacker's segment would otherwise move it
	// to a sequence number of its choosing, where its RST would then be
	// accepted, or widen the window.
	end := s.Seq + s.Len
	cur := sw.win[d].Load()
	seen := sw.nxt[d].Load() != 0 || cur != 0
	if seen && s.Flags&FlagSYN != 0 {
		if ow := sw.win[1-d].Load(); cur>>winScaleShift != winNoScale || ow == 0 || ow>>winScaleShift == winNoScale {
			// A SYN on the connection after its side's first (a
			// client that restarted, or a blind attacker): its
			// receiver answers it with a challenge ACK and keeps its
			// state, and so do the windows: neither the sequence
			// number nor the window scale move.
			return true
		}
		// The side's first SYN, answering the other side's, after
		// segments of its own that the handshake had not
		// synchronised (the ACK of a TIME_WAIT, above): its record
		// starts again from the SYN.
		seen, cur = false, 0
	}
	if n := sw.nxt[d].Load(); !seen {
		sw.nxt[d].Store(end)
	} else {
		// Out of the window (the RST check's): recorded nothing, not
		// even its window field.
		if rw := sw.win[1-d].Load(); rw != 0 {
			w := int64(max(rw&winMax, 1))
			if diff := int64(int32(end - n)); diff < -w || diff > w {
				return true
			}
		}
		if int32(end-n) > 0 {
			sw.nxt[d].Store(end)
		}
	}
	scale := cur >> winScaleShift
	if cur == 0 {
		scale = winNoScale
	}
	if s.Flags&FlagSYN != 0 {
		scale = winNoOpt
		if s.WScale >= 0 {
			scale = uint32(min(s.WScale, 14))
		}
	}
	// A SYN's window is never scaled, and a side's other windows only
	// when both SYNs offered the option (RFC 7323 section 2.2): one that
	// offered it alone sends unscaled windows.
	shift := uint32(0)
	if s.Flags&FlagSYN == 0 && scale <= 14 {
		if ow := sw.win[1-d].Load(); ow != 0 && ow>>winScaleShift <= 14 {
			shift = scale
		}
	}
	win := min(uint32(s.Win)<<shift, winMax)
	if nw := scale<<winScaleShift | max(win, cur&winMax); nw != cur {
		sw.win[d].Store(nw)
	}
	return true
}

// seqWin returns the windows of the entry at loc, or nil when its chunk
// has none (no NAT TCP entry yet).
func (t *Table) seqWin(loc uint32) *seqWin {
	s := &t.shards[loc>>idxBits]
	i := loc & maxIdx
	a := (*s.chunks.Load())[i>>chunkLog].win.Load()
	if a == nil {
		return nil
	}
	return &a[i&(chunkSize-1)]
}

// resetWin clears the windows of entry i of s, allocating its chunk's
// array if needed: called for a new NAT TCP entry.
//
// Preconditions: s.mu is held; no slot refers to the entry yet.
func (s *shard) resetWin(i uint32) {
	c := (*s.chunks.Load())[i>>chunkLog]
	a := c.win.Load()
	if a == nil {
		a = new([chunkSize]seqWin)
		c.win.Store(a)
	}
	w := &a[i&(chunkSize-1)]
	for d := range 2 {
		w.nxt[d].Store(0)
		w.win[d].Store(0)
	}
}

// SetCheckRST changes Options.CheckRST.
func (t *Table) SetCheckRST(on bool) { t.checkRST.Store(on) }
