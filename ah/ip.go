package ah

import (
	"encoding/binary"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// IP header lengths without options or extension headers.
const (
	ipv4HeaderLen = packet.IPv4MinHeaderLen
	ipv6HeaderLen = packet.IPv6HeaderLen
)

// ipLength returns the length that the IP header at the start of b declares
// for its packet (IPv4 total length, or 40 plus the IPv6 payload length), the
// header length of an IPv4 packet (0 for IPv6) and whether it is IPv6. It
// fails with DropTruncated when b is shorter than the header or the declared
// length and with DropMalformed for anything that is not a plausible IPv4 or
// IPv6 header. IPv6 jumbograms (payload length 0, RFC 2675) are not
// supported and give DropMalformed, as in package esp.
func ipLength(b []byte) (n, ihl int, v6 bool, d sa.Drop) {
	if len(b) == 0 {
		return 0, 0, false, sa.DropTruncated
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4HeaderLen {
			return 0, 0, false, sa.DropTruncated
		}
		ihl = int(b[0]&0x0f) * 4
		n = int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < ipv4HeaderLen || n < ihl {
			return 0, 0, false, sa.DropMalformed
		}
		if n > len(b) {
			return 0, 0, false, sa.DropTruncated
		}
		return n, ihl, false, sa.DropNone
	case 6:
		if len(b) < ipv6HeaderLen {
			return 0, 0, false, sa.DropTruncated
		}
		pl := int(binary.BigEndian.Uint16(b[4:6]))
		if pl == 0 {
			return 0, 0, false, sa.DropMalformed
		}
		n = ipv6HeaderLen + pl
		if n > len(b) {
			return 0, 0, false, sa.DropTruncated
		}
		return n, 0, true, sa.DropNone
	}
	return 0, 0, false, sa.DropMalformed
}

// ipv4Fragment reports whether the IPv4 header h is that of a fragment: More
// Fragments set or a non-zero offset. AH is applied to and removed from whole
// datagrams only (RFC 4302, Sections 3.3.4 and 3.4.1).
func ipv4Fragment(h []byte) bool {
	return binary.BigEndian.Uint16(h[6:8])&0x3fff != 0
}

// innerProto returns the tunnel-mode next header for the inner packet p
// (RFC 4302, Section 3.1.2): 4 for IPv4, 41 for IPv6.
func innerProto(v6 bool) uint8 {
	if v6 {
		return iana.ProtoIPv6
	}
	return iana.ProtoIPv4
}

// ipTotal returns the packet length that the IP header at the start of b
// (version 4 or 6, at least its fixed part) declares.
func ipTotal(b []byte, version uint8) int {
	if version == 6 {
		return ipv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
	}
	return int(binary.BigEndian.Uint16(b[2:4]))
}
