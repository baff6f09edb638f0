package main

import (
	"context"
	"testing"
	"time"
)

// TestTrimDue: ipsecd returns free heap to the OS only when it is quiet,
// when enough would go back, and at most once per trimMinGap (issue 9:
// memory per IKE SA after a burst of IKE SAs).
func TestTrimDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const mib = 1 << 20
	burst := heapSample{allocs: 500 * mib, free: 10 * mib, objects: 60 * mib, live: 45 * mib} // 25 MiB spare
	var tr trimmer
	if tr.due(burst, t0) {
		t.Fatal("trim while allocating (500 MiB in one tick)")
	}
	if !tr.due(burst, t0.Add(trimTick)) {
		t.Fatal("no trim once quiet with 25 MiB spare, 45 MiB live")
	}
	s := burst
	s.allocs += 100 * mib
	if tr.due(s, t0.Add(2*trimTick)) {
		t.Fatal("trim while allocating")
	}
	if tr.due(s, t0.Add(3*trimTick)) {
		t.Fatalf("trim again within %v", trimMinGap)
	}
	if !tr.due(s, t0.Add(trimTick+trimMinGap)) {
		t.Fatalf("no trim %v after the last one", trimMinGap)
	}
	small := heapSample{allocs: s.allocs, free: 1 * mib, objects: 12 * mib, live: 10 * mib} // 3 MiB spare
	if tr.due(small, t0.Add(3*trimMinGap)) {
		t.Fatal("trim for 3 MiB, under trimMinBytes")
	}
	big := heapSample{allocs: s.allocs, free: 10 * mib, objects: 400 * mib, live: 399 * mib} // 11 MiB spare
	if tr.due(big, t0.Add(4*trimMinGap)) {
		t.Fatal("trim for 11 MiB spare with 399 MiB live, under 1/trimFraction")
	}
	// A live heap read after the objects were counted (a collection in
	// between) counts no dead objects, and nothing underflows.
	odd := heapSample{allocs: s.allocs, free: 0, objects: 30 * mib, live: 31 * mib}
	if odd.spare() != 0 {
		t.Fatalf("spare %d, want 0", odd.spare())
	}
}

// TestTrimWhenQuietStops: the trim loop ends with its context.
func TestTrimWhenQuietStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		trimWhenQuiet(ctx)
		close(done)
	}()
	time.Sleep(2 * trimTick)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("trimWhenQuiet did not return after its context ended")
	}
}
