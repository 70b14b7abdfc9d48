package conntrack

// A snapshot of the table in a compact binary form, so that a running
// table can be written out and rebuilt in another process (or another
// Table): each connection with its state, the time it has left, and its
// real server by identity, (service, address, port), since *lvs.Dest
// pointers do not cross processes. Persistence templates are not carried
// here: Restore gives a restored connection no Control, and
// RestoreControlled links it to a template its caller restored first (a
// graceful restart's handoff, package director).
//
// Format, all integers big-endian:
//
//	header  "LVCT" | version uint16 (2; 1 is read too) | count uint32
//	record  (snapshotRecSize bytes each, count of them)
//	        in.Src [16] | in.Dst [16] | in.SPort u16 | in.DPort u16 | in.Proto u8
//	        dest.Addr [16] | dest.Port u16 | method u8
//	        client MAC [6] | state u8 | flags u8 | remaining ms u32
//	        nxt[0] u32 | nxt[1] u32 | win[0] u32 | win[1] u32
//	        (win as seqWin packs it; version 1 packed the scale in bits
//	        28-31, 15 for unknown, and is converted when read)
//	trailer (only when a record is of the SYN proxy; snapshot_synproxy.go)
//	        "LVSP" | n uint32 | n of: record index u32 | cookie u32 |
//	        client ISN u32 | MSS u16 | window u16 | flags u8 | delta u32
//
// The length must be exactly the header plus count records (plus the
// trailer), and count at most MaxSnapshot: DecodeSnapshot checks both before
// it allocates.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/lvsd/lvsd/lvs"
)

// MaxSnapshot is the most connections a snapshot may hold: the largest
// table a configuration may ask for (config.MaxConnections is 1<<24).
const MaxSnapshot = 1 << 24

const (
	snapshotMagic   = "LVCT"
	snapshotVersion = 2
	snapshotHdrSize = 4 + 2 + 4
	snapshotRecSize = 16 + 16 + 2 + 2 + 1 + 16 + 2 + 1 + 6 + 1 + 1 + 4 + 16
)

// Record flags.
const (
	recNoOutput = 1 << 0 // DR/TUN with no reply seen: the input-only table
	recWasEst   = 1 << 1 // has been ESTABLISHED
	recFlagMask = recNoOutput | recWasEst
)

// Record is one connection of a snapshot.
type Record struct {
	// In is the client's tuple, client to VIP:vport; it names the
	// service (In.Dst, In.DPort, In.Proto).
	In lvs.Tuple
	// DestAddr and DestPort identify the real server within the service.
	DestAddr lvs.Addr
	DestPort uint16
	// Method is the real server's forwarding method when the snapshot was
	// taken; Restore refuses a real server whose method changed.
	Method lvs.Method
	// ClientMAC is Entry.ClientMAC.
	ClientMAC lvs.MAC
	// State is the connection's state: a TCP state, or StateUDP.
	State State
	// NoOutput and WasEst are the entry's input-only and has-been-
	// established marks.
	NoOutput, WasEst bool
	// Remaining is how long the connection had left unless a packet came
	// (Entry.Expires), at most its state's timeout.
	Remaining time.Duration
	// Nxt and Win are the NAT TCP sequence windows (see Track), by
	// direction; zero when not tracked.
	Nxt, Win [2]uint32
	// Synproxy is set for a connection of the SYN proxy (InsertSynproxy),
	// with its record SP and, once the real server's SYN-ACK came
	// (SPOpen), its sequence delta SPDelta.
	Synproxy bool
	SP       Synproxy
	SPOpen   bool
	SPDelta  uint32
}

// Snapshot returns every connection of the table at time now. It holds no
// lock for long (see Range); connections inserted or removed meanwhile may
// or may not be in it. Not for the packet path: it allocates.
func (t *Table) Snapshot(now int64) []Record {
	var recs []Record
	t.Range(func(e *Entry) bool {
		r := t.rec(e.loc)
		w := r.word.Load()
		if genOf(w) != e.gen || stateOf(w) == stateDead {
			return true
		}
		rem := e.Expires(now)
		if rem <= 0 {
			return true
		}
		rc := Record{
			In: e.In, DestAddr: e.Dest.Addr, DestPort: e.Dest.Port, Method: e.Method,
			ClientMAC: e.ClientMAC, State: stateOf(w), Remaining: rem,
			NoOutput: w&wordNoOutput != 0, WasEst: w&wordWasEst != 0,
		}
		if sw := t.seqWin(e.loc); sw != nil && e.Method == lvs.NAT && e.In.Proto == lvs.TCP {
			for d := range 2 {
				rc.Nxt[d], rc.Win[d] = sw.nxt[d].Load(), sw.win[d].Load()
			}
		}
		if e.Synproxy {
			rc.SPOpen, rc.SPDelta, rc.Synproxy = t.SynproxyOf(e, &rc.SP)
		}
		recs = append(recs, rc)
		return true
	})
	return recs
}

