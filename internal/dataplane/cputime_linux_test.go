package dataplane

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time that the calling thread has used, and
// whether it could be read.
func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
