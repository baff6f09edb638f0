package ike

import (
	"sync/atomic"
	"time"
)

// HandshakeBuckets are the upper bounds of the buckets of
// Stats.HandshakeDurations, as a Prometheus histogram's "le" labels.
var HandshakeBuckets = [...]time.Duration{
	10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
}

// Stats are the engine's counters since NewManager, for metrics.
type Stats struct {
	// HandshakesStarted counts IKE SAs created: initiated by this host,
	// or a responder session for an IKE_SA_INIT request the engine kept
	// (after the cookie and half-open checks; retransmissions and
	// requests dropped unanswered do not count).
	HandshakesStarted uint64
	// HandshakesCompleted counts IKE SAs authenticated (IKE_AUTH done).
	HandshakesCompleted uint64
	// HandshakesFailed counts IKE SAs that ended with an error before
	// they were established (authentication failed, retransmissions
	// exhausted, half-open timeout, refused with a notify). One
	// terminated while connecting is neither completed nor failed.
	HandshakesFailed uint64
	// ChildRekeys and IKERekeys count completed rekeys (RFC 7296,
	// Sections 1.3.3 and 1.3.2), in either role.
	ChildRekeys, IKERekeys uint64
	// HandshakeDurations is a histogram of the time from the creation
	// of an IKE SA to its authentication: Buckets[i] counts handshakes
	// that took at most HandshakeBuckets[i] (cumulative, as Prometheus
	// wants), Count all of them, Sum their total.
	HandshakeDurations Histogram
}

// Histogram is a cumulative histogram over HandshakeBuckets.
type Histogram struct {
	Buckets [len(HandshakeBuckets)]uint64
	Count   uint64
	Sum     time.Duration
}

// counters are the Manager's Stats, updated by the sessions.
type counters struct {
	started, completed, failed atomic.Uint64
	childRekeys, ikeRekeys     atomic.Uint64
	buckets                    [len(HandshakeBuckets)]atomic.Uint64 // not cumulative
	sum                        atomic.Int64                         // nanoseconds
}

// Stats returns the engine's counters. Safe for concurrent use.
func (m *Manager) Stats() Stats {
	c := &m.counters
	s := Stats{
		HandshakesStarted: c.started.Load(), HandshakesCompleted: c.completed.Load(), HandshakesFailed: c.failed.Load(),
		ChildRekeys: c.childRekeys.Load(), IKERekeys: c.ikeRekeys.Load(),
	}
	h := &s.HandshakeDurations
	var n uint64
	for i := range c.buckets {
		n += c.buckets[i].Load()
		h.Buckets[i] = n
	}
	h.Count = s.HandshakesCompleted
	h.Sum = time.Duration(c.sum.Load())
	return s
}

// count updates the counters for an event the session emits.
func (c *counters) count(k EventKind, handshake time.Duration) {
	switch k {
	case EventIKEUp:
		c.completed.Add(1)
		c.sum.Add(int64(handshake))
		for i, b := range HandshakeBuckets {
			if handshake <= b {
				c.buckets[i].Add(1)
				break
			}
		}
	case EventChildRekeyed:
		c.childRekeys.Add(1)
	case EventIKERekeyed:
		c.ikeRekeys.Add(1)
	}
}
