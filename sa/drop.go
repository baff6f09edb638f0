package sa

import (
	"strconv"
	"sync/atomic"
)

// Drop is the reason a packet was dropped. It implements error so that the
// packet engines can return it without allocating; the data plane counts
// drops by reason and never logs them per packet.
type Drop uint8

// Drop reasons. Keep String and the JSON/metric names in sync when adding one.
const (
	DropNone          Drop = iota // not dropped
	DropTruncated                 // shorter than its headers say, or than the minimum
	DropMalformed                 // a header field is invalid (version, length, ...)
	DropUnknownSPI                // no SA for this SPI
	DropBadICV                    // integrity check failed
	DropReplay                    // duplicate or left of the replay window
	DropBadPadding                // padding bytes or pad length wrong (RFC 4303, Section 2.4)
	DropBadNextHeader             // next header does not fit the SA's mode
	DropTFCDummy                  // next header 59: a dummy packet, discarded by design
	DropSeqExhausted              // the sender would wrap its sequence number
	DropExpired                   // the SA's hard lifetime has passed
	DropSelector                  // inner addresses outside the SA's selectors (RFC 4301, Section 5.2)
	DropPolicy                    // an SPD DISCARD rule, or cleartext where PROTECT applies
	DropNoSA                      // PROTECT with no SA and no room to stage the packet
	DropTooBig                    // no room in the buffer, or above the MTU
	DropUnsupported               // a feature this implementation does not have
	DropECN                       // outer CE over a Not-ECT inner packet (RFC 6040, Section 4.2)
	NumDrops                      // number of reasons; not a reason
)

var dropNames = [NumDrops]string{
	DropNone:          "none",
	DropTruncated:     "truncated",
	DropMalformed:     "malformed",
	DropUnknownSPI:    "unknown_spi",
	DropBadICV:        "bad_icv",
	DropReplay:        "replay",
	DropBadPadding:    "bad_padding",
	DropBadNextHeader: "bad_next_header",
	DropTFCDummy:      "tfc_dummy",
	DropSeqExhausted:  "seq_exhausted",
	DropExpired:       "expired",
	DropSelector:      "selector",
	DropPolicy:        "policy",
	DropNoSA:          "no_sa",
	DropTooBig:        "too_big",
	DropUnsupported:   "unsupported",
	DropECN:           "ecn",
}

// String returns the metric-friendly name of the reason, such as "bad_icv".
func (d Drop) String() string {
	if d < NumDrops {
		return dropNames[d]
	}
	return "drop(" + strconv.Itoa(int(d)) + ")"
}

// Error implements error.
func (d Drop) Error() string { return "ipsec: packet dropped: " + d.String() }

// DropCounters counts drops by reason. The zero value is ready; it is safe for
// concurrent use.
type DropCounters [NumDrops]atomic.Uint64

// Add counts one drop of reason d. DropNone and unknown reasons are ignored.
func (c *DropCounters) Add(d Drop) {
	if d != DropNone && d < NumDrops {
		c[d].Add(1)
	}
}

// Snapshot returns the non-zero counters by name.
func (c *DropCounters) Snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for i := Drop(1); i < NumDrops; i++ {
		if n := c[i].Load(); n != 0 {
			m[i.String()] = n
		}
	}
	return m
}
