// Package replay implements the receiver's anti-replay window of ESP and AH
// (RFC 4303, Section 3.4.3; RFC 4302, Section 3.4.3), with the extended
// sequence number inference of RFC 4303, Appendix A, and the bitmap layout of
// RFC 6479: a ring of 64-bit words indexed by the sequence number, so that the
// window slides by clearing the words it enters instead of shifting the whole
// bitmap.
//
// The data plane uses a Window in two steps. Before verifying the ICV it calls
// Check, which infers the full sequence number from the 32 bits on the wire
// and drops duplicates and packets left of the window cheaply, without a
// lock. After the ICV verified it calls Accept, which marks the packet and
// moves the window under the window's lock, the one lock of an inbound
// packet; only authenticated packets move the window (RFC 4303, Section
// 3.4.3; RFC 4302, Section 3.4.3).
//
// Check reads the window with atomic loads while Accept may be changing it.
// That is safe because a window only ever moves one way: Top grows, a number
// once marked stays marked until it falls left of the window, and a number
// left of the window stays there. Whatever state Check reads existed at
// some instant no earlier than the one the caller's packet arrived at, so a
// number Check refuses would be refused by every later state too, Accept's
// included: Check never refuses a packet that Accept would take (a torn read
// can only make it say "maybe", which Accept then settles).
package replay

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// Window sizes, in packets. RFC 4303, Section 3.4.3 requires support for 32
// and suggests 64 as the default; the default here is larger so that the
// reordering that parallel encryption and multi-queue links cause on fast
// paths does not look like replay.
const (
	DefaultSize = 1024
	MinSize     = 32
	MaxSize     = 1 << 20
)

// Window is the anti-replay window of one inbound SA. Create it with New, or
// embed it in the SA's state and call Init once; the zero value is not
// usable otherwise, and a Window must not be copied. It is safe for
// concurrent use: Accept holds a mutex briefly, and Check and Top take no
// lock (see the package comment). Check and Accept allocate nothing.
//
// The window covers the Size sequence numbers ending at Top, the highest
// sequence number accepted so far (RFC 4303, Section 3.4.3: the right edge
// represents the highest validated value). A new Window has Top 0 and nothing
// received; sequence number 0 is never valid, since the first packet of an SA
// carries 1 (RFC 4303, Section 3.3.3).
type Window struct {
	size uint64 // W: a multiple of 64
	mask uint64 // len(bits)-1; len(bits) is a power of two > W/64
	esn  bool

	// mu serializes Accept. top and the words of bits are written only
	// under it, with atomic stores, and read by Check without it.
	mu   sync.Mutex
	top  atomic.Uint64
	bits []atomic.Uint64 // RFC 6479 ring: sequence number s is bit s%64 of word (s/64)&mask

	// ring holds bits for windows up to DefaultSize, so that the header
	// and the ring are one allocation and adjacent in memory: with many
	// SAs, a packet's window is then one cache miss away, not two in a
	// row.
	ring [inlineWords]atomic.Uint64
}

// inlineWords is the ring of a DefaultSize window (see New).
const inlineWords = 32

// New returns a window of size packets, rounded up to a multiple of 64, for an
// SA that uses extended (64-bit) sequence numbers when esn is set (RFC 4303,
// Section 2.2.1). size must lie in [MinSize, MaxSize].
//
// The ring holds a power of two of 64-bit words, at least one more than
// size/64 (RFC 6479, Section 2: the extra word lets the window slide within a
// word without clearing bits it still covers), so a window of DefaultSize
// takes 256 bytes and one of MaxSize 256 KiB.
func New(size int, esn bool) (*Window, error) {
	w := new(Window)
	if err := w.Init(size, esn); err != nil {
		return nil, err
	}
	return w, nil
}

// Init makes w, a zero Window that is not yet in use, a window as New
// describes. A ring of up to DefaultSize packets lives inside w; a larger
// one is allocated apart.
func (w *Window) Init(size int, esn bool) error {
	if size < MinSize || size > MaxSize {
		return fmt.Errorf("replay: window size %d outside [%d, %d]", size, MinSize, MaxSize)
	}
	size = (size + 63) &^ 63
	words := 1
	for words < size/64+1 {
		words <<= 1
	}
	w.size, w.mask, w.esn = uint64(size), uint64(words-1), esn
	if words <= inlineWords {
		w.bits = w.ring[:words]
	} else {
		w.bits = make([]atomic.Uint64, words)
	}
	return nil
}

// Size returns the number of sequence numbers the window covers.
func (w *Window) Size() int { return int(w.size) }

// ESN reports whether the window infers 64-bit extended sequence numbers.
func (w *Window) ESN() bool { return w.esn }

// Top returns the highest sequence number accepted so far, or 0 if none. It
// takes no lock.
func (w *Window) Top() uint64 { return w.top.Load() }

