package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
)

// Stat is one figure over repeated runs: every run's value, their median
// and their range.
type Stat struct {
	Runs   []float64 `json:"runs"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

// newStat returns the Stat of runs, ignoring NaNs; ok is false when no run
// is left.
func newStat(runs []float64) (s Stat, ok bool) {
	for _, v := range runs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			s.Runs = append(s.Runs, v)
		}
	}
	if len(s.Runs) == 0 {
		return Stat{}, false
	}
	sorted := slices.Clone(s.Runs)
	slices.Sort(sorted)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	if n := len(sorted); n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return s, true
}

// format prints the median with dec decimals and, over more than one run,
// the range in brackets: "1.23 [1.10-1.40]".
func (s Stat) format(dec int) string {
	m := strconv.FormatFloat(s.Median, 'f', dec, 64)
	if len(s.Runs) < 2 {
		return m
	}
	return fmt.Sprintf("%s [%s-%s]", m, strconv.FormatFloat(s.Min, 'f', dec, 64), strconv.FormatFloat(s.Max, 'f', dec, 64))
}

// overlaps reports whether the ranges of s and o share a value.
func (s Stat) overlaps(o Stat) bool { return s.Min <= o.Max && o.Min <= s.Max }

// runs holds one value per run of interleaved runs, by run number.
type runs map[int]float64

// stat returns the Stat of the values in run order.
func (r runs) stat() (Stat, bool) {
	keys := slices.Sorted(maps.Keys(r))
	v := make([]float64, len(keys))
	for i, k := range keys {
		v[i] = r[k]
	}
	return newStat(v)
}

// zip applies f to the values of the runs that both a and b have.
func zip(a, b runs, f func(x, y float64) float64) runs {
	out := runs{}
	for k, x := range a {
		if y, ok := b[k]; ok {
			out[k] = f(x, y)
		}
	}
	return out
}

// div is a/b, NaN when b is 0.
func div(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func sub(a, b float64) float64 { return a - b }