// ErrSnapshot is wrapped by every DecodeSnapshot error: the data is not a
// snapshot this version of lvsd reads; start with an empty table.
var ErrSnapshot = errors.New("bad connection table snapshot")

// EncodeSnapshot returns recs in the snapshot format. It fails only if
// there are more than MaxSnapshot.
func EncodeSnapshot(recs []Record) ([]byte, error) {
	if len(recs) > MaxSnapshot {
		return nil, fmt.Errorf("encode snapshot: %d connections, at most %d", len(recs), MaxSnapshot)
	}
	b := make([]byte, snapshotHdrSize, snapshotHdrSize+len(recs)*snapshotRecSize)
	copy(b, snapshotMagic)
	binary.BigEndian.PutUint16(b[4:], snapshotVersion)
	binary.BigEndian.PutUint32(b[6:], uint32(len(recs)))
	for i := range recs {
		r := &recs[i]
		b = append(b, r.In.Src[:]...)
		b = append(b, r.In.Dst[:]...)
		b = binary.BigEndian.AppendUint16(b, r.In.SPort)
		b = binary.BigEndian.AppendUint16(b, r.In.DPort)
		b = append(b, byte(r.In.Proto))
		b = append(b, r.DestAddr[:]...)
		b = binary.BigEndian.AppendUint16(b, r.DestPort)
		b = append(b, byte(r.Method))
		b = append(b, r.ClientMAC[:]...)
		var fl byte
		if r.NoOutput {
			fl |= recNoOutput
		}
		if r.WasEst {
			fl |= recWasEst
		}
		b = append(b, byte(r.State), fl)
		ms := min(max(r.Remaining.Milliseconds(), 0), 1<<32-1)
		b = binary.BigEndian.AppendUint32(b, uint32(ms))
		for _, v := range [4]uint32{r.Nxt[0], r.Nxt[1], r.Win[0], r.Win[1]} {
			b = binary.BigEndian.AppendUint32(b, v)
		}
	}
	return appendSynproxy(b, recs), nil
}

// DecodeSnapshot parses data written by EncodeSnapshot. It checks the
// magic, the version, that the length is exactly what the count says and
// the count at most MaxSnapshot (before allocating), and each record's
// protocol, state and flags; errors wrap ErrSnapshot.
func DecodeSnapshot(data []byte) ([]Record, error) {
	if len(data) < snapshotHdrSize || string(data[:4]) != snapshotMagic {
		return nil, fmt.Errorf("%w: no header", ErrSnapshot)
	}
	v := binary.BigEndian.Uint16(data[4:])
	if v != snapshotVersion && v != 1 {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrSnapshot, v, snapshotVersion)
	}
	n := binary.BigEndian.Uint32(data[6:])
	if n > MaxSnapshot {
		return nil, fmt.Errorf("%w: %d connections, at most %d", ErrSnapshot, n, MaxSnapshot)
	}
	want := snapshotHdrSize + int(n)*snapshotRecSize
	if len(data) < want {
		return nil, fmt.Errorf("%w: %d bytes for %d connections, want %d", ErrSnapshot, len(data), n, want)
	}
	recs := make([]Record, n)
	p := data[snapshotHdrSize:]
	for i := range recs {
		r := &recs[i]
		b := p[:snapshotRecSize]
		p = p[snapshotRecSize:]
		copy(r.In.Src[:], b[0:16])
		copy(r.In.Dst[:], b[16:32])
		r.In.SPort = binary.BigEndian.Uint16(b[32:])
		r.In.DPort = binary.BigEndian.Uint16(b[34:])
		r.In.Proto = lvs.Proto(b[36])
		copy(r.DestAddr[:], b[37:53])
		r.DestPort = binary.BigEndian.Uint16(b[53:])
		r.Method = lvs.Method(b[55])
		copy(r.ClientMAC[:], b[56:62])
		r.State = State(b[62])
		fl := b[63]
		r.NoOutput, r.WasEst = fl&recNoOutput != 0, fl&recWasEst != 0
		r.Remaining = time.Duration(binary.BigEndian.Uint32(b[64:])) * time.Millisecond
		for k := range 2 {
			r.Nxt[k] = binary.BigEndian.Uint32(b[68+4*k:])
			r.Win[k] = binary.BigEndian.Uint32(b[76+4*k:])
			if v == 1 {
				r.Win[k] = winFromV1(r.Win[k])
			}
		}
		switch {
		case r.In.Proto != lvs.TCP && r.In.Proto != lvs.UDP:
			return nil, fmt.Errorf("%w: connection %d: protocol %d", ErrSnapshot, i, r.In.Proto)
		case r.In.Proto == lvs.TCP && int(r.State) >= numTCPStates, r.In.Proto == lvs.UDP && r.State != StateUDP:
			return nil, fmt.Errorf("%w: connection %d: state %d for protocol %d", ErrSnapshot, i, r.State, r.In.Proto)
		case fl&^recFlagMask != 0:
			return nil, fmt.Errorf("%w: connection %d: flags %#x", ErrSnapshot, i, fl)
		}
	}
	if err := decodeSynproxy(data[want:], recs); err != nil {
		return nil, err
	}
	return recs, nil
}

