package director

import "sync"

// healthWave delivers the edges of keys at once, each from its own
// goroutine, and returns when all are applied.
func healthWave(s *healthSink, keys []RealKey, up bool) {
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		go func() { defer wg.Done(); s.SetHealth(k, up, false) }()
	}
	wg.Wait()
	(*Director)(s).waitEdges()
}
