package director

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/lvsd/lvsd/capture"
	"github.com/lvsd/lvsd/control"
	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/stack"
)

// observe is the director's state for observers: metrics, the capture
// and the trace in force.
type observe struct {
	reloads reloadCounts
	// tapMu serialises arming and disarming; the pointers are read
	// without it on the packet path.
	tapMu   sync.Mutex
	capture atomic.Pointer[capture.Capture] // the capture in force, or nil
	trace   atomic.Pointer[tracer]          // the trace in force, or nil
}

// reloadCounts counts reload outcomes for the metrics listener.
type reloadCounts struct {
	applied, refused atomic.Uint64
}

// note counts one reload: applied when err is nil or only says that
// interface changes wait for a restart (the services were applied).
func (r *reloadCounts) note(err error) {
	if err == nil || errors.Is(err, ErrRestartNeeded) {
		r.applied.Add(1)
		return
	}
	r.refused.Add(1)
}

// ReloadCounts returns how many reloads were applied and refused since
// start (metrics.ReloadSource).
func (d *Director) ReloadCounts() (applied, refused uint64) {
	return d.obs.reloads.applied.Load(), d.obs.reloads.refused.Load()
}

// linkTap is the stack.Tap of one interface while a capture or a trace
// is armed: it hands frames to whichever is.
type linkTap struct {
	d        *Director
	i        int // index in d.running, the capture's interface index
	name     string
	ethernet bool
}

func (t linkTap) Frame(out bool, frame []byte) {
	if c := t.d.obs.capture.Load(); c != nil {
		c.Frame(t.i, out, frame)
	}
}

func (t linkTap) Trace(frame []byte) bool {
	tr := t.d.obs.trace.Load()
	return tr != nil && tr.want(frame, t.ethernet)
}

func (t linkTap) Processed(before, after []byte, v forward.Verdict, proc stack.Processor) {
	if tr := t.d.obs.trace.Load(); tr != nil {
		tr.record(t.name, t.ethernet, before, after, v, proc)
	}
}

// retap arms the links' taps while a capture or a trace is armed, and
// disarms them when neither is. Preconditions: d.obs.tapMu is held.
func (d *Director) retap() {
	armed := d.obs.capture.Load() != nil || d.obs.trace.Load() != nil
	for i, ic := range d.running {
		ifc := d.ifaces[ic.Name]
		if ifc == nil {
			continue
		}
		if armed {
			ifc.link.SetTap(linkTap{d: d, i: i, name: ic.Name, ethernet: ic.Type.Ethernet()})
		} else {
			ifc.link.SetTap(nil)
		}
	}
}

// StartCapture arms a capture on every running interface, in file order,
// and returns it with the function that disarms it (call it once).
//
// It implements control.Capturer; while a capture runs, another is
// refused with control.ErrCaptureBusy.
func (d *Director) StartCapture(o capture.Options) (*capture.Capture, func(), error) {
	d.obs.tapMu.Lock()
	defer d.obs.tapMu.Unlock()
	if d.obs.capture.Load() != nil {
		return nil, nil, control.ErrCaptureBusy
	}
	var ifs []capture.Iface
	for _, ic := range d.running {
		ifs = append(ifs, capture.Iface{Name: ic.Name, Ethernet: ic.Type.Ethernet()})
	}
	c := capture.New(ifs, o)
	d.obs.capture.Store(c)
	d.retap()
	stop := func() {
		d.obs.tapMu.Lock()
		defer d.obs.tapMu.Unlock()
		d.obs.capture.Store(nil)
		d.retap()
	}
	return c, stop, nil
}