// Resolver finds the real server of a restored connection: the destination
// addr:port of the service that in (client to VIP:vport) addresses, with
// that service's counters; nil when the running configuration has no such
// real server.
type Resolver func(in *lvs.Tuple, addr lvs.Addr, port uint16) (*lvs.Dest, *lvs.Stats)

// Restore inserts the connections of recs at time now, each with its
// state, the time it had left and its sequence windows, on the real server
// that resolve returns, and counts it in the real server's active or
// inactive connections as a new one would be. A record whose real server
// resolves to nil, or to one with another method, is skipped, as is one
// whose tuple the table already holds or that the table has no room for.
// It returns how many connections it restored. Call it before the table
// serves packets: a connection restored while its flow runs may see a
// segment accounted twice.
func (t *Table) Restore(recs []Record, resolve Resolver, now int64) int {
	return t.RestoreControlled(recs, resolve, nil, now)
}

// RestoreControlled is Restore with persistence: control (nil for none)
// returns the template a restored connection to d is made through,
// acquired for it (nil if none), which becomes the entry's Control as
// InsertInto's ctl; a template of a connection that is not restored is
// released.
func (t *Table) RestoreControlled(recs []Record, resolve Resolver, control func(in *lvs.Tuple, d *lvs.Dest) Controller, now int64) int {
	e := new(Entry)
	n := 0
	to := t.to.Load()
	for i := range recs {
		rc := &recs[i]
		d, svc := resolve(&rc.In, rc.DestAddr, rc.DestPort)
		if d == nil || d.Method != rc.Method {
			continue
		}
		var ctl Controller
		if control != nil {
			ctl = control(&rc.In, d)
		}
		var (
			created bool
			err     error
		)
		if rc.Synproxy {
			created, err = t.InsertSynproxy(e, &rc.In, d, svc, rc.ClientMAC, now, ctl, &rc.SP)
		} else {
			created, err = t.InsertInto(e, &rc.In, d, svc, rc.ClientMAC, now, ctl)
		}
		if err != nil || !created {
			if ctl != nil {
				ctl.Release()
			}
			continue
		}
		if rc.Synproxy && rc.SPOpen {
			t.SynproxyOpen(e, rc.SPDelta)
		}
		r := t.rec(e.loc)
		// last is set so that the state's timeout, counted from it, leaves
		// the time the connection had.
		age := max(int64(to[rc.State])-rc.Remaining.Milliseconds(), 0)
		r.last.Store(uint32(t.ms(now) - age))
		for {
			w := r.word.Load()
			if genOf(w) != e.gen || stateOf(w) == stateDead {
				break // evicted already
			}
			old := stateOf(w)
			nw := w&^(wordStateMask|wordNoOutput|wordWasEst) | uint32(rc.State)
			if rc.NoOutput && d.Method != lvs.NAT {
				nw |= wordNoOutput
			}
			if rc.WasEst || rc.State == StateEstablished {
				nw |= wordWasEst
			}
			if !r.word.CompareAndSwap(w, nw) {
				continue
			}
			if nw&wordWasEst != 0 && w&wordWasEst == 0 {
				t.soft.Add(-1)
			}
			account(d, old, rc.State)
			t.refile(e)
			if sw := t.seqWin(e.loc); sw != nil && d.Method == lvs.NAT && rc.In.Proto == lvs.TCP {
				for k := range 2 {
					sw.nxt[k].Store(rc.Nxt[k])
					sw.win[k].Store(rc.Win[k])
				}
			}
			n++
			break
		}
	}
	return n
}

// winFromV1 converts a window word of a version 1 snapshot (the scale in
// bits 28-31, 15 for not known, the window in bits 0-27) to seqWin's
// packing. Version 1 did not tell a SYN without the option from one with
// scale 0: both read as scale 0.
func winFromV1(w uint32) uint32 {
	if w == 0 {
		return 0
	}
	scale := w >> 28
	if scale == 15 {
		scale = winNoScale
	}
	return scale<<winScaleShift | min(w&(1<<28-1), winMax)
}
