//go:build race

package dataplane

// raceEnabled is true when the race detector, which allocates, is on.
const raceEnabled = true
