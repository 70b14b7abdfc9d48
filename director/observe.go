package director

import (
	"errors"
	"sync/atomic"
)

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
	return d.reloads.applied.Load(), d.reloads.refused.Load()
}
