package health

import "time"

// probeTick is the grid probes start on: every monitor's timer fires on the
// multiple of it (in Unix time) nearest its due time, so that the probes
// due within one tick start together. A thousand checks a second then wake
// lvsd's threads a hundred times a second, in bursts of about ten, rather
// than a thousand times one by one: the link's reader takes several frames
// per wakeup, the netstack's processors several endpoints, and fewer
// threads sleep and wake between probes. The probes still spread over the
// interval, on its 1/probeTick slots, and a check's period stays its
// interval (the grid point is the nearest one, not the next). A variable
// for tests.
var probeTick = 10 * time.Millisecond

// onTick returns the delay from now to the grid point nearest from+d, at
// least one millisecond.
func onTick(from time.Time, d time.Duration) time.Duration {
	return tickDelay(time.Now(), from, d, probeTick)
}

// tickDelay is onTick with the clock and the grid given.
func tickDelay(now, from time.Time, d, grid time.Duration) time.Duration {
	if grid <= 0 {
		return max(d-now.Sub(from), time.Millisecond)
	}
	at := from.Add(d).UnixNano()
	g := int64(grid)
	r := at % g
	at -= r
	if r >= g/2 {
		at += g
	}
	return max(time.Duration(at-now.UnixNano()), time.Millisecond)
}
