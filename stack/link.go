package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	tcpipstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/forward"
)

// Processor is the fast path that sees every inbound frame before the
// netstack: package forward's Worker. Each reader goroutine has its own.
type Processor interface {
	Process(p *forward.Packet) forward.Verdict
}

// warmer is a Processor that takes a hint of the batch it is about to
// process (forward.Worker.Warm): frame i is bufs[i][offset:sizes[i]].
type warmer interface {
	Warm(bufs [][]byte, sizes []int, offset int)
}

// Headroom is the space a reader leaves in front of each frame, so that the
// fast path can prepend an encapsulation header (IPIP: Ethernet plus 20 or
// 40 bytes) without copying; the virtio-net header, when present, is read
// into the last VNetHdrLen bytes of it.
const Headroom = 128

// maxFrame bounds one frame: a GSO super-frame is at most 64 KiB of IP
// packet, plus the Ethernet header.
const maxFrame = 65535 + header.EthernetMinimumSize

// LinkOptions configure a Link.
type LinkOptions struct {
	// Devices are the queues of the device; one reader goroutine each. The
	// Link owns them and closes them in Close.
	Devices []device.Device
	// Ethernet is true for a TAP (frames start with an Ethernet header) and
	// false for a TUN (frames are IP packets).
	Ethernet bool
	// VNetHdr is true when every frame carries a virtio-net header.
	VNetHdr bool
	// MTU is the IP MTU of the link.
	MTU uint32
	// MAC is the director's own MAC on an Ethernet link.
	MAC [6]byte
	// NewProcessor makes the fast path of one reader. Nil: every frame goes
	// to the netstack.
	NewProcessor func() Processor
	// Logger receives rate-limited read and write errors.
	Logger *slog.Logger
	// OnLost, if set, is called once (from a reader goroutine) when a
	// reader finds the device gone (deleted, or its queue detached): the
	// owner re-attaches it with Replace, or stops. It must not block.
	OnLost func(err error)
	// Sender gives each queue a goroutine that writes what its reader
	// forwards, so that the kernel's work inside the writes (the
	// receivers' stacks) overlaps the reading (sender.go). A TAP or TUN
	// queue is then also read in batches of the frames waiting. False:
	// each reader writes its own batches.
	Sender bool
	// Held keeps the readers from starting when the netstack attaches the
	// link, until Release: the devices were handed over by a process that
	// still reads them (a graceful restart, package takeover). Writes go
	// out at once.
	Held bool
}

// Link is lvsd's own tcpipstack.LinkEndpoint over a packet device. Its readers
// hand every inbound frame to the fast path first, write back what the fast
// path forwards, and copy the rest into the netstack.
//
// Ownership: each reader owns one buffer, reused for every frame; a frame is
// valid only while the reader processes it. A frame for the netstack is
// copied into a new PacketBuffer, delivered, and released.
type Link struct {
	opts LinkOptions
	vh   int // bytes of virtio-net header per frame: 0 or forward.VNetHdrLen
	log  *slog.Logger

	mu sync.Mutex
	// dispatcher is the netstack's entry point; guarded by mu for writes and
	// read through disp on the packet path.
	dispatcher tcpipstack.NetworkDispatcher
	started    bool // guarded by mu
	closed     bool // guarded by mu
	held       bool // Options.Held until Release; guarded by mu

	disp atomic.Pointer[dispatcherBox]
	tap  atomic.Pointer[tapBox] // a capture's, or nil; see SetTap
	mtu  atomic.Uint32
	wg   sync.WaitGroup
	// devs are the device's queues now (Options.Devices until Replace);
	// written under mu, read without it. lost is set when a reader found
	// them gone, and cleared by Replace.
	devs atomic.Pointer[[]device.Device]
	lost atomic.Bool

	// probes, set by Stack.AddNIC, takes the answers to the probes
	// through the forwarding path (through.go) before the netstack.
	probes atomic.Pointer[prober]
	// owner, set by Stack.AddNIC, resolves the neighbours that frames
	// wait for (hold).
	owner atomic.Pointer[linkOwner]

	stats   linkStats
	queues  []queueStats // one per device, by index; fixed at NewLink
	lastLog atomic.Int64
}

