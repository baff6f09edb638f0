package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv4MinHeaderLen is the length of an IPv4 header without options
// (RFC 791, Section 3.1: IHL 5).
const IPv4MinHeaderLen = 20

// IPv4 header flags, as returned by IPv4.Flags (RFC 791, Section 3.1).
const (
	IPv4FlagMF = 1 << 0 // more fragments
	IPv4FlagDF = 1 << 1 // don't fragment
)

// IPv4 is a view of an IPv4 header at the start of a packet (RFC 791,
// Section 3.1). The accessors read and write the bytes in place; they expect
// the slice to hold at least IPv4MinHeaderLen bytes (Options needs HeaderLen
// bytes) and panic otherwise, as a slice index does. Use Decode to validate
// untrusted bytes first.
type IPv4 []byte

// Version returns the version field (4 for a valid header).
func (b IPv4) Version() uint8 { return b[0] >> 4 }

// IHL returns the Internet Header Length field, in 32-bit words.
func (b IPv4) IHL() uint8 { return b[0] & 0x0f }

// HeaderLen returns the header length in bytes (IHL*4).
func (b IPv4) HeaderLen() int { return int(b[0]&0x0f) * 4 }

// TOS returns the Type of Service byte: the DSCP and ECN bits (RFC 2474, RFC 3168).
func (b IPv4) TOS() uint8 { return b[1] }

// TotalLength returns the Total Length field: header plus payload, in bytes.
func (b IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// ID returns the Identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[4:]) }

// Flags returns the three flag bits (IPv4FlagDF, IPv4FlagMF).
func (b IPv4) Flags() uint8 { return b[6] >> 5 }

// FragOff returns the Fragment Offset field in 8-byte units.
func (b IPv4) FragOff() uint16 { return binary.BigEndian.Uint16(b[6:]) & 0x1fff }

// TTL returns the Time to Live field.
func (b IPv4) TTL() uint8 { return b[8] }

// Protocol returns the Protocol field (an IANA IP protocol number).
func (b IPv4) Protocol() uint8 { return b[9] }

// Checksum returns the Header Checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[10:]) }

// Src returns the source address. It does not allocate.
func (b IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(b[12:16])) }

// Dst returns the destination address. It does not allocate.
func (b IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(b[16:20])) }

// Options returns the options, the bytes between the fixed header and HeaderLen.
func (b IPv4) Options() []byte { return b[IPv4MinHeaderLen:b.HeaderLen()] }

// Payload returns the bytes after the header up to TotalLength. It expects
// a header that Decode accepted.
func (b IPv4) Payload() []byte { return b[b.HeaderLen():b.TotalLength()] }

// SetTOS sets the Type of Service byte. The checksum is not updated.
func (b IPv4) SetTOS(tos uint8) { b[1] = tos }

// SetTotalLength sets the Total Length field. The checksum is not updated.
func (b IPv4) SetTotalLength(n uint16) { binary.BigEndian.PutUint16(b[2:], n) }

// SetID sets the Identification field. The checksum is not updated.
func (b IPv4) SetID(id uint16) { binary.BigEndian.PutUint16(b[4:], id) }

// SetFlagsFragOff sets the flags (IPv4FlagDF, IPv4FlagMF) and the fragment
// offset in 8-byte units. The checksum is not updated.
func (b IPv4) SetFlagsFragOff(flags uint8, off uint16) {
	binary.BigEndian.PutUint16(b[6:], uint16(flags&7)<<13|off&0x1fff)
}

// SetTTL sets the Time to Live field. The checksum is not updated.
func (b IPv4) SetTTL(ttl uint8) { b[8] = ttl }

// SetProtocol sets the Protocol field. The checksum is not updated.
func (b IPv4) SetProtocol(p uint8) { b[9] = p }

// SetChecksum sets the Header Checksum field.
func (b IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[10:], c) }

// SetSrc sets the source address, which must be an IPv4 address (As4 panics
// otherwise). The checksum is not updated.
func (b IPv4) SetSrc(a netip.Addr) { *(*[4]byte)(b[12:16]) = a.As4() }

// SetDst sets the destination address, which must be an IPv4 address. The
// checksum is not updated.
func (b IPv4) SetDst(a netip.Addr) { *(*[4]byte)(b[16:20]) = a.As4() }

// ComputeChecksum returns the header checksum that the header should carry:
// the Internet checksum of the HeaderLen bytes with the checksum field taken
// as zero (RFC 791, Section 3.1).
func (b IPv4) ComputeChecksum() uint16 {
	h := b[:b.HeaderLen()]
	// Sum around the checksum field at bytes 10 and 11.
	return ^fold(sum(h[12:], sum(h[:10], 0)))
}

// UpdateChecksum recomputes the header checksum and stores it.
func (b IPv4) UpdateChecksum() { b.SetChecksum(b.ComputeChecksum()) }

// IsChecksumValid reports whether the header checksum is correct.
func (b IPv4) IsChecksumValid() bool { return Checksum(b[:b.HeaderLen()], 0) == 0 }

// PutIPv4Header writes a 20-byte IPv4 header without options into b, as the
// outer header of a tunnel-mode packet (RFC 4301, Section 5.1.2.1): version 4,
// IHL 5, TOS 0, the given total length, identification, TTL and protocol,
// flags and fragment offset 0, and a correct header checksum. src and dst must
// be IPv4 addresses, totalLen must fit in 16 bits, and b must hold at least
// IPv4MinHeaderLen bytes.
//
// PutOuterHeader and PutTunnelHeader write the header with the inner
// header's DSCP and ECN bits (RFC 4301, Section 5.1.2.1; RFC 6040) and, for
// PutTunnelHeader, DF (RFC 4301, Section 8.1).
func PutIPv4Header(b []byte, src, dst netip.Addr, proto uint8, totalLen int, ttl uint8, id uint16) {
	putIPv4Header(b, src, dst, proto, totalLen, ttl, id, 0, 0)
}

// putIPv4Header is PutIPv4Header with the TOS byte tos and the flags
// (IPv4FlagDF) flags, all covered by the one checksum computation.
func putIPv4Header(b []byte, src, dst netip.Addr, proto uint8, totalLen int, ttl uint8, id uint16, tos, flags uint8) {
	h := IPv4(b[:IPv4MinHeaderLen])
	h[0] = 4<<4 | 5
	h[1] = tos
	h.SetTotalLength(uint16(totalLen))
	h.SetID(id)
	h.SetFlagsFragOff(flags, 0)
	h[8] = ttl
	h[9] = proto
	h[10], h[11] = 0, 0
	h.SetSrc(src)
	h.SetDst(dst)
	h.SetChecksum(Checksum(h, 0))
}
