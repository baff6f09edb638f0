package esp

import (
	"encoding/binary"

	"github.com/goipsec/goipsec/iana"
)

// UDP encapsulation of ESP for NAT traversal (RFC 3948).
//
// The packet engines in this package work on IP packets. With UDP
// encapsulation the data plane strips or adds the UDP header around the ESP
// packet and uses ClassifyUDP to tell ESP from IKE and keepalives on port
// 4500. Tunnel mode needs nothing more. In transport mode a NAT changes the
// addresses that the inner TCP or UDP checksum covers; set Config.EncapUDP on
// the inbound SA and Open recomputes those checksums after decapsulation
// (RFC 3948, Section 3.1.2). The outbound side needs no such step: the
// receiver fixes the checksum.

// NATTPort is the UDP port of IKE and UDP-encapsulated ESP once NAT is
// detected (RFC 3948, Section 2; RFC 7296, Section 2.23).
const NATTPort = iana.PortNATT

// UDPHeaderLen is the length of a UDP header.
const UDPHeaderLen = 8

// KeepaliveByte is the single byte of a NAT-keepalive packet
// (RFC 3948, Section 2.3).
const KeepaliveByte = 0xFF

// NonESPMarkerLen is the length of the non-ESP marker (RFC 3948, Section
// 2.2).
const NonESPMarkerLen = iana.NonESPMarkerLen

// NonESPMarker returns the non-ESP marker: the four zero bytes that precede
// an IKE message on port 4500, where an ESP packet would carry its SPI
// (RFC 3948, Section 2.2).
func NonESPMarker() [NonESPMarkerLen]byte { return [NonESPMarkerLen]byte{} }

// UDPKind is what a UDP payload received on port 4500 carries.
type UDPKind uint8

// UDP payload kinds, RFC 3948, Section 2.
const (
	UDPInvalid   UDPKind = iota // none of the below: drop it
	UDPESP                      // an ESP packet: non-zero SPI, at least an ESP header
	UDPIKE                      // an IKE message after the non-ESP marker
	UDPKeepalive                // a NAT-keepalive: the single byte 0xFF
)

func (k UDPKind) String() string {
	switch k {
	case UDPESP:
		return "esp"
	case UDPIKE:
		return "ike"
	case UDPKeepalive:
		return "keepalive"
	}
	return "invalid"
}

// ClassifyUDP says what the UDP payload p received on port 4500 is
// (RFC 3948, Section 2): exactly one byte 0xFF is a NAT-keepalive
// (Section 2.3); four zero bytes, the non-ESP marker, start an IKE message
// (Section 2.2), which the IKE parser then checks; a non-zero SPI followed by
// at least the sequence number is ESP (Section 2.1). Anything else is
// invalid.
func ClassifyUDP(p []byte) UDPKind {
	switch {
	case len(p) == 1 && p[0] == KeepaliveByte:
		return UDPKeepalive
	case len(p) < NonESPMarkerLen:
		return UDPInvalid
	case binary.BigEndian.Uint32(p) == 0:
		return UDPIKE
	case len(p) >= HeaderLen:
		return UDPESP
	}
	return UDPInvalid
}

// PutUDPHeader writes a UDP header into b[:8]: source and destination ports
// and length (header plus payload, at most 65535). The checksum is zero, as
// RFC 3948, Section 2.1 says it SHOULD be for ESP in UDP over IPv4. Over IPv6
// a zero UDP checksum is not allowed (RFC 8200, Section 8.1): the caller must
// compute and store it in b[6:8]. b must be at least 8 bytes long.
func PutUDPHeader(b []byte, sport, dport uint16, length int) {
	_ = b[7]
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(length))
	b[6], b[7] = 0, 0
}
