package director

import (
	"context"
	"fmt"
	"time"

	"github.com/lvsd/lvsd/config"
)

// reattachInterval is how often a lost device is looked for.
const reattachInterval = 200 * time.Millisecond

// deviceLost is the Link's OnLost of interface ic, called from a reader
// goroutine once the link found it lost: by ic.OnLoss, it wakes Run's
// re-attach loop or ends Run with an error (exit status 1).
func (d *Director) deviceLost(ic config.Interface, err error) {
	if ic.OnLoss == config.Exit {
		d.log.Error("device lost; exiting (on_loss = exit)", "interface", ic.Name, "err", err)
		select {
		case d.failed <- fmt.Errorf("interface %q: device lost (on_loss = exit): %w", ic.Name, err):
		default:
		}
		return
	}
	d.log.Warn("device lost; re-attaching when it returns", "interface", ic.Name, "err", err)
	select {
	case d.lostCh <- ic.Name:
	default:
		// The loop has a backlog of this and other interfaces already:
		// it looks at every lost one at each attempt.
	}
}

// reattachLoop opens the devices of lost interfaces again until ctx ends:
// every reattachInterval while any is lost, each as its configuration says
// (created again with create = true, put in its bridge, brought up), and
// puts them under the interface's link.
func (d *Director) reattachLoop(ctx context.Context) {
	t := time.NewTicker(reattachInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.lostCh:
		case <-t.C:
		}
		for _, ic := range d.running {
			ifc := d.ifaces[ic.Name]
			if ifc == nil || !ifc.link.Lost() {
				continue
			}
			devs, _, _, err := d.openDevices(ic)
			if err != nil {
				continue // not back yet
			}
			if err := ifc.link.Replace(devs); err != nil {
				d.log.Error("re-attach failed", "interface", ic.Name, "err", err)
				continue
			}
			ifc.reattached.Add(1)
			d.log.Info("device re-attached", "interface", ic.Name, "queues", len(devs))
		}
	}
}
