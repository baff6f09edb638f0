package esp

import (
	"encoding/binary"

	"github.com/goipsec/goipsec/sa"
)

// ipLength returns the length that the IP header at the start of b declares
// for its packet (IPv4 total length, or the IPv6 fixed header plus payload
// length) and the next-header value of the encapsulation that carries such a
// packet (4 or 41). It fails with DropTruncated when b is shorter than the
// header or than the declared length, and with DropMalformed for anything
// that is not a plausible IPv4 or IPv6 header. IPv6 jumbograms (payload
// length 0, RFC 2675) are not supported and are reported as DropMalformed.
func ipLength(b []byte) (n int, proto uint8, d sa.Drop) {
	if len(b) == 0 {
		return 0, 0, sa.DropTruncated
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4HeaderLen {
			return 0, 0, sa.DropTruncated
		}
		ihl := int(b[0]&0x0f) * 4
		n = int(binary.BigEndian.Uint16(b[2:]))
		if ihl < ipv4HeaderLen || n < ihl {
			return 0, 0, sa.DropMalformed
		}
		if n > len(b) {
			return 0, 0, sa.DropTruncated
		}
		return n, protoIPv4, sa.DropNone
	case 6:
		if len(b) < ipv6HeaderLen {
			return 0, 0, sa.DropTruncated
		}
		pl := int(binary.BigEndian.Uint16(b[4:]))
		if pl == 0 {
			return 0, 0, sa.DropMalformed
		}
		n = ipv6HeaderLen + pl
		if n > len(b) {
			return 0, 0, sa.DropTruncated
		}
		return n, protoIPv6, sa.DropNone
	}
	return 0, 0, sa.DropMalformed
}
