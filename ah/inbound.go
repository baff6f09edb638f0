package ah

import (
	"encoding/binary"
	"fmt"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/replay"
	"github.com/goipsec/goipsec/sa"
)

// Inbound is the receiving side of an AH SA. Its methods are safe for
// concurrent use: Decrypt may run on many goroutines at once, and Accept
// serialises the window updates (replay.Window has its own lock). It
// allocates nothing per packet.
type Inbound struct {
	engine
	window *replay.Window
}

// NewInbound returns the receiving side of the SA described by c.
func NewInbound(c Config) (*Inbound, error) {
	e, err := newEngine(&c, sa.Inbound)
	if err != nil {
		return nil, err
	}
	size := c.ReplayWindow
	if size == 0 {
		size = replay.DefaultSize
	}
	w, err := replay.New(size, c.ESN)
	if err != nil {
		return nil, fmt.Errorf("ah: replay window: %w", err)
	}
	return &Inbound{engine: e, window: w}, nil
}

// SPI returns the SA's SPI.
func (in *Inbound) SPI() uint32 { return in.spi }

// Meter returns the SA's meter: bytes and packets opened, limits crossed.
func (in *Inbound) Meter() *sa.Meter { return in.meter }

// Open verifies the IP packet buf[start:end] (an IP header followed, after
// any IPv6 extension headers, by AH) in place, removes AH and returns the
// bounds of the result within buf: the inner IP packet in tunnel mode, or in
// transport mode the packet without AH (its IP header kept, protocol or next
// header restored from the AH header, lengths and IPv4 checksum fixed). It is
// Decrypt followed by Accept; see both for the checks and the errors, which
// are sa.Drop values.
func (in *Inbound) Open(buf []byte, start, end int) (nstart, nend int, err error) {
	return sa.Open(in, buf, start, end)
}

// Decrypt is the parallel stage of Open: everything but the window update.
// AH encrypts nothing; the name matches package esp. In order (RFC 4302,
// Section 3.4):
//
//  1. parse the IP header, the IPv6 extension headers before AH (see walk6)
//     and the AH header: DropTruncated for input shorter than its headers
//     say; DropMalformed for a packet without AH, an IPv4 fragment (Section
//     3.4.1), malformed IPv4 options or IPv6 options, or an AH length that is
//     not this SA's ICV length with the padding of Section 2.6;
//     DropUnsupported for what walk6 refuses; DropUnknownSPI when the SPI is
//     not this SA's;
//  2. DropExpired after a hard limit;
//  3. the replay pre-check, which also infers the high half of an extended
//     sequence number (Section 3.4.3, RFC 4303 Appendix A): DropReplay;
//  4. the ICV check over the packet with its mutable fields zeroed (Section
//     3.4.4): DropBadICV;
//  5. in tunnel mode the next header must be 4 or 41 (DropBadNextHeader) and
//     the inner packet must be a whole IP packet of that version
//     (DropMalformed).
//
// seq is non-zero exactly when the ICV verified. The sequence number is then
// authentic, and the caller must pass it to Accept even if err is not nil
// (step 5): a packet whose integrity check succeeded updates the window
// (Section 3.4.3). A packet is counted on the Meter when Decrypt returns no
// error.
func (in *Inbound) Decrypt(buf []byte, start, end int) (nstart, nend int, seq uint64, err error) {
	if start < 0 || end < start || end > len(buf) {
		return 0, 0, 0, sa.DropTruncated
	}
	pkt := buf[start:end]
	n, ihl, v6, d := ipLength(pkt)
	if d != sa.DropNone {
		return 0, 0, 0, d
	}
	pkt = pkt[:n]
	var ahOff, nhOff int
	if v6 {
		if ahOff, nhOff, d = walk6(pkt, -1, false); d != sa.DropNone {
			return 0, 0, 0, d
		}
	} else {
		if pkt[9] != iana.ProtoAH || ipv4Fragment(pkt) {
			return 0, 0, 0, sa.DropMalformed
		}
		ahOff, nhOff = ihl, 9
	}
	if ahOff+HeaderLen > len(pkt) {
		return 0, 0, 0, sa.DropTruncated
	}
	ah := pkt[ahOff:]
	ahLen := (int(ah[1]) + 2) * 4 // RFC 4302, Section 2.2
	if ahLen != in.ahLen(v6) {
		return 0, 0, 0, sa.DropMalformed
	}
	if ahLen > len(ah) {
		return 0, 0, 0, sa.DropTruncated
	}
	// RFC 4302, Section 2.3: Reserved is ignored on receipt (but covered
	// by the ICV).
	if binary.BigEndian.Uint32(ah[4:8]) != in.spi {
		return 0, 0, 0, sa.DropUnknownSPI
	}
	if !in.alive() {
		return 0, 0, 0, sa.DropExpired
	}
	seq, ok := in.window.Check(binary.BigEndian.Uint32(ah[8:12]))
	if !ok {
		return 0, 0, 0, sa.DropReplay
	}
	if d := in.auth(pkt, v6, ahOff, uint32(seq>>32), true); d != sa.DropNone {
		return 0, 0, 0, d
	}

	// From here on the packet is authentic: report seq with every error.
	nh := ah[0]
	if in.mode == sa.Tunnel {
		if nh != iana.ProtoIPv4 && nh != iana.ProtoIPv6 {
			return 0, 0, seq, sa.DropBadNextHeader
		}
		inner := ah[ahLen:]
		m, _, inner6, d := ipLength(inner)
		if d != sa.DropNone || innerProto(inner6) != nh {
			return 0, 0, seq, sa.DropMalformed
		}
		if !in.meter.Add(m) {
			return 0, 0, seq, sa.DropExpired
		}
		nstart = start + ahOff + ahLen
		return nstart, nstart + m, seq, nil
	}

	// Transport mode: put the IP header back in front of the payload with
	// AH's next header (RFC 4302, Section 3.1.1).
	sp := packet.Split{HdrLen: ahOff, NextHdrOff: nhOff}
	nstart = packet.MoveHeader(buf, start, &sp, start+ahOff+ahLen, nh)
	nend = start + n
	out := buf[nstart:nend]
	if packet.SetLength(out, len(out)) != nil {
		return 0, 0, seq, sa.DropMalformed
	}
	if !in.meter.Add(len(out)) {
		return 0, 0, seq, sa.DropExpired
	}
	return nstart, nend, seq, nil
}

// Accept is the sequential stage of Open: it moves the replay window to
// include seq, a number returned by Decrypt. It returns sa.DropReplay if seq
// has been accepted before or has fallen to the left of the window since
// Decrypt checked it (another copy of the packet won). RFC 4302,
// Section 3.4.3.
func (in *Inbound) Accept(seq uint64) error {
	if !in.window.Accept(seq) {
		return sa.DropReplay
	}
	return nil
}
