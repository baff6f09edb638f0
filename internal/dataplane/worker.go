package dataplane

// chunk is a run of one batch's packets for one worker.
type chunk struct {
	b      *batch
	lo, hi int
}

// minChunk is the fewest packets worth handing to another core.
const minChunk = 8

// dispatch splits b into chunks, one per worker at most, and queues them.
// The sequential stage waits on b.done for all of them.
func (d *Dataplane) dispatch(b *batch) {
	n := b.n
	parts := d.workers
	if parts > (n+minChunk-1)/minChunk {
		parts = (n + minChunk - 1) / minChunk
	}
	if parts < 1 {
		parts = 1
	}
	b.done.Add(parts)
	size := (n + parts - 1) / parts
	for lo := 0; parts > 0; parts-- {
		hi := min(lo+size, n)
		d.work <- chunk{b: b, lo: lo, hi: hi}
		lo = hi
	}
}

// worker seals and opens packets, in parallel with the other workers.
func (d *Dataplane) worker() {
	defer d.stages.Done()
	for c := range d.work {
		d.eachElem(siteWorker, c.b, c.lo, c.hi, d.work1, d.lostWork)
		c.b.done.Done()
	}
}

// work1 seals or opens one packet.
func (d *Dataplane) work1(e *elem) {
	switch e.kind {
	case kindProtect:
		d.seal(e)
	case kindOpen:
		d.open(e)
	}
}

// lostWork drops a packet whose sealing or opening panicked.
func (d *Dataplane) lostWork(e *elem) {
	if e.kind == kindOpen {
		lostOpen(e) // writeInbound counts it
		return
	}
	d.lostCounted(e)
}
