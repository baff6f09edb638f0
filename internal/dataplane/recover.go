package dataplane

// Panic containment. No packet from the network may stop the data plane: a
// panic in any of its goroutines is recovered where that goroutine's work is
// split into units, and only the unit that panicked is lost:
//
//	per packet (one deferred call per run of packets, not per packet):
//	    outbound classification (SPD, SAD, NextSeq), inbound classification
//	    (demultiplexing, the IKE callback, SAD), sealing and opening, and the
//	    inbound sequential checks (replay window, selectors). The packet is
//	    dropped with sa.DropMalformed; an inbound packet whose opening
//	    panicked never moves the replay window.
//	per batch: device and socket reads, the batched sends and TUN writes,
//	    and one run of the timers. The batch goes back to its pool.
//
// Each recovered panic is counted (Panics) and logged with its stack, once
// per site: a peer that can trigger one can trigger millions, and the log
// must not become the next way to stop the daemon.

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/goipsec/goipsec/sa"
)

// site is where a panic was recovered: the goroutine kind and its stage.
type site uint8

const (
	siteTUNRead site = iota
	siteClassifyOut
	siteWorker
	siteSend
	siteSocketRead
	siteClassifyIn
	siteInboundCheck
	siteTUNWrite
	siteMaintain
	numSites
)

var siteNames = [numSites]string{
	siteTUNRead:      "tun reader",
	siteClassifyOut:  "outbound classification",
	siteWorker:       "worker",
	siteSend:         "sender",
	siteSocketRead:   "socket reader",
	siteClassifyIn:   "inbound classification",
	siteInboundCheck: "inbound sequential stage",
	siteTUNWrite:     "inbound sequential stage (TUN write)",
	siteMaintain:     "timers",
}

func (s site) String() string { return siteNames[s] }

// panicState counts recovered panics and remembers which sites have logged.
type panicState struct {
	count  atomic.Uint64
	logged [numSites]atomic.Bool
}

// Panics returns how many panics the data plane's goroutines have recovered
// from since New. Each one cost at most one packet or one batch.
func (d *Dataplane) Panics() uint64 { return d.panics.count.Load() }

// recovered counts the panic r recovered at s and logs it with its stack the
// first time s recovers one.
func (d *Dataplane) recovered(s site, r any) {
	n := d.panics.count.Add(1)
	if d.panics.logged[s].Swap(true) {
		return
	}
	d.log.Error("dataplane: recovered from a panic; the packet or batch is dropped and the goroutine goes on (further panics here are only counted)",
		"goroutine", s.String(), "panic", fmt.Sprint(r), "panics", n, "stack", string(debug.Stack()))
}

// guard runs f and recovers from a panic in it, reporting whether f
// returned normally. It costs one deferred call: use it per batch.
func (d *Dataplane) guard(s site, f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			d.recovered(s, r)
			ok = false
		}
	}()
	f()
	return true
}

// guardPause is how long a reader or timer goroutine waits after a panic
// outside the per-packet work, so that a device or socket that panics on
// every call does not make it spin.
const guardPause = 10 * time.Millisecond

// pause waits guardPause, or less if the data plane closes.
func (d *Dataplane) pause() {
	t := time.NewTimer(guardPause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-d.done:
	}
}

// eachElem calls f on the elements lo to hi-1 of b. If f panics on one, that
// element gets lost(e) (which counts its drop) and the loop goes on with the
// next: a run of packets costs one deferred call, not one per packet.
func (d *Dataplane) eachElem(s site, b *batch, lo, hi int, f, lost func(*elem)) {
	for i := lo; i < hi; {
		i = d.eachElemFrom(s, b, i, hi, f, lost)
	}
}

func (d *Dataplane) eachElemFrom(s site, b *batch, from, hi int, f, lost func(*elem)) (i int) {
	defer func() { d.recoverElem(s, recover(), b, &i, lost) }()
	for i = from; i < hi; i++ {
		f(b.elems[i])
	}
	return i
}

// recoverElem is the deferred half of a loop over a batch's elements that
// goes on after a panic: given the value r recovered from a panic at site s
// while the loop was at element *i, it counts and logs the panic, gives that
// element to lost and moves *i past it. A nil r (no panic) does nothing.
func (d *Dataplane) recoverElem(s site, r any, b *batch, i *int, lost func(*elem)) {
	if r == nil {
		return
	}
	d.recovered(s, r)
	lost(b.elems[*i])
	*i++
}

// lostCounted drops e and counts it now: the stage that panicked is the last
// to look at e.
func (d *Dataplane) lostCounted(e *elem) {
	e.drop = sa.DropMalformed
	d.dropElem(e)
	e.in, e.out = nil, nil
}

// lostOpen marks e, whose opening panicked, for the inbound sequential stage
// to count; seq 0 keeps the replay window where it is.
func lostOpen(e *elem) {
	e.drop = sa.DropMalformed
	e.seq = 0
}