// Check infers the full sequence number seq of a packet that carries seqLow
// in its ESP or AH header and reports whether the window would accept it: it
// is not 0, not left of the window, and not received before. Check does not
// modify the window and takes no lock: it reads the window as it stands, and
// another goroutine's Accept may move it at the same time (see the package
// comment: a refusal is final, a "yes" is settled by Accept). Call Accept
// once the ICV has verified.
//
// Without ESN, seq is seqLow. With ESN, the high 32 bits are inferred as in
// RFC 4303, Appendix A2.2: seq is the one number with low half seqLow in the
// 2^32 sequence numbers that start at the left edge of the window (Top-Size+1),
// so the window may straddle a 2^32 boundary in either direction. A number
// that would fall below 1 (before the first epoch), or past 2^64-1, is not
// accepted. The ICV covers the inferred high half (RFC 4303, Section 2.2.1),
// so a wrong guess fails integrity rather than corrupting the window.
//
// The inference uses the Top that Check reads; if Accept moves the window in
// between, the number is the one an earlier state gives, which is what a
// locked Check followed by another packet's Accept gave as well. Either the
// ICV then fails (the guess is wrong only for a packet about 2^32 numbers
// away from the window) or the number is authentic and Accept judges it
// against the window as it is then.
func (w *Window) Check(seqLow uint32) (seq uint64, ok bool) {
	// Load top before the bitmap word: Accept stores the cleared words
	// before the new top, so a top read here comes with the words it
	// cleared (the atomics order them).
	top := w.top.Load()
	seq, ok = w.infer(top, seqLow)
	if !ok {
		return seq, false
	}
	return seq, w.check(top, seq)
}

// infer returns the full sequence number for seqLow under a window whose
// highest accepted number is top, and whether it exists.
func (w *Window) infer(top uint64, seqLow uint32) (uint64, bool) {
	if !w.esn {
		return uint64(seqLow), true
	}
	// RFC 4303, Appendix A2.2, with Tl, Th the halves of the top and W the
	// window size; Bl = Tl - W + 1 is the low half of the left edge.
	tl, th := uint32(top), uint32(top>>32)
	size := uint32(w.size) // at most MaxSize: fits
	bl := tl - size + 1    // modulo 2^32 in case B
	if tl >= size-1 {
		// Case A: the window lies within one 2^32 subspace. A seqLow
		// below Bl belongs to the next subspace.
		if seqLow >= bl {
			return uint64(th)<<32 | uint64(seqLow), true
		}
		if th == math.MaxUint32 {
			return uint64(seqLow), false // past 2^64-1
		}
		return uint64(th+1)<<32 | uint64(seqLow), true
	}
	// Case B: the window spans two subspaces. A seqLow at or above Bl
	// belongs to the previous subspace.
	if seqLow >= bl {
		if th == 0 {
			return uint64(seqLow), false // before sequence number 1
		}
		return uint64(th-1)<<32 | uint64(seqLow), true
	}
	return uint64(th)<<32 | uint64(seqLow), true
}

// check reports whether seq is acceptable to a window whose highest
// accepted number was top when the caller loaded it. The bitmap word is read
// after top: a bit found set there belongs to seq (a duplicate) or to a
// number a whole ring above it, which puts seq left of the window by now;
// either way the refusal stands.
func (w *Window) check(top, seq uint64) bool {
	switch {
	case seq == 0:
		return false
	case seq > top:
		return true
	case top-seq >= w.size:
		return false // left of the window
	}
	return w.bits[(seq>>6)&w.mask].Load()&(1<<(seq&63)) == 0
}

// Accept marks seq as received and, if it is above Top, slides the window so
// that seq becomes Top. It reports false, changing nothing, if seq is 0, a
// duplicate, left of the window, or above 2^32-1 on a window without ESN; the
// caller then drops the packet with sa.DropReplay. Call Accept only after the
// packet's ICV verified (RFC 4303, Section 3.4.3), with the seq that Check
// returned: another packet may have been accepted in between, which is why
// Accept checks again, under the window's lock, so that of two copies of a
// number accepted at the same time exactly one wins.
func (w *Window) Accept(seq uint64) bool {
	if seq == 0 || (!w.esn && seq > math.MaxUint32) {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	top := w.top.Load()
	word, bit := &w.bits[(seq>>6)&w.mask], uint64(1)<<(seq&63)
	if seq > top {
		// RFC 6479, Section 2: clear the words between the old top's word
		// and seq's word; they hold bits of numbers now left of the
		// window (or nothing). The cleared words are stored before the
		// new top, which Check loads first.
		from, to := top>>6, seq>>6
		if to-from > w.mask {
			for i := range w.bits {
				clearWord(&w.bits[i])
			}
		} else {
			for i := from + 1; i <= to; i++ {
				clearWord(&w.bits[i&w.mask])
			}
		}
		word.Store(word.Load() | bit)
		w.top.Store(seq)
		return true
	}
	if top-seq >= w.size {
		return false
	}
	v := word.Load()
	if v&bit != 0 {
		return false
	}
	word.Store(v | bit)
	return true
}

// clearWord zeroes a word of the ring. The load spares the store, which
// fences, on words that hold nothing: a fresh window, or most of a large
// one that a jump clears whole.
func clearWord(w *atomic.Uint64) {
	if w.Load() != 0 {
		w.Store(0)
	}
}