type dispatcherBox struct{ d tcpipstack.NetworkDispatcher }

// linkStats are a link's counters of rare events, shared by its readers.
type linkStats struct {
	RxErrors, TxErrors atomic.Uint64
	StackIn, StackOut  atomic.Uint64 // frames to and from the netstack
	StackDropped       atomic.Uint64 // frames the netstack could not take
	// Neighbour hold queues (neighq.go): frames held, sent once their
	// neighbour resolved, dropped to make room, dropped as no-neighbor.
	NeighHeld, NeighSent, NeighOverflow, NeighDropped atomic.Uint64
}

// queueStats are the per-frame counters of one reader. Only that reader
// (and its emitter) writes rx, and tx too unless its sender does, so forwarding adds no contended atomic per
// frame; the padding keeps two readers' counters off one cache line.
type queueStats struct {
	rx, tx atomic.Uint64
	_      [48]byte
}

// LinkCounters are a snapshot of a link's counters.
type LinkCounters struct {
	RxFrames, RxErrors uint64
	TxFrames, TxErrors uint64 // frames written by the fast path
	StackIn, StackOut  uint64 // frames to and from the netstack
	StackDropped       uint64 // frames the netstack could not take
	// KernelDrops and KernelSYNDrops are the frames the kernel dropped
	// before lvsd read them, in the established and the SYN queue
	// (packet devices; 0 for others).
	KernelDrops, KernelSYNDrops uint64
	// NeighHeld counts the frames that waited for their neighbour's MAC
	// (forward.AwaitNeighbor), NeighSent those sent once it resolved,
	// NeighOverflow those dropped, oldest first, from a full queue, and
	// NeighDropped those dropped because the resolution failed (or took
	// longer than the netstack's resolution can: see holdMaxAge), or the
	// neighbour was forgotten while they waited.
	NeighHeld, NeighSent, NeighOverflow, NeighDropped uint64
}

var _ tcpipstack.LinkEndpoint = (*Link)(nil)

// NewLink returns a Link over the devices. Readers start when the netstack
// attaches it (CreateNIC).
func NewLink(opts LinkOptions) *Link {
	l := &Link{opts: opts, log: opts.Logger, held: opts.Held}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if opts.VNetHdr {
		l.vh = forward.VNetHdrLen
	}
	l.mtu.Store(opts.MTU)
	l.queues = make([]queueStats, len(opts.Devices))
	devs := opts.Devices
	l.devs.Store(&devs)
	return l
}

// errLinkClosed is Replace's error on a closed Link.
var errLinkClosed = errors.New("link closed")

// Replace swaps the link's devices for devs (the same device opened again
// after it was lost, with at most as many queues as before): it closes the
// old queues, and starts a reader on each new one if the link is attached.
// The Link owns devs from then on, also when it fails (closed Link).
func (l *Link) Replace(devs []device.Device) error {
	l.mu.Lock()
	if l.closed || len(devs) > len(l.queues) {
		l.mu.Unlock()
		for _, d := range devs {
			d.Close()
		}
		if l.closed {
			return errLinkClosed
		}
		return fmt.Errorf("replace: %d queues, the link has %d", len(devs), len(l.queues))
	}
	old := *l.devs.Load()
	l.devs.Store(&devs)
	l.lost.Store(false)
	if l.started && !l.held {
		for i, dev := range devs {
			l.wg.Add(1)
			go l.reader(dev, i)
		}
	}
	l.mu.Unlock()
	for _, d := range old {
		d.Close()
	}
	return nil
}

// Devices returns the device's queues now: those the link was made with,
// or those the last Replace put in place. The Link still owns them.
func (l *Link) Devices() []device.Device { return slices.Clone(*l.devs.Load()) }

// StopReading ends the reading of the link's devices and waits until every
// reader has finished the frames it read (forwarded and written: the
// devices stay open for writing) and stopped: a graceful restart's giver
// (package takeover), after which the frames that arrive wait in the
// devices' queues for the process that takes them over. A device that
// cannot stop reading (device.Tun and device.AFPacket can) is closed
// instead. Replace puts readers on new devices again.
func (l *Link) StopReading() {
	for _, dev := range *l.devs.Load() {
		if s, ok := dev.(interface{ StopReading() }); ok {
			s.StopReading()
		} else {
			dev.Close()
		}
	}
	l.wg.Wait()
}

