// Package benchtest holds helpers for benchmarks that compare two ways of
// doing one thing on a shared, noisy machine (docs/TESTBED.md: measure
// ratios in one run).
package benchtest

import (
	"slices"
	"testing"
	"time"
)

// OldNew runs old and new interleaved, batch calls of each in turn, so that
// a loaded machine disturbs both alike, and reports the medians of their
// per-call times as the metrics old-p50-ns and new-p50-ns; medians ignore
// the batches that another process preempted, and batches rather than
// single calls are timed because the clock moves in steps of tens of
// nanoseconds. The two alternate which goes first, so that neither pays for
// the other's cache footprint more often. Both get the same index i, which
// counts calls from 0; when ring is positive, i wraps to 0 after ring calls
// and reset, if not nil, runs first with the timer stopped (to refill what
// the calls consumed, such as a replay window). A call's error fails the
// benchmark.
func OldNew(b *testing.B, batch, ring int, reset func(), old, new func(i int) error) {
	var oldNs, newNs []time.Duration
	i, round := 0, 0
	for b.Loop() {
		if ring > 0 && i+batch > ring {
			b.StopTimer()
			if reset != nil {
				reset()
			}
			i = 0
			b.StartTimer()
		}
		first, second, d1, d2 := old, new, &oldNs, &newNs
		if round&1 == 1 {
			first, second, d1, d2 = new, old, &newNs, &oldNs
		}
		t0 := time.Now()
		for k := range batch {
			if err := first(i + k); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for k := range batch {
			if err := second(i + k); err != nil {
				b.Fatal(err)
			}
		}
		t2 := time.Now()
		*d1 = append(*d1, t1.Sub(t0)/time.Duration(batch))
		*d2 = append(*d2, t2.Sub(t1)/time.Duration(batch))
		i += batch
		round++
	}
	b.ReportMetric(median(oldNs), "old-p50-ns")
	b.ReportMetric(median(newNs), "new-p50-ns")
}

func median(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[len(d)/2].Nanoseconds())
}
