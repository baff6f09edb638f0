package ah

import (
	"crypto/subtle"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// auth computes the ICV of the IP packet p, whose AH header (with an ICV of
// e.icvLen bytes) starts at ahOff, over the packet with its mutable fields
// zeroed (RFC 4302, Section 3.3.3.1). With verify false it writes the ICV
// into the ICV field (which the caller has zeroed, padding included); with
// verify true it compares it with the ICV found there and returns
// sa.DropBadICV on a mismatch. In both cases the mutable header fields are
// restored before it returns. The caller has checked that ahOff <= maxHdrLen
// and that the AH header with its ICV lies inside p. The walk over the
// IPv6 extension headers must end at ahOff, where the caller's split put
// AH, or the packet is DropMalformed.
func (e *engine) auth(p []byte, v6 bool, ahOff int, seqHi uint32, verify bool) sa.Drop {
	var saved [maxHdrLen]byte
	var recv [maxICVLen]byte
	hdr := p[:ahOff]
	copy(saved[:], hdr)
	var d sa.Drop
	if v6 {
		_, _, d = walk6(p, ahOff, true)
	} else {
		d = options4(hdr, true)
	}
	if d != sa.DropNone {
		copy(hdr, saved[:ahOff])
		return d
	}
	// RFC 4302, Section 3.3.3.1: the ICV field is zeroed for the computation;
	// padding after it is included as sent (Section 3.3.3.2.1).
	icv := p[ahOff+HeaderLen : ahOff+HeaderLen+e.icvLen]
	if verify {
		copy(recv[:], icv)
		clear(icv)
	}
	e.integ.Sum(icv, p, seqHi, e.esn)
	copy(hdr, saved[:ahOff])
	if verify && subtle.ConstantTimeCompare(icv, recv[:e.icvLen]) != 1 {
		return sa.DropBadICV
	}
	return sa.DropNone
}

// ipv4Immutable reports whether IPv4 option type t is included in the ICV as
// it is. RFC 4302, Appendix A1 lists these as IMMUTABLE; every other option,
// listed as mutable or experimental or not listed at all, is zeroed in its
// entirety, which is the only safe treatment of an option whose behaviour in
// transit is unknown.
func ipv4Immutable(t uint8) bool {
	switch t {
	case 0, // End of Options List
		1,   // No Operation
		130, // Security (RFC 1108)
		133, // Extended Security (RFC 1108)
		134, // Commercial Security
		148, // Router Alert (RFC 2113)
		149: // Sender Directed Multi-Destination Delivery (RFC 1770)
		return true
	}
	return false
}

// IPv4 source route options (RFC 791, Section 3.1).
const (
	optLSRR = 131
	optSSRR = 137
)

// options4 checks the options of the IPv4 header h (h is exactly the
// header, options included) and, with mute, zeroes the mutable fields: TOS,
// flags, fragment offset, TTL and header checksum (RFC 4302, Section
// 3.3.3.1.1.1), and every mutable option, type and length included (Section
// 3.3.3.1.1.2, Appendix A1). With a loose or strict source route that has
// not been completed, the destination address is replaced by the last
// address of the route, the address the packet will have at its final
// destination (Section 3.3.3.1.1.1: "mutable but predictable").
func options4(h []byte, mute bool) sa.Drop {
	if mute {
		h[1] = 0            // TOS (DSCP, ECN)
		h[6], h[7] = 0, 0   // flags, fragment offset
		h[8] = 0            // TTL
		h[10], h[11] = 0, 0 // header checksum
	}
	for i := ipv4HeaderLen; i < len(h); {
		t := h[i]
		if t == 0 {
			// End of Options List: the bytes after it are part of the
			// header as sent and are included (Appendix A1, note on EOL).
			break
		}
		if t == 1 {
			i++
			continue
		}
		if i+1 >= len(h) {
			return sa.DropMalformed
		}
		l := int(h[i+1])
		if l < 2 || i+l > len(h) {
			return sa.DropMalformed
		}
		if t == optLSRR || t == optSSRR {
			// Type, length, pointer, then route data of 4-byte
			// addresses (RFC 791, Section 3.1).
			if l < 7 || (l-3)%4 != 0 {
				return sa.DropMalformed
			}
			if ptr := int(h[i+2]); mute && ptr <= l {
				// RFC 791: the route is complete when the pointer
				// exceeds the length; until then the final destination
				// is the last address of the route.
				copy(h[16:20], h[i+l-4:i+l])
			}
		}
		if mute && !ipv4Immutable(t) {
			clear(h[i : i+l])
		}
		i += l
	}
	return sa.DropNone
}

// walk6 follows the IPv6 extension header chain of p (with packet.IPv6Ext,
// the module's one walker) from the base header either to the AH header
// (until < 0) or to offset until, and returns that offset and the offset of
// the Next Header byte that names the header there. It accepts Hop-by-Hop
// Options (right after the base header only, RFC 8200, Section 4.1),
// Destination Options and Routing headers. A Fragment header means a packet
// that is not whole, which AH neither protects nor accepts (RFC 4302,
// Sections 3.3.4 and 3.4.1): sa.DropMalformed, as any other header before
// AH. A Routing header with Segments Left other than zero would need its
// addresses put in the order they will have at the receiver (Appendix A2),
// which this package does not do: sa.DropUnsupported, as for more than
// maxExtLen bytes of extension headers.
//
// With mute it also zeroes the mutable fields: traffic class, flow label and
// hop limit (Section 3.3.3.1.2.1) and the data of every option whose type has
// the "may change en route" bit set (Section 3.3.3.1.2.2, RFC 8200,
// Section 4.2). The caller has checked that len(p) >= ipv6HeaderLen.
func walk6(p []byte, until int, mute bool) (off, nhOff int, d sa.Drop) {
	if mute {
		p[0] &= 0xf0 // version kept, traffic class high bits zeroed
		p[1], p[2], p[3] = 0, 0, 0
		p[7] = 0 // hop limit
	}
	w := packet.WalkIPv6(p)
	for {
		if until < 0 && w.NextHeader == iana.ProtoAH || w.Off == until {
			return w.Off, w.NextHeaderOff, sa.DropNone
		}
		if until >= 0 && w.Off > until || w.NextHeader == iana.ProtoFragment {
			return 0, 0, sa.DropMalformed
		}
		nh := w.NextHeader
		h, err := w.Skip()
		if err != nil {
			return 0, 0, err.(sa.Drop)
		}
		if w.Off-ipv6HeaderLen > maxExtLen {
			return 0, 0, sa.DropUnsupported
		}
		if nh == iana.ProtoRouting {
			if h[3] != 0 { // Segments Left
				return 0, 0, sa.DropUnsupported
			}
		} else if d := options6(h[2:], mute); d != sa.DropNone {
			return 0, 0, d
		}
	}
}

// options6 checks the TLV-encoded options of a Hop-by-Hop or Destination
// Options header (RFC 8200, Section 4.2) and, with mute, zeroes the data of
// those whose type has the 0x20 bit set ("Option Data may change en route";
// RFC 4302, Section 3.3.3.1.2.2). Type and length stay as they are.
func options6(b []byte, mute bool) sa.Drop {
	for i := 0; i < len(b); {
		t := b[i]
		if t == 0 { // Pad1
			i++
			continue
		}
		if i+2 > len(b) {
			return sa.DropMalformed
		}
		end := i + 2 + int(b[i+1])
		if end > len(b) {
			return sa.DropMalformed
		}
		if mute && t&0x20 != 0 {
			clear(b[i+2 : end])
		}
		i = end
	}
	return sa.DropNone
}