// Release starts the readers of a link made with Options.Held (at once if
// the netstack attached it already, else when it does). It does nothing
// on other links, or the second time.
func (l *Link) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held {
		return
	}
	l.held = false
	if l.started && !l.closed {
		for i, dev := range *l.devs.Load() {
			l.wg.Add(1)
			go l.reader(dev, i)
		}
	}
}

// Lost reports whether a reader found the devices gone since they were
// last placed.
func (l *Link) Lost() bool { return l.lost.Load() }

// Stats returns a snapshot of the link's counters.
func (l *Link) Stats() LinkCounters {
	c := LinkCounters{
		RxErrors:      l.stats.RxErrors.Load(),
		TxErrors:      l.stats.TxErrors.Load(),
		StackIn:       l.stats.StackIn.Load(),
		StackOut:      l.stats.StackOut.Load(),
		StackDropped:  l.stats.StackDropped.Load(),
		NeighHeld:     l.stats.NeighHeld.Load(),
		NeighSent:     l.stats.NeighSent.Load(),
		NeighOverflow: l.stats.NeighOverflow.Load(),
		NeighDropped:  l.stats.NeighDropped.Load(),
	}
	for i := range l.queues {
		c.RxFrames += l.queues[i].rx.Load()
		c.TxFrames += l.queues[i].tx.Load()
	}
	c.KernelDrops, c.KernelSYNDrops = l.kernelDrops()
	return c
}

// QueueCounters are the frames one device queue (one reader) received and
// the fast path sent on it.
type QueueCounters struct {
	RxFrames, TxFrames uint64
}

// QueueStats returns the counters of each queue, by index: how the kernel
// (multiqueue TAP) or the fanout group (AF_PACKET) spreads the flows.
func (l *Link) QueueStats() []QueueCounters {
	qs := make([]QueueCounters, len(l.queues))
	for i := range l.queues {
		qs[i] = QueueCounters{RxFrames: l.queues[i].rx.Load(), TxFrames: l.queues[i].tx.Load()}
	}
	return qs
}

// MTU implements tcpipstack.LinkEndpoint.
func (l *Link) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements tcpipstack.LinkEndpoint.
func (l *Link) SetMTU(mtu uint32) { l.mtu.Store(mtu) }

// MaxHeaderLength implements tcpipstack.LinkEndpoint.
func (l *Link) MaxHeaderLength() uint16 {
	if l.opts.Ethernet {
		return header.EthernetMinimumSize
	}
	return 0
}

// LinkAddress implements tcpipstack.LinkEndpoint.
func (l *Link) LinkAddress() tcpip.LinkAddress {
	if !l.opts.Ethernet {
		return ""
	}
	return tcpip.LinkAddress(l.opts.MAC[:])
}

// SetLinkAddress implements tcpipstack.LinkEndpoint. The MAC is fixed by
// configuration; the netstack never changes it.
func (l *Link) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements tcpipstack.LinkEndpoint.
func (l *Link) Capabilities() tcpipstack.LinkEndpointCapabilities {
	if l.opts.Ethernet {
		return tcpipstack.CapabilityResolutionRequired
	}
	return 0
}

// ARPHardwareType implements tcpipstack.LinkEndpoint.
func (l *Link) ARPHardwareType() header.ARPHardwareType {
	if l.opts.Ethernet {
		return header.ARPHardwareEther
	}
	return header.ARPHardwareNone
}

