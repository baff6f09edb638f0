package packet

import (
	"encoding/binary"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/sa"
)

// IPv6Ext is a cursor over the extension header chain of an IPv6 packet
// (RFC 8200, Section 4): the one walker that Decode, TransportSplit and the
// packet engines (ESP's fragment check, AH's ICV over the headers before it)
// share. Each caller decides which headers to cross; the cursor checks that
// every header it crosses lies within the packet. It allocates nothing and
// never panics on bytes it was given through WalkIPv6.
//
// The zero value is not usable; start with WalkIPv6.
type IPv6Ext struct {
	b []byte // the packet, up to its total length

	// NextHeader is the type of the header at Off: the Next Header value
	// found at NextHeaderOff.
	NextHeader uint8
	// NextHeaderOff is the offset of the byte that holds NextHeader: 6 in
	// the fixed header, or the first byte of the extension header before
	// Off. Transport-mode ESP and AH save it and put 50 or 51 there.
	NextHeaderOff int
	// Off is the offset of the header NextHeader names.
	Off int
	// Fragment reports that a Fragment header has been crossed (RFC 8200,
	// Section 4.5), atomic fragments included.
	Fragment bool
	// FragOff and MoreFragments are the fields of the last Fragment header
	// crossed (FragOff in 8-byte units).
	FragOff       uint16
	MoreFragments bool
}

// WalkIPv6 starts a cursor at the first header after the fixed IPv6 header of
// b. b must hold at least IPv6HeaderLen bytes and end where the packet ends
// (40 plus the Payload Length), as checkIPv6 or Decode establish.
func WalkIPv6(b []byte) IPv6Ext {
	return IPv6Ext{b: b, NextHeader: b[6], NextHeaderOff: 6, Off: IPv6HeaderLen}
}

// IsExt reports whether NextHeader is an extension header that Skip can
// cross: Hop-by-Hop Options, Routing, Fragment or Destination Options.
func (w *IPv6Ext) IsExt() bool {
	switch w.NextHeader {
	case iana.ProtoHopOpts, iana.ProtoRouting, iana.ProtoFragment, iana.ProtoDstOpts:
		return true
	}
	return false
}

// Peek returns the Next Header field of the extension header at Off, the
// type of the header after it, or false if that byte lies outside the
// packet.
func (w *IPv6Ext) Peek() (uint8, bool) {
	if w.Off >= len(w.b) {
		return 0, false
	}
	return w.b[w.Off], true
}

// Skip crosses the extension header at Off and returns its bytes. It fails
// with sa.DropMalformed when NextHeader is not an extension header (see
// IsExt) or is a Hop-by-Hop Options header anywhere but right after the
// fixed header (RFC 8200, Section 4.1), and with sa.DropTruncated when the
// header does not lie within the packet. Hop-by-hop, routing and
// destination options headers give their length in 8-byte units, not
// counting the first 8 bytes (RFC 8200, Sections 4.3, 4.4, 4.6); the
// fragment header is 8 bytes (Section 4.5).
func (w *IPv6Ext) Skip() ([]byte, error) {
	nh, off := w.NextHeader, w.Off
	switch nh {
	case iana.ProtoHopOpts:
		if off != IPv6HeaderLen {
			return nil, sa.DropMalformed
		}
	case iana.ProtoRouting, iana.ProtoDstOpts, iana.ProtoFragment:
	default:
		return nil, sa.DropMalformed
	}
	n := 8
	if nh != iana.ProtoFragment {
		if off+2 > len(w.b) {
			return nil, sa.DropTruncated
		}
		n = (int(w.b[off+1]) + 1) * 8
	}
	if off+n > len(w.b) {
		return nil, sa.DropTruncated
	}
	h := w.b[off : off+n]
	if nh == iana.ProtoFragment {
		// RFC 8200, Section 4.5: offset in 8-byte units in the top 13
		// bits, M flag in bit 0.
		v := binary.BigEndian.Uint16(h[2:])
		w.Fragment, w.FragOff, w.MoreFragments = true, v>>3, v&1 != 0
	}
	w.NextHeader, w.NextHeaderOff, w.Off = h[0], off, off+n
	return h, nil
}
