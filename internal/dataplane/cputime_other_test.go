//go:build !linux

package dataplane

import "time"

// threadCPU is not implemented here: the scale benchmarks report no
// cpu-ns/op.
func threadCPU() (time.Duration, bool) { return 0, false }