// AddHeader implements tcpipstack.LinkEndpoint.
func (l *Link) AddHeader(pkt *tcpipstack.PacketBuffer) {
	if !l.opts.Ethernet {
		return
	}
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = l.LinkAddress()
	}
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: src,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements tcpipstack.LinkEndpoint.
func (l *Link) ParseHeader(pkt *tcpipstack.PacketBuffer) bool {
	if !l.opts.Ethernet {
		return true
	}
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// SetOnCloseAction implements tcpipstack.LinkEndpoint.
func (l *Link) SetOnCloseAction(func()) {}

// Attach implements tcpipstack.LinkEndpoint. The first attach starts one reader
// per device; a nil dispatcher detaches (frames for the netstack are then
// dropped, forwarding goes on until Close).
func (l *Link) Attach(d tcpipstack.NetworkDispatcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dispatcher = d
	if d == nil {
		l.disp.Store(nil)
		return
	}
	l.disp.Store(&dispatcherBox{d})
	if l.started || l.closed {
		return
	}
	l.started = true
	if l.held {
		return // Release starts them
	}
	for i, dev := range *l.devs.Load() {
		l.wg.Add(1)
		go l.reader(dev, i)
	}
}

// IsAttached implements tcpipstack.LinkEndpoint.
func (l *Link) IsAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dispatcher != nil
}

// Wait implements tcpipstack.LinkEndpoint: it waits for the readers to stop.
func (l *Link) Wait() { l.wg.Wait() }

// Close implements tcpipstack.LinkEndpoint: it closes the devices, which stops
// the readers. Safe to call more than once.
func (l *Link) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	for _, d := range *l.devs.Load() {
		d.Close()
	}
}

// oneByOne is a plain Device seen as a BatchDevice of one frame per call:
// a TAP or TUN queue, which moves one frame per read or write.
type oneByOne struct{ device.Device }

func (o oneByOne) BatchSize() int { return 1 }

func (o oneByOne) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	n, err := o.Read(bufs[0])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

func (o oneByOne) WriteBatch(frames [][]byte) (int, error) {
	for i, f := range frames {
		if _, err := o.Write(f); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}

// reader is the receive loop of one device queue. It owns its buffers, one
// per frame of a batch: a frame the fast path forwards stays in its buffer
// until the batch is written, after the whole batch was processed. With
// LinkOptions.Sender the batches are written by the queue's sender, and the
// buffers are lent to it until then (sender.go).
func (l *Link) reader(dev device.Device, qi int) {
	defer l.wg.Done()
	qs := &l.queues[qi]
	bd, ok := dev.(device.BatchDevice)
	if !ok {
		bd = oneByOne{dev}
		if tr, ok := dev.(tryReader); ok && l.opts.Sender {
			bd = queuedReads{tr, queuedBatch}
		}
	}
	size := max(bd.BatchSize(), 1)
	traceHdr := make([]byte, TraceBytes) // a traced frame's headers before the rewrite
	var proc Processor
	if l.opts.NewProcessor != nil {
		proc = l.opts.NewProcessor()
	}
	wm, _ := proc.(warmer)
	var p forward.Packet
	tx := &txBatch{l: l, dev: bd, qs: qs}
	var bufs, rd [][]byte // whole buffers, headroom included; where each frame is read: its virtio-net header first
	var sizes []int
	if l.opts.Sender {
		// The batches go to a sender through a ring (sender.go); the
		// reader's buffers cycle through it.
		tx.snd = newSender(l, bd, qs, size)
		tx.snd.bind(tx)
		tx.snd.start()
		defer tx.snd.stop()
	} else {
		bufs, rd, sizes = l.readBuffers(size)
		tx.frames = make([][]byte, 0, 2*size)
		if size > 1 {
			// Extra frames (TUN segments) are copied here and sent with
			// the batch rather than one system call each.
			tx.arena = make([]byte, emitArena)
		}
	}
	em := &emitter{l: l, dev: dev, qs: qs, tx: tx}
	var backoff time.Duration
	for {
		if tx.snd != nil {
			set := tx.snd.nextSet()
			bufs, rd, sizes = set.bufs, set.rd, set.sizes
		}
		got, err := bd.ReadBatch(rd, sizes)
		if err != nil {
			if device.IsClosed(err) {
				return
			}
			l.stats.RxErrors.Add(1)
			if device.IsFatal(err) {
				// The device is gone (deleted, or the queue detached):
				// every later read would fail the same way.
				l.log.Error("device failed; reader stopped", "err", err)
				// Only the current queues report: a queue that Replace
				// already swapped out fails too, on its way out.
				if slices.Contains(*l.devs.Load(), dev) && l.lost.CompareAndSwap(false, true) && l.opts.OnLost != nil {
					l.opts.OnLost(err)
				}
				return
			}
			l.logLimited("read failed", "err", err)
			// An error that repeats must not spin a CPU.
			backoff = min(max(2*backoff, time.Millisecond), 100*time.Millisecond)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if got > 1 && wm != nil {
			// The batch's connection lookups overlap their cache misses
			// (see forward.Worker.Warm); a TAP's batch of one skips it.
			wm.Warm(rd[:got], sizes[:got], l.vh)
		}
		for i := range got {
			n := sizes[i]
			if n < l.vh {
				l.stats.RxErrors.Add(1)
				continue
			}
			qs.rx.Add(1)
			buf := bufs[i]
			tap := l.tap.Load()
			tap.frame(false, buf[Headroom:Headroom+n-l.vh])
			traced := tap.traced(buf[Headroom:Headroom+n-l.vh], traceHdr)
			p = forward.Packet{Buf: buf, Off: Headroom, Len: n - l.vh, Emit: em}
			if l.vh != 0 {
				p.VNet.Decode(buf[Headroom-l.vh : Headroom])
			}
			v := forward.ToStack
			if proc != nil {
				v = proc.Process(&p)
			}
			if traced > 0 {
				tap.processed(traceHdr[:traced], buf[p.Off:p.Off+p.Len], v, proc)
			}
			switch v {
			case forward.Transmit:
				tap.frame(true, buf[p.Off:p.Off+p.Len])
				start := p.Off - l.vh
				if l.vh != 0 {
					p.VNet.Encode(buf[start:p.Off])
				}
				tx.add(buf[start : p.Off+p.Len])
			case forward.ToStack:
				l.deliver(&p)
			case forward.AwaitNeighbor:
				l.hold(&p, qi, tx)
			}
		}
		tx.flush()
	}
}

// readBuffers returns the receive buffers of one batch of size frames:
// whole buffers (headroom included), where each frame is read (its
// virtio-net header first), and the frames' sizes.
func (l *Link) readBuffers(size int) (bufs, rd [][]byte, sizes []int) {
	bufs = make([][]byte, size)
	rd = make([][]byte, size)
	sizes = make([]int, size)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+maxFrame)
		rd[i] = bufs[i][Headroom-l.vh:]
	}
	return bufs, rd, sizes
}

