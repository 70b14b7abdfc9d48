package director

import (
	"errors"
	"sync/atomic"

	"github.com/lvsd/lvsd/capture"
	"github.com/lvsd/lvsd/control"
)

// observe is the director's state for observers: metrics and captures.
// Every field is atomic.
type observe struct {
	reloads reloadCounts
	// capturing is set while a capture is armed (one at a time).
	capturing atomic.Bool
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

// linkTap hands one interface's frames to a capture.
type linkTap struct {
	c *capture.Capture
	i int
}

func (t linkTap) Frame(out bool, frame []byte) { t.c.Frame(t.i, out, frame) }

// StartCapture arms a capture on every running interface, in file order,
// and returns it with the function that disarms it (call it once).
//
// It implements control.Capturer; while a capture runs, another is
// refused with control.ErrCaptureBusy.
func (d *Director) StartCapture(o capture.Options) (*capture.Capture, func(), error) {
	if !d.obs.capturing.CompareAndSwap(false, true) {
		return nil, nil, control.ErrCaptureBusy
	}
	var ifs []capture.Iface
	for _, ic := range d.running {
		ifs = append(ifs, capture.Iface{Name: ic.Name, Ethernet: ic.Type.Ethernet()})
	}
	c := capture.New(ifs, o)
	for i, ic := range d.running {
		if ifc := d.ifaces[ic.Name]; ifc != nil {
			ifc.link.SetTap(linkTap{c: c, i: i})
		}
	}
	stop := func() {
		for _, ic := range d.running {
			if ifc := d.ifaces[ic.Name]; ifc != nil {
				ifc.link.SetTap(nil)
			}
		}
		d.obs.capturing.Store(false)
	}
	return c, stop, nil
}
