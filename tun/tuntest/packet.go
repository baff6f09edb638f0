package tuntest

import (
	"encoding/binary"
	"net/netip"

	"github.com/goipsec/goipsec/iana"
)

// Checksum returns the Internet checksum of b folded into the running sum
// initial (RFC 1071, Section 4.1), not yet complemented.
func checksum(b []byte, initial uint32) uint32 {
	s := initial
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// UDP returns an IPv4 or IPv6 packet (by the family of src) carrying a UDP
// datagram with a valid checksum (RFC 768; RFC 8200, Section 8.1), for use
// as test traffic. src and dst must be of the same family.
func UDP(src, dst netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	return IP(src.Addr(), dst.Addr(), 17, udp)
}

// IP returns an IPv4 (RFC 791) or IPv6 (RFC 8200) packet from src to dst with
// the given protocol and payload. For UDP (17), TCP (6) and ICMPv6 (58) it
// fills in the transport checksum, for ICMP (1) the ICMP checksum.
func IP(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	var p []byte
	var hl int
	if src.Is4() {
		hl = 20
		p = make([]byte, hl+len(payload))
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		p[8] = 64
		p[9] = proto
		s, d := src.As4(), dst.As4()
		copy(p[12:16], s[:])
		copy(p[16:20], d[:])
		binary.BigEndian.PutUint16(p[10:], ^fold(checksum(p[:20], 0)))
	} else {
		hl = 40
		p = make([]byte, hl+len(payload))
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
		p[6] = proto
		p[7] = 64
		s, d := src.As16(), dst.As16()
		copy(p[8:24], s[:])
		copy(p[24:40], d[:])
	}
	copy(p[hl:], payload)
	l4 := p[hl:]
	var off int
	switch proto {
	case 17:
		off = 6
	case 6:
		off = 16
	case 58:
		off = 2
	case 1:
		if len(l4) >= 4 {
			l4[2], l4[3] = 0, 0
			binary.BigEndian.PutUint16(l4[2:], ^fold(checksum(l4, 0)))
		}
		return p
	default:
		return p
	}
	if len(l4) < off+2 {
		return p
	}
	l4[off], l4[off+1] = 0, 0
	// Pseudo-header: RFC 768 (IPv4), RFC 8200 Section 8.1 (IPv6).
	var s uint32
	if src.Is4() {
		s = checksum(p[12:20], 0)
	} else {
		s = checksum(p[8:40], 0)
	}
	s += uint32(proto) + uint32(len(l4))
	c := ^fold(checksum(l4, s))
	if c == 0 && proto == iana.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
	return p
}
