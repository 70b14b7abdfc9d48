//go:build !race

package forward_test

// raceEnabled is true when the tests run with the race detector, which
// makes packet-path loops about ten times slower.
const raceEnabled = false
