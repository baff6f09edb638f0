package sa

import (
	"fmt"
	"math"
	"sync/atomic"
)

// Default sequence-number margins for the soft LimitSeq event: the event
// fires when fewer than this many sequence numbers remain. With 32-bit
// numbers 2^28 leaves about 6% of the space, time for a CHILD SA rekey
// (RFC 7296, Section 2.8) even at ten million packets per second; with ESN
// 2^32 is a whole low half, far more than any rekey needs.
const (
	DefaultSeqSoftMargin    = 1 << 28
	DefaultSeqSoftMarginESN = 1 << 32
)

// MaxSeq returns the last sequence number an outbound SA may use: 2^32-1,
// or 2^64-1 with extended sequence numbers. The counter never cycles
// (RFC 4303, Section 3.3.3; RFC 4302, Sections 2.5.1 and 3.3.2).
func MaxSeq(esn bool) uint64 {
	if esn {
		return math.MaxUint64
	}
	return math.MaxUint32
}

// SeqCounter hands out the sequence numbers of an outbound ESP or AH SA in
// order, from 1 (or the number after a given start) to MaxSeq, and reports
// the sequence-number limits (LimitSeq) on the SA's Meter. It is safe for
// concurrent use and allocates nothing per number.
type SeqCounter struct {
	last  atomic.Uint64 // the last number handed out
	max   uint64        // the last usable number
	soft  uint64        // the soft LimitSeq event fires from this number on
	meter *Meter
}

// NewSeqCounter returns a counter whose first number is start+1; start zero
// is a fresh SA, whose first packet has sequence number 1. softMargin is how
// few numbers may remain before the soft LimitSeq event fires; zero means
// DefaultSeqSoftMargin (DefaultSeqSoftMarginESN with esn). Events go to m,
// which must not be nil. It returns an error if start is beyond MaxSeq(esn).
func NewSeqCounter(start uint64, esn bool, softMargin uint64, m *Meter) (*SeqCounter, error) {
	c := new(SeqCounter)
	if err := c.Init(start, esn, softMargin, m); err != nil {
		return nil, err
	}
	return c, nil
}

// Init makes c, a zero SeqCounter that is not yet in use, a counter as
// NewSeqCounter describes, for engines that embed the counter in their
// SA's state. A SeqCounter must not be copied.
func (c *SeqCounter) Init(start uint64, esn bool, softMargin uint64, m *Meter) error {
	max := MaxSeq(esn)
	if start > max {
		return fmt.Errorf("sa: start sequence number %d beyond the last, %d", start, max)
	}
	if softMargin == 0 {
		softMargin = DefaultSeqSoftMargin
		if esn {
			softMargin = DefaultSeqSoftMarginESN
		}
	}
	c.max, c.meter = max, m
	// Fire when fewer than softMargin numbers remain after the one just
	// used: max - seq < softMargin, that is seq > max - softMargin.
	if softMargin > max {
		c.soft = 1
	} else {
		c.soft = max - softMargin + 1
	}
	c.last.Store(start)
	return nil
}

// Next returns the next sequence number. Numbers are handed out in order and
// never cycle: after MaxSeq, Next reports a hard LimitSeq event (once) and
// returns DropSeqExhausted; when fewer than the soft margin remain it reports
// a soft LimitSeq event (once). After any hard limit of the Meter it returns
// DropExpired.
func (c *SeqCounter) Next() (uint64, error) {
	for {
		old := c.last.Load()
		if old >= c.max {
			c.meter.Fire(true, LimitSeq)
			return 0, DropSeqExhausted
		}
		if !c.meter.Alive() {
			return 0, DropExpired
		}
		if c.last.CompareAndSwap(old, old+1) {
			s := old + 1
			if s >= c.soft {
				c.meter.Fire(false, LimitSeq)
			}
			return s, nil
		}
	}
}

// Last returns the last number handed out by Next (the start if none was).
func (c *SeqCounter) Last() uint64 { return c.last.Load() }

// InRange reports whether seq is a usable sequence number of the SA: from 1
// to MaxSeq. Zero is never sent (RFC 4303, Section 3.3.3).
func (c *SeqCounter) InRange(seq uint64) bool { return seq != 0 && seq <= c.max }