// emitArena is the space a batch reader has for copies of extra frames
// (segments of a TUN super-frame: about 45 of 1.5 KB for 64 KiB).
const emitArena = 128 << 10

// txBatch collects the frames one batch forwards and writes them together,
// or hands them to the queue's sender. Owned by one reader.
type txBatch struct {
	l      *Link
	dev    device.BatchDevice
	qs     *queueStats
	frames [][]byte // views into the reader's buffers or arena, valid until flush
	// arena holds copies of emitted frames until flush; nil on a device
	// that writes one frame per call without a sender. used is its filled
	// length.
	arena []byte
	used  int
	// snd is the queue's sender (LinkOptions.Sender), or nil: then flush
	// writes. frames and arena are then those of the sender's slot that
	// the reader fills.
	snd *sender
}

// add queues a frame, writing the queue first when it is full (the
// capacity never grows: no allocation).
func (t *txBatch) add(frame []byte) {
	if len(t.frames) == cap(t.frames) {
		t.flush()
	}
	t.frames = append(t.frames, frame)
}

// addCopy queues a copy of frame, whose first vh bytes are a zeroed
// virtio-net header. It returns false when the frame does not fit the
// arena even when empty.
func (t *txBatch) addCopy(vh int, frame []byte) bool {
	n := vh + len(frame)
	if t.arena == nil || n > len(t.arena) {
		return false
	}
	if t.used+n > len(t.arena) || len(t.frames) == cap(t.frames) {
		t.flush()
	}
	c := t.arena[t.used : t.used+n]
	clear(c[:vh])
	copy(c[vh:], frame)
	t.used += n
	t.frames = append(t.frames, c)
	return true
}

