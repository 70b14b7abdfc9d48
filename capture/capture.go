package capture

import (
	"context"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Iface is one of lvsd's interfaces as a capture sees it.
type Iface struct {
	Name     string
	Ethernet bool // frames start with an Ethernet header (TAP, packet); else IP (TUN)
}

// Options configure a Capture. Defaults: SnapLen 2048, Slots 4096 (8 MiB).
type Options struct {
	Filter Filter
	// SnapLen is the most bytes kept of a frame (a GSO super-frame may be
	// 64 KiB); the file records each frame's whole length too.
	SnapLen int
	// Slots is the ring's size in frames, rounded up to a power of two.
	Slots int
}

// Capture is one armed capture over a set of interfaces.
type Capture struct {
	f      Filter
	r      *ring
	ifaces []Iface
	snap   int
}

// New returns a Capture of the interfaces; it sees nothing until the
// caller hands Frame to the links (director.Director.Capture does).
func New(ifaces []Iface, o Options) *Capture {
	if o.SnapLen <= 0 {
		o.SnapLen = 2048
	}
	if o.Slots <= 0 {
		o.Slots = 4096
	}
	return &Capture{f: o.Filter, r: newRing(o.Slots, o.SnapLen), ifaces: ifaces, snap: o.SnapLen}
}

// Frame offers a frame of interface i (an index into the interfaces given
// to New), read (out false) or written (out true). It copies the frame if
// it matches and the ring has room, else counts it missed; it never blocks
// and allocates nothing. frame stays the caller's.
func (c *Capture) Frame(i int, out bool, frame []byte) {
	if i < 0 || i >= len(c.ifaces) || !c.f.Match(frame, c.ifaces[i].Ethernet) {
		return
	}
	id := 2 * i
	if out {
		id++
	}
	c.r.put(id, frame)
}

// Missed returns how many matching frames found the ring full.
func (c *Capture) Missed() uint64 { return c.r.missed.Load() }

// Stats are a finished capture's counts.
type Stats struct {
	Written uint64 // frames written to the stream
	Missed  uint64 // matching frames the ring had no room for
}

// pollInterval is how often an idle writer looks at the ring again.
const pollInterval = 5 * time.Millisecond

// WriteTo drains the ring into w as pcapng until ctx ends or a write
// fails: two interfaces per lvsd interface, "NAME in" (frames as read) and
// "NAME out" (frames as written, after the rewrite), Ethernet or raw IP.
// At the end it writes each interface's statistics (isb_ifdrop holds the
// frames missed, on the first interface). A write error is returned; the
// caller then disarms the capture.
func (c *Capture) WriteTo(ctx context.Context, w io.Writer) (Stats, error) {
	var st Stats
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "lvsd capture"}}
	var nw *pcapgo.NgWriter
	for i, ifc := range c.ifaces {
		lt := layers.LinkTypeRaw
		if ifc.Ethernet {
			lt = layers.LinkTypeEthernet
		}
		for _, dir := range []string{"in", "out"} {
			intf := pcapgo.NgInterface{
				Name: ifc.Name + " " + dir, LinkType: lt, SnapLength: uint32(c.snap),
				Description: map[string]string{"in": "frames lvsd read", "out": "frames lvsd wrote, after the rewrite"}[dir],
				Filter:      c.f.String(), TimestampResolution: 9, OS: "linux",
			}
			var err error
			if nw == nil {
				nw, err = pcapgo.NewNgWriterInterface(w, intf, opts)
			} else {
				_, err = nw.AddInterface(intf)
			}
			if err != nil {
				return st, err
			}
		}
		_ = i
	}
	if nw == nil {
		return st, io.ErrUnexpectedEOF
	}
	if err := nw.Flush(); err != nil {
		return st, err
	}
	var werr error
	write := func(t int64, iface, length int, data []byte) {
		if werr != nil {
			return
		}
		werr = nw.WritePacket(gopacket.CaptureInfo{
			Timestamp: time.Unix(0, t), CaptureLength: len(data), Length: length, InterfaceIndex: iface,
		}, data)
		st.Written++
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		for werr == nil && c.r.get(write) {
		}
		if werr == nil {
			werr = nw.Flush()
		}
		if werr != nil {
			st.Missed = c.Missed()
			return st, werr
		}
		select {
		case <-ctx.Done():
			for werr == nil && c.r.get(write) {
			}
			st.Missed = c.Missed()
			if werr == nil {
				werr = nw.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{
					LastUpdate: time.Now(), PacketsDropped: st.Missed, PacketsReceived: st.Written + st.Missed,
				})
			}
			if werr == nil {
				werr = nw.Flush()
			}
			return st, werr
		case <-tick.C:
		}
	}
}
