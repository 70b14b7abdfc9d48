package lab

// WithReals runs fn with tp.Reals set to reals, and restores them after, so
// that the configurations that Config, StartLvsd and ReloadLvsd write
// inside fn list only those real servers: a reload can then remove a real
// server (left out) or add one (listed again), and a real server made by
// AddRoutedReal can be used alone. A Service's Weights count one weight per
// real server of reals. reals may hold real servers that are not in
// tp.Reals. Call it from the test's goroutine only.
func (tp *Topology) WithReals(reals []Real, fn func()) {
	saved := tp.Reals
	tp.Reals = reals
	defer func() { tp.Reals = saved }()
	fn()
}