// flush writes the pending frames, or hands them to the sender.
func (t *txBatch) flush() {
	if t.snd != nil {
		t.snd.handOff(t)
		return
	}
	t.l.writeFrames(t.dev, t.qs, t.frames)
	clear(t.frames) // drop the views: the buffers are read into next
	t.frames = t.frames[:0]
	t.used = 0
}

// writeFrames writes frames to dev in order. A frame the device refuses is
// counted and skipped; the rest still go out.
func (l *Link) writeFrames(dev device.BatchDevice, qs *queueStats, frames [][]byte) {
	for i := 0; i < len(frames); {
		n, err := dev.WriteBatch(frames[i:])
		qs.tx.Add(uint64(n))
		i += n
		if err == nil && n > 0 {
			continue
		}
		if err == nil {
			err = errWroteNothing
		}
		if device.IsClosed(err) {
			break
		}
		l.stats.TxErrors.Add(1)
		l.logLimited("write failed", "err", err)
		i++ // frames[i] failed
	}
}

// emitter writes the extra frames of one reader's Process calls (segments,
// fragments) to the reader's own device queue, each with an empty virtio-net
// header written into the scratch space in front of it. The frames of the
// batch forwarded before go out first, so that a flow's order holds. On a
// device that takes batches, an extra frame is copied and goes out with the
// batch.
type emitter struct {
	l   *Link
	dev device.Device
	qs  *queueStats
	tx  *txBatch
}

var _ forward.Emitter = (*emitter)(nil)

var (
	errEmitHeadroom = errors.New("emit: no room for the virtio-net header")
	errWroteNothing = errors.New("write batch: the device took no frame and gave no error")
)

// Emit implements forward.Emitter.
func (e *emitter) Emit(buf []byte, off, n int) error {
	start := off - e.l.vh
	if start < 0 {
		e.l.stats.TxErrors.Add(1)
		return errEmitHeadroom
	}
	e.l.tap.Load().frame(true, buf[off:off+n])
	if e.tx != nil {
		// After the frames forwarded before it, in the same batch when the
		// device takes batches.
		if e.tx.addCopy(e.l.vh, buf[off:off+n]) {
			return nil
		}
		if len(e.tx.frames) > 0 {
			e.tx.flush()
		}
		if e.tx.snd != nil {
			e.tx.snd.drain() // written after what the sender has
		}
	}
	clear(buf[start:off])
	if _, err := e.dev.Write(buf[start : off+n]); err != nil {
		e.l.stats.TxErrors.Add(1)
		e.l.logLimited("write failed", "err", err)
		return err
	}
	e.qs.tx.Add(1)
	return nil
}

