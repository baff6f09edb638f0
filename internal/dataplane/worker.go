package dataplane

import (
	"encoding/binary"
	"math/bits"
	"net/netip"

	"github.com/goipsec/goipsec/internal/sad"
)

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

// sendLanes is the number of ordered outbound send stages. Each outbound SA
// sends on one lane, chosen by a hash of its SPI, and each lane sends its
// packets in batch order, which is sequence-number order per SA (RFC 4303,
// Section 3.3.3: the sender counts up; the receiver's window tolerates only
// bounded reordering). Packets of SAs on different lanes do not wait for
// each other: a slow or blocked destination holds up only the SAs that share
// its lane, as wireguard-go gives each peer its own sequential sender.
// BYPASS packets are laned by destination address, which keeps each flow's
// order. A power of two, at most 32 (the lane mask of a batch).
const sendLanes = 16

// lane is one ordered send stage: a goroutine that sends, in order, the
// packets of the batches queued on q that belong to it.
type lane struct {
	id  uint8
	q   chan *batch
	out [][]byte // scratch: a run of packets to one destination
}

// newLanes makes the send lanes, each with room for every batch of the
// outbound pool, so that queueing never blocks.
func newLanes(batches, batchSize int) []*lane {
	ls := make([]*lane, sendLanes)
	for i := range ls {
		ls[i] = &lane{id: uint8(i), q: make(chan *batch, batches), out: make([][]byte, 0, batchSize)}
	}
	return ls
}

// laneOf returns the send lane of a 32-bit key: a multiplicative hash, so
// that consecutive keys (manual SAs' Refs) spread too.
func laneOf(x uint32) uint8 {
	return uint8((x * 0x9e3779b1) >> (32 - bits.Len(sendLanes-1)))
}

// saLane returns the send lane of an outbound SA: by its bundle (Ref) and
// its peer's address, not by its SPI, so that the SA that replaces it in a
// rekey sends on the same lane. Keyed by SPI, the last packets of the old
// SA and the first of the new one left from two lanes in either order,
// and TCP took the reordering at each rekey for losses (hundreds of
// spurious retransmissions a minute under make rekey-load).
func saLane(o *sad.OutboundSA) uint8 {
	return laneOf(o.Ref*0x85ebca6b ^ foldAddr(o.Remote.Addr()))
}

// foldAddr folds an IP address into 32 bits.
func foldAddr(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return fold(b[:])
	}
	b := a.As16()
	return fold(b[:])
}

// queueOutbound hands a classified outbound batch to the workers and to the
// send lanes its packets belong to. The caller holds outMu, so batches reach
// every lane in the order their sequence numbers were assigned in.
func (d *Dataplane) queueOutbound(b *batch) {
	var mask uint32
	for _, e := range b.elems[:b.n] {
		switch e.kind {
		case kindProtect:
			e.lane = saLane(e.out)
		case kindBypass:
			e.lane = laneOf(foldDst(e.buf[e.start:e.end]))
		default:
			continue
		}
		mask |= 1 << e.lane
	}
	if mask == 0 {
		mask = 1 // a lane still waits for the chunks and returns b to the pool
	}
	b.pending.Store(int32(bits.OnesCount32(mask)))
	d.dispatch(b)
	for m := mask; m != 0; m &= m - 1 {
		d.lanes[bits.TrailingZeros32(m)].q <- b
	}
}

// foldDst folds the destination address of an IPv4 or IPv6 packet into 32
// bits (0 for anything else).
func foldDst(pkt []byte) uint32 {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		return fold(pkt[16:20])
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		return fold(pkt[24:40])
	}
	return 0
}

// fold XORs the 32-bit words of a 4- or 16-byte address.
func fold(b []byte) uint32 {
	var h uint32
	for ; len(b) >= 4; b = b[4:] {
		h ^= binary.BigEndian.Uint32(b)
	}
	return h
}

// sendLane is one lane's goroutine: the outbound pipeline's last stage.
// The last lane done with a batch returns it to the pool.
func (d *Dataplane) sendLane(l *lane) {
	defer d.stages.Done()
	for b := range l.q {
		b.done.Wait()
		d.guard(siteSend, func() { d.sendBatch(l, b) })
		if b.pending.Add(-1) == 0 {
			d.outPool.put(b)
		}
	}
}

// worker seals and opens packets, in parallel with the other workers.
func (d *Dataplane) worker() {
	defer d.stages.Done()
	for c := range d.work {
		warm(c.b.elems[c.lo:c.hi])
		d.eachElem(siteWorker, c.b, c.lo, c.hi, d.work1, d.lostWork)
		c.b.done.Done()
	}
}

// warmer is an engine that reads its per-SA state on request, one level of
// pointers at a time (transform.Warmer): *esp.Inbound and *esp.Outbound.
type warmer interface{ Warm(level int) int }

// warmLevels is how deep the engines' state goes: the engine, the
// transform, the cipher's keys.
const warmLevels = 3

// warm reads the state of the SAs of elems before a worker opens or seals
// them one by one. With many SAs and traffic spread over them, each
// packet's state is cold, and the packet work reads it through a chain of
// dependent loads (engine, transform, cipher state): one cache miss, with
// its page walk, after the other, behind the cryptography of the packet
// before. warm reads one level of every SA of elems before the next level,
// so that the loads of a level do not depend on each other and the
// processor overlaps their misses; the packet work then finds its state in
// the cache (docs/performance.md, "Warming a batch's SAs"). Consecutive
// packets of one SA are warmed once.
func warm(elems []*elem) (n int) {
	for level := range warmLevels {
		var in *sad.InboundSA
		var out *sad.OutboundSA
		for _, e := range elems {
			switch {
			case e.kind == kindOpen && e.in != nil && e.in != in:
				in = e.in
				n += warmEngine(in.SA, level)
			case e.kind == kindProtect && e.out != nil && e.out != out:
				out = e.out
				n += warmEngine(out.SA, level)
			}
		}
	}
	return n
}

// warmEngine reads one level of engine's state if it is a warmer.
func warmEngine(engine any, level int) int {
	if w, ok := engine.(warmer); ok {
		return w.Warm(level)
	}
	return 0
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
