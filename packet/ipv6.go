package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv6HeaderLen is the length of the fixed IPv6 header (RFC 8200, Section 3).
const IPv6HeaderLen = 40

// IPv6 is a view of the fixed IPv6 header at the start of a packet (RFC 8200,
// Section 3). The accessors read and write the bytes in place; they expect the
// slice to hold at least IPv6HeaderLen bytes and panic otherwise, as a slice
// index does. Use Decode to validate untrusted bytes first.
type IPv6 []byte

// Version returns the version field (6 for a valid header).
func (b IPv6) Version() uint8 { return b[0] >> 4 }

// TrafficClass returns the Traffic Class byte: the DSCP and ECN bits.
func (b IPv6) TrafficClass() uint8 { return b[0]<<4 | b[1]>>4 }

// FlowLabel returns the 20-bit Flow Label.
func (b IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(b[0:]) & 0xfffff }

// PayloadLength returns the Payload Length field: the bytes after the fixed
// header, extension headers included.
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[4:]) }

// NextHeader returns the Next Header field.
func (b IPv6) NextHeader() uint8 { return b[6] }

// HopLimit returns the Hop Limit field.
func (b IPv6) HopLimit() uint8 { return b[7] }

// Src returns the source address. It does not allocate.
func (b IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(b[8:24])) }

// Dst returns the destination address. It does not allocate.
func (b IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(b[24:40])) }

// SetTrafficClass sets the Traffic Class byte.
func (b IPv6) SetTrafficClass(tc uint8) {
	b[0] = b[0]&0xf0 | tc>>4
	b[1] = b[1]&0x0f | tc<<4
}

// SetFlowLabel sets the 20-bit Flow Label.
func (b IPv6) SetFlowLabel(l uint32) {
	v := binary.BigEndian.Uint32(b[0:])
	binary.BigEndian.PutUint32(b[0:], v&^0xfffff|l&0xfffff)
}

// SetPayloadLength sets the Payload Length field.
func (b IPv6) SetPayloadLength(n uint16) { binary.BigEndian.PutUint16(b[4:], n) }

// SetNextHeader sets the Next Header field.
func (b IPv6) SetNextHeader(nh uint8) { b[6] = nh }

// SetHopLimit sets the Hop Limit field.
func (b IPv6) SetHopLimit(h uint8) { b[7] = h }

// SetSrc sets the source address. An IPv4 address is written IPv4-mapped.
func (b IPv6) SetSrc(a netip.Addr) { *(*[16]byte)(b[8:24]) = a.As16() }

// SetDst sets the destination address. An IPv4 address is written IPv4-mapped.
func (b IPv6) SetDst(a netip.Addr) { *(*[16]byte)(b[24:40]) = a.As16() }

// PutIPv6Header writes a 40-byte IPv6 header into b, as the outer header of a
// tunnel-mode packet (RFC 4301, Section 5.1.2.2; RFC 2473, Section 3): version
// 6, traffic class and flow label 0, the given payload length, next header and
// hop limit. payloadLen must fit in 16 bits (no jumbograms) and b must hold
// at least IPv6HeaderLen bytes. PutOuterHeader and PutTunnelHeader write
// it with the inner header's DSCP and ECN bits (RFC 6040).
func PutIPv6Header(b []byte, src, dst netip.Addr, nextHdr uint8, payloadLen int, hopLimit uint8) {
	h := IPv6(b[:IPv6HeaderLen])
	binary.BigEndian.PutUint32(h[0:], 6<<28)
	h.SetPayloadLength(uint16(payloadLen))
	h[6] = nextHdr
	h[7] = hopLimit
	h.SetSrc(src)
	h.SetDst(dst)
}
