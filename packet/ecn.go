package packet

import "github.com/goipsec/goipsec/sa"

// DSCP and ECN across tunnels: the encapsulator copies the inner header's
// DSCP and ECN bits into the outer header, and the decapsulator combines
// the outer ECN field into the inner header (RFC 6040's normal mode; RFC
// 4301, Section 5.1.2.1). Both halves must be in place together: an ECN
// capable outer header whose congestion marks are not propagated at the
// far end hides congestion from the endpoints (RFC 6040, Section 4).

// ECN codepoints: the low two bits of the IPv4 TOS byte or the IPv6
// Traffic Class (RFC 3168, Section 5).
const (
	ECNNotECT = 0b00 // not ECN-capable transport
	ECNECT1   = 0b01 // ECN-capable transport, ECT(1)
	ECNECT0   = 0b10 // ECN-capable transport, ECT(0)
	ECNCE     = 0b11 // congestion experienced
	ECNMask   = 0b11
)

// TOS returns the DSCP and ECN bits of the IP header at the start of p, by
// its version nibble: the IPv6 Traffic Class for version 6, else the IPv4
// Type of Service byte (RFC 2474, Section 3; RFC 3168, Section 5). p must
// hold the fixed header of its version.
func TOS(p []byte) uint8 {
	if p[0]>>4 == 6 {
		return IPv6(p).TrafficClass()
	}
	return IPv4(p).TOS()
}

// SetTOS sets the DSCP and ECN bits of the IP header at the start of p, by
// its version nibble as TOS reads them, and updates an IPv4 header
// checksum incrementally (RFC 1624, Equation 3); IPv6 has none. p must hold
// the fixed header of its version.
func SetTOS(p []byte, tos uint8) {
	if p[0]>>4 == 6 {
		IPv6(p).SetTrafficClass(tos)
		return
	}
	h := IPv4(p)
	old := uint16(p[0])<<8 | uint16(h.TOS())
	h.SetTOS(tos)
	h.SetChecksum(updateChecksum(h.Checksum(), old, uint16(p[0])<<8|uint16(tos)))
}

// DecapECN applies RFC 6040, Section 4.2 (normal mode, Figure 4) at a
// tunnel's egress: it combines the ECN field of the outer header, the low
// bits of outerTOS (the outer TOS or Traffic Class byte, as TOS returns
// it), into the inner IP packet at the start of inner, in place:
//
//   - outer CE over an inner ECT(0) or ECT(1): the inner becomes CE;
//   - outer CE over a Not-ECT inner: the packet must be dropped (the
//     congestion signal cannot be passed on), and DecapECN returns
//     sa.DropECN with the packet unchanged;
//   - outer ECT(1) over an inner ECT(0): the inner becomes ECT(1);
//   - anything else leaves the inner packet as it is.
//
// The outer DSCP is not copied inward (RFC 4301, Section 5.1.2.1: the
// default for the decapsulator). The IPv4 header checksum is updated
// incrementally (RFC 1624, Equation 3); IPv6 has none. An inner packet
// shorter than the fixed header of its version is left unchanged (the
// caller's decoder rejects it). It allocates nothing.
func DecapECN(outerTOS uint8, inner []byte) error {
	// Not-ECT (00) and ECT(0) (10) outer headers change nothing; CE (11)
	// and ECT(1) (01) have the low bit set. This much inlines.
	if outerTOS&ECNECT1 == 0 {
		return nil
	}
	return decapECN(outerTOS&ECNMask, inner)
}

// decapECN is DecapECN for an outer ECN field o of CE or ECT(1).
func decapECN(o uint8, inner []byte) error {
	if len(inner) == 0 {
		return nil
	}
	v6 := inner[0]>>4 == 6
	if v6 && len(inner) < IPv6HeaderLen || !v6 && len(inner) < IPv4MinHeaderLen {
		return nil
	}
	tos := TOS(inner)
	var ecn uint8
	switch i := tos & ECNMask; {
	case o == ECNCE && i == ECNNotECT:
		return sa.DropECN
	case o == ECNCE:
		ecn = ECNCE
	case i == ECNECT0: // outer ECT(1)
		ecn = ECNECT1
	default:
		return nil
	}
	if ntos := tos&^ECNMask | ecn; ntos != tos {
		SetTOS(inner, ntos)
	}
	return nil
}

// updateChecksum returns the Internet checksum hc of data in which one
// 16-bit word changed from old to new: RFC 1624, Equation 3,
// HC' = ~(~HC + ~m + m').
func updateChecksum(hc, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}
