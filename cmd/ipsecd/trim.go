package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// ipsecd returns the heap's free memory to the operating system once it
// goes quiet after a burst of work, such as a crowd of IKE SAs coming up.
//
// A burst of IKE handshakes leaves garbage (messages, key exchange values,
// the handshake state each IKE SA drops once established) in spans that the
// Go runtime keeps: the collector frees the objects but the pages stay
// resident, and the runtime's background scavenger returns only what lies
// above about 110% of the heap goal (150% of the live heap at GOGC=50), at a
// low pace. Measured with 1,000 IKE SAs held: about 11 KiB per IKE SA of
// resident memory was such free or dead heap 2 s after the last handshake
// (docs/performance.md, "Memory per IKE SA"). When the daemon is quiet, one
// debug.FreeOSMemory (a collection and a scavenge of all free pages) gives
// it back; a busy daemon is never interrupted.
//
// What an established IKE SA keeps alive is not touched: this returns only
// pages that hold nothing.

const (
	trimTick = 500 * time.Millisecond // how often the heap is looked at
	// trimQuiet is the most the daemon may allocate in one tick and be
	// quiet, and trimQuietTicks how many ticks in a row it must be: an
	// idle daemon with thousands of IKE SAs (DPD, rekeys) allocates far
	// less, a burst of handshakes far more (about 50 KiB each), and one
	// quiet tick alone was a lull inside a burst of 10,000 IKE SAs on
	// the loaded 2-core machine, where a collection cost 0.7 CPU-s.
	trimQuiet      = 512 << 10
	trimQuietTicks = 2
	// trimMinBytes and trimFraction: a trim is worth a collection (whose
	// cost grows with the live heap) only if at least this much, and
	// this fraction of the live heap, would go back.
	trimMinBytes = 4 << 20
	trimFraction = 16 // 1/16 of /gc/heap/live
	// trimMinGap bounds the collections the trimmer adds when bursts
	// and quiet ticks alternate. Quiet, the daemon allocates at most
	// trimQuiet per tick, and each trim needs a trimFraction of the live
	// heap in new garbage or free pages: at 10,000 IKE SAs (120 MiB
	// live) that is at most one collection every 7 s.
	trimMinGap = 2 * time.Second
)

// heapSample is what the trimmer reads of the runtime's metrics, in bytes.
type heapSample struct {
	allocs  uint64 // /gc/heap/allocs:bytes, cumulative
	free    uint64 // /memory/classes/heap/free:bytes: free, not yet released pages
	objects uint64 // /memory/classes/heap/objects:bytes: live and dead objects not yet swept
	live    uint64 // /gc/heap/live:bytes: marked live by the last collection
}

// spare estimates what a collection and a scavenge would return: the free
// pages and the dead objects.
func (s heapSample) spare() uint64 {
	dead := uint64(0)
	if s.objects > s.live {
		dead = s.objects - s.live
	}
	return s.free + dead
}

// trimmer decides when to trim; it is owned by one goroutine.
type trimmer struct {
	prevAllocs uint64
	quiet      int       // quiet ticks in a row
	last       time.Time // of the last trim; zero: none yet
}

// due reports whether to trim at now, given the sample read at now; it is
// called once per trimTick.
func (t *trimmer) due(s heapSample, now time.Time) bool {
	if s.allocs-t.prevAllocs <= trimQuiet {
		t.quiet++
	} else {
		t.quiet = 0
	}
	t.prevAllocs = s.allocs
	if t.quiet < trimQuietTicks || now.Sub(t.last) < trimMinGap {
		return false
	}
	spare := s.spare()
	if spare < trimMinBytes || spare < s.live/trimFraction {
		return false
	}
	t.last = now
	return true
}

var trimMetrics = [...]string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/objects:bytes",
	"/gc/heap/live:bytes",
}

func readHeapSample(ms []metrics.Sample) heapSample {
	metrics.Read(ms)
	v := func(i int) uint64 {
		if ms[i].Value.Kind() != metrics.KindUint64 {
			return 0 // unknown to this runtime: no trim is ever due
		}
		return ms[i].Value.Uint64()
	}
	return heapSample{allocs: v(0), free: v(1), objects: v(2), live: v(3)}
}

// trimWhenQuiet runs until ctx ends and calls debug.FreeOSMemory when the
// trimmer says so. With the collector off (GOGC=off) it does nothing,
// since a trim is a collection.
func trimWhenQuiet(ctx context.Context) {
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	if gogc[0].Value.Kind() != metrics.KindUint64 || int64(gogc[0].Value.Uint64()) < 0 {
		return
	}
	ms := make([]metrics.Sample, len(trimMetrics))
	for i, name := range trimMetrics {
		ms[i].Name = name
	}
	t := &trimmer{}
	t.prevAllocs = readHeapSample(ms).allocs
	tick := time.NewTicker(trimTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if t.due(readHeapSample(ms), now) {
				debug.FreeOSMemory()
				t.prevAllocs = readHeapSample(ms).allocs
			}
		}
	}
}