// deliver copies a frame into a PacketBuffer and hands it to the netstack.
func (l *Link) deliver(p *forward.Packet) {
	box := l.disp.Load()
	if box == nil {
		l.stats.StackDropped.Add(1)
		return
	}
	frame := p.Frame()
	if p.VNet.Flags&forward.VirtioNetHdrFNeedsCsum != 0 && !completeChecksum(frame, &p.VNet, l.opts.Ethernet) {
		l.stats.StackDropped.Add(1)
		return
	}
	if pr := l.probes.Load(); pr != nil && pr.take(frame, l.opts.Ethernet) {
		return
	}
	pkt := tcpipstack.NewPacketBuffer(tcpipstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	var proto tcpip.NetworkProtocolNumber
	if l.opts.Ethernet {
		if !l.ParseHeader(pkt) {
			l.stats.StackDropped.Add(1)
			return
		}
		eth := header.Ethernet(pkt.LinkHeader().Slice())
		dst := eth.DestinationAddress()
		switch {
		case dst == header.EthernetBroadcastAddress:
			pkt.PktType = tcpip.PacketBroadcast
		case header.IsMulticastEthernetAddress(dst):
			pkt.PktType = tcpip.PacketMulticast
		case dst == l.LinkAddress():
			pkt.PktType = tcpip.PacketHost
		default:
			pkt.PktType = tcpip.PacketOtherHost
		}
		proto = eth.Type()
	} else {
		switch header.IPVersion(frame) {
		case header.IPv4Version:
			proto = header.IPv4ProtocolNumber
		case header.IPv6Version:
			proto = header.IPv6ProtocolNumber
		default:
			l.stats.StackDropped.Add(1)
			return
		}
	}
	l.stats.StackIn.Add(1)
	box.d.DeliverNetworkPacket(proto, pkt)
}

// completeChecksum finishes a partial (CHECKSUM_PARTIAL) L4 checksum in
// place, as the device would have: the field holds the pseudo-header sum,
// and the checksum covers everything from CsumStart on.
func completeChecksum(frame []byte, h *forward.VNetHdr, ethernet bool) bool {
	start, off := int(h.CsumStart), int(h.CsumOffset)
	if start+off+2 > len(frame) {
		return false
	}
	end := len(frame)
	if ipEnd := ipEnd(frame[:start], ethernet); ipEnd > start && ipEnd < end {
		end = ipEnd // Ethernet padding is not part of the packet
	}
	sum := ^checksum.Checksum(frame[start:end], 0)
	if sum == 0 {
		// A computed 0 is sent as all ones: for UDP, 0 means "no
		// checksum" (invalid over IPv6); for TCP both mean the same.
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(frame[start+off:], sum)
	h.Flags &^= forward.VirtioNetHdrFNeedsCsum
	return true
}

// ipEnd returns the offset where the IP packet inside hdrs ends, or 0 when
// hdrs does not start with an IP header (after the Ethernet header on an
// Ethernet link).
func ipEnd(hdrs []byte, ethernet bool) int {
	off := 0
	if ethernet {
		if len(hdrs) < header.EthernetMinimumSize {
			return 0
		}
		switch header.Ethernet(hdrs).Type() {
		case header.IPv4ProtocolNumber, header.IPv6ProtocolNumber:
			off = header.EthernetMinimumSize
		default:
			return 0
		}
	}
	b := hdrs[off:]
	switch header.IPVersion(b) {
	case header.IPv4Version:
		if len(b) >= header.IPv4MinimumSize {
			return off + int(header.IPv4(b).TotalLength())
		}
	case header.IPv6Version:
		if len(b) >= header.IPv6MinimumSize {
			return off + header.IPv6MinimumSize + int(header.IPv6(b).PayloadLength())
		}
	}
	return 0
}

// WritePackets implements tcpipstack.LinkWriter: the netstack's own packets (ARP,
// ICMP, health checks) go out on the first queue with an empty virtio-net
// header. This path is not the forwarding fast path and may allocate.
func (l *Link) WritePackets(pkts tcpipstack.PacketBufferList) (int, tcpip.Error) {
	devs := *l.devs.Load()
	if len(devs) == 0 {
		return 0, &tcpip.ErrClosedForSend{}
	}
	dev := devs[0]
	n := 0
	for _, pkt := range pkts.AsSlice() {
		size := pkt.Size()
		bp := writeBufs.Get().(*[]byte)
		b := (*bp)[:l.vh+size]
		clear(b[:l.vh])
		// The views from the packet's first header on (AsSlices would
		// allocate a slice of them per packet).
		vl, skip := pkt.AsViewList()
		off := l.vh
		for v := vl.Front(); v != nil && off < len(b); v = v.Next() {
			s := v.AsSlice()
			if skip >= len(s) {
				skip -= len(s)
				continue
			}
			off += copy(b[off:], s[skip:])
			skip = 0
		}
		_, err := dev.Write(b)
		writeBufs.Put(bp)
		if err != nil {
			l.stats.TxErrors.Add(1)
			if device.IsClosed(err) {
				return n, &tcpip.ErrClosedForSend{}
			}
			l.logLimited("write failed", "err", err)
			continue
		}
		l.stats.StackOut.Add(1)
		n++
	}
	return n, nil
}

var writeBufs = sync.Pool{New: func() any { b := make([]byte, forward.VNetHdrLen+maxFrame); return &b }}

// logLimited logs at most one I/O error per second per link: a device that
// fails fails for every packet.
func (l *Link) logLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(time.Second) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn(msg, args...)
}
