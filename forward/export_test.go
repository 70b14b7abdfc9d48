package forward

// WarmSink is the sum the table's Warm returned for the worker's batches
// (see Worker.Warm): it grows only when Warm read the table.
func (w *Worker) WarmSink() uint64 { return w.warmSink }
