package forward

// The warm pass over a batch of frames, before Process takes them one by one.

// warmMinConns is the table size from which Warm works. A smaller table
// (its slots and entries take about 84 bytes a connection: 1.3 MiB here)
// stays in the caches, and the warm pass would only add its parse: at 1,000
// connections, about 30 ns a packet (BenchmarkScaleConns, batch32 against
// warm32); at 100,000 it saves a third. A variable for the tests.
var warmMinConns = 1 << 14

// Warm is a hint that the frames bufs[i][offset:sizes[i]] are about to be
// given to Process, in that order: it parses each as Process does, and
// hands the tuples of its TCP and UDP packets to the connection table's
// Warm, which reads their index slots and then their entries in two passes.
// The cache misses of the batch's lookups are then in flight together,
// instead of two after one another for each packet as Process meets them.
// A reader that receives frames in batches (AF_PACKET) calls it once per
// batch; a batch of one gains nothing, and Warm returns at once, as it
// does while the table holds fewer than warmMinConns connections.
//
// Warm decides nothing: it changes no frame, no counter and nothing in the
// table, and Process decides and counts every frame as it would without it.
// Frames it cannot parse, or whose size is below offset or beyond their
// buffer, it skips (Process drops and counts them). It allocates nothing;
// the parse it leaves in the Worker is Process's scratch, which Process
// overwrites.
func (w *Worker) Warm(bufs [][]byte, sizes []int, offset int) {
	if len(bufs) < 2 || len(sizes) < len(bufs) || offset < 0 || w.dry != nil || w.f.table.Len() < warmMinConns {
		return
	}
	s := w.f.snap.Load()
	n := 0
	for i, buf := range bufs {
		if sizes[i] < offset || sizes[i] > len(buf) {
			continue
		}
		if res, _ := w.parse(buf[offset:sizes[i]], s); res != parsedL4 {
			continue
		}
		w.warmKeys[n] = w.pk.t
		n++
		if n == len(w.warmKeys) {
			w.warmSink += w.f.table.Warm(w.warmKeys[:n])
			n = 0
		}
	}
	if n > 1 {
		w.warmSink += w.f.table.Warm(w.warmKeys[:n])
	}
}
