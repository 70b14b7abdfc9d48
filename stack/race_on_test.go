//go:build race

package stack

// raceEnabled is true under the race detector, which allocates.
const raceEnabled = true
