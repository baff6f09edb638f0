// Package packet holds zero-allocation views and helpers over IP packets:
// typed IPv4 and IPv6 header views in the style of gVisor's header package,
// the Internet checksum (RFC 1071), a strict decoder that extracts what the
// SPD needs to classify a packet (RFC 4301, Section 4.4.1.1), and the offsets
// at which transport-mode ESP and AH insert their headers.
//
// Nothing here allocates. Functions that parse untrusted bytes (Decode,
// TransportSplit, FixTransportChecksum) never panic; they return an sa.Drop
// reason as their error. The header views and the Put functions index the
// slice directly and expect the caller to have checked its length, as a slice
// index expression does.
package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Checksum returns the Internet checksum of b (RFC 1071): the one's complement
// of the one's complement sum of b taken as big-endian 16-bit words, with an
// odd final byte padded with a zero byte, and initial (a partial sum such as
// PseudoHeaderSum returns) added in. The result is the value to store in a
// checksum field that was zero while summing; over data that already holds a
// correct checksum it is 0.
//
// It sums 8 bytes at a time into a 64-bit accumulator with end-around carry,
// which RFC 1071, Section 2 (B) (byte order independence) and (C) (parallel
// summation) allow.
func Checksum(b []byte, initial uint32) uint16 {
	return ^fold(sum(b, uint64(initial)))
}

// sum adds b, as big-endian 16-bit words, to acc with end-around carry and
// returns the unfolded 64-bit one's complement sum.
func sum(b []byte, acc uint64) uint64 {
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), 0)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), c)
		acc += c // cannot overflow: a carry leaves acc <= 2^64-2.
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		acc += c
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b)), 0)
		acc += c
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b)), 0)
		acc += c
		b = b[2:]
	}
	if len(b) == 1 {
		acc, c = bits.Add64(acc, uint64(b[0])<<8, 0)
		acc += c
	}
	return acc
}

// fold reduces a 64-bit one's complement sum to 16 bits.
func fold(acc uint64) uint16 {
	s := (acc >> 32) + (acc & 0xffffffff) // at most 33 bits
	s = (s >> 32) + (s & 0xffffffff)      // at most 32 bits
	s = (s >> 16) + (s & 0xffff)          // at most 17 bits
	s = (s >> 16) + (s & 0xffff)          // 16 bits
	return uint16(s)
}

// PseudoHeaderSum returns the unfolded one's complement sum of the pseudo
// header that TCP, UDP and ICMPv6 checksums cover: for IPv4 (RFC 793,
// Section 3.1; RFC 768) the source and destination addresses, a zero byte,
// the protocol and the 16-bit upper-layer length; for IPv6 (RFC 8200,
// Section 8.1) the addresses, the 32-bit upper-layer length and the next
// header. Pass the result as the initial value of Checksum. src and dst must
// be of the same family; an IPv4-mapped IPv6 address counts as IPv6.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var s uint32
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = uint32(a[0])<<8 | uint32(a[1])
		s += uint32(a[2])<<8 | uint32(a[3])
		s += uint32(b[0])<<8 | uint32(b[1])
		s += uint32(b[2])<<8 | uint32(b[3])
	} else {
		a, b := src.As16(), dst.As16()
		for i := 0; i < 16; i += 2 {
			s += uint32(a[i])<<8 | uint32(a[i+1])
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	// At most 16 words of 0xffff plus the three below: far below 2^32.
	s += uint32(proto)
	s += uint32(length>>16)&0xffff + uint32(length)&0xffff
	return s
}
