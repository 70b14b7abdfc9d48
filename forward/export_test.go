package forward

import "testing"

// WarmAlways makes Worker.Warm work whatever the table's size, until the
// test ends.
func WarmAlways(tb testing.TB) {
	old := warmMinConns
	warmMinConns = 0
	tb.Cleanup(func() { warmMinConns = old })
}

// WarmSink is the sum the table's Warm returned for the worker's batches
// (see Worker.Warm): it grows only when Warm read the table.
func (w *Worker) WarmSink() uint64 { return w.warmSink }
