package main

import (
	"context"
	"testing"
	"time"
)

// TestTrimDue: ipsecd returns free heap to the OS only when it has been
// quiet for trimQuietTicks, when enough would go back, and at most once
// per trimMinGap (issue 9: memory per IKE SA after a burst of IKE SAs).
func TestTrimDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const mib = 1 << 20
	burst := heapSample{allocs: 500 * mib, free: 10 * mib, objects: 60 * mib, live: 45 * mib} // 25 MiB spare
	var tr trimmer
	if tr.due(burst, t0) {
		t.Fatal("trim while allocating (500 MiB in one tick)")
	}
	at := t0
	for i := 1; i < trimQuietTicks; i++ {
		at = at.Add(trimTick)
		if tr.due(burst, at) {
			t.Fatalf("trim after %d quiet ticks, want %d", i, trimQuietTicks)
		}
	}
	// A lull in a burst: quiet ticks, then allocation again.
	s := burst
	s.allocs += 100 * mib
	at = at.Add(trimTick)
	if tr.due(s, at) {
		t.Fatal("trim while allocating")
	}
	for i := 0; i < trimQuietTicks; i++ {
		at = at.Add(trimTick)
		if got, want := tr.due(s, at), i == trimQuietTicks-1; got != want {
			t.Fatalf("quiet tick %d: trim %v, want %v (25 MiB spare, 45 MiB live)", i+1, got, want)
		}
	}
	last := at
	s.allocs += 100 * mib
	for at = last.Add(trimTick); at.Sub(last) < trimMinGap; at = at.Add(trimTick) {
		if tr.due(s, at) {
			t.Fatalf("trim again %v after the last one, within %v", at.Sub(last), trimMinGap)
		}
	}
	if !tr.due(s, at) {
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
