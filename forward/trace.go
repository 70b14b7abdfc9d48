package forward

// LastDrop returns the reason of the last frame this Worker dropped, for a
// tracer that runs on the Worker's reader goroutine right after Process
// returned Drop. Like the Worker, it is not safe for concurrent use.
func (w *Worker) LastDrop() DropReason { return w.lastDrop }
