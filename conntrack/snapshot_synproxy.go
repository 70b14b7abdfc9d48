package conntrack

// The snapshot's trailer for connections of the SYN proxy (synproxy.go):
// their record and delta, so that a graceful restart hands them over with
// the rest and their sequence numbers stay translated. It follows the
// records only when one of them is the SYN proxy's, so that a snapshot
// without any is byte for byte what lvsd wrote before the trailer existed.

import (
	"encoding/binary"
	"fmt"

	"github.com/lvsd/lvsd/lvs"
)

const (
	synproxyMagic   = "LVSP"
	synproxyRecSize = 4 + 4 + 4 + 2 + 2 + 1 + 4

	spSACK     = 1 << 0
	spOpen     = 1 << 1
	spFlagMask = spSACK | spOpen
)

// appendSynproxy appends the trailer of recs to b, if any record is the
// SYN proxy's.
func appendSynproxy(b []byte, recs []Record) []byte {
	n := 0
	for i := range recs {
		if recs[i].Synproxy {
			n++
		}
	}
	if n == 0 {
		return b
	}
	b = append(b, synproxyMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for i := range recs {
		r := &recs[i]
		if !r.Synproxy {
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(i))
		b = binary.BigEndian.AppendUint32(b, r.SP.Cookie)
		b = binary.BigEndian.AppendUint32(b, r.SP.ClientISN)
		b = binary.BigEndian.AppendUint16(b, r.SP.MSS)
		b = binary.BigEndian.AppendUint16(b, r.SP.Window)
		var fl byte
		if r.SP.SACK {
			fl |= spSACK
		}
		delta := uint32(0)
		if r.SPOpen {
			fl |= spOpen
			delta = r.SPDelta
		}
		b = append(b, fl)
		b = binary.BigEndian.AppendUint32(b, delta)
	}
	return b
}

// decodeSynproxy reads the trailer p (empty: none) into recs. It accepts
// only what appendSynproxy writes: at least one entry, indices of TCP
// records in increasing order, known flags, a delta only when open.
func decodeSynproxy(p []byte, recs []Record) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) < 8 || string(p[:4]) != synproxyMagic {
		return fmt.Errorf("%w: bad SYN-proxy trailer", ErrSnapshot)
	}
	n := binary.BigEndian.Uint32(p[4:])
	if n == 0 || uint64(n) > uint64(len(recs)) || len(p) != 8+int(n)*synproxyRecSize {
		return fmt.Errorf("%w: SYN-proxy trailer of %d bytes for %d entries", ErrSnapshot, len(p), n)
	}
	p = p[8:]
	next := 0
	for k := range int(n) {
		b := p[k*synproxyRecSize:]
		i := binary.BigEndian.Uint32(b)
		fl := b[16]
		delta := binary.BigEndian.Uint32(b[17:])
		switch {
		case uint64(i) >= uint64(len(recs)) || int(i) < next:
			return fmt.Errorf("%w: SYN-proxy entry %d: record %d", ErrSnapshot, k, i)
		case fl&^spFlagMask != 0, fl&spOpen == 0 && delta != 0:
			return fmt.Errorf("%w: SYN-proxy entry %d: flags %#x delta %d", ErrSnapshot, k, fl, delta)
		}
		r := &recs[i]
		if r.In.Proto != lvs.TCP {
			return fmt.Errorf("%w: SYN-proxy entry %d: record %d is not TCP", ErrSnapshot, k, i)
		}
		next = int(i) + 1
		r.Synproxy = true
		r.SP = Synproxy{
			Cookie: binary.BigEndian.Uint32(b[4:]), ClientISN: binary.BigEndian.Uint32(b[8:]),
			MSS: binary.BigEndian.Uint16(b[12:]), Window: binary.BigEndian.Uint16(b[14:]), SACK: fl&spSACK != 0,
		}
		r.SPOpen, r.SPDelta = fl&spOpen != 0, delta
	}
	return nil
}
