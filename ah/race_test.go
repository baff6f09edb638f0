//go:build race

package ah

// raceEnabled is true under the race detector, whose sync.Pool drops items
// on purpose, so allocation counts mean nothing.
const raceEnabled = true
