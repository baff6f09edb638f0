// Package iana holds the IANA registry numbers that IPsec and IKEv2 use:
// IP protocol numbers, the IKE and NAT-T ports, IKEv2 transform IDs (RFC 7296, Section 3.3.2) and the
// names strongSwan gives them. It has no dependencies and no behaviour.
package iana

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
const (
	ProtoHopOpts  = 0
	ProtoICMP     = 1
	ProtoIPv4     = 4 // IPv4 encapsulation: tunnel-mode ESP/AH next header.
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoDCCP     = 33
	ProtoIPv6     = 41 // IPv6 encapsulation.
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoGRE      = 47
	ProtoESP      = 50 // RFC 4303
	ProtoAH       = 51 // RFC 4302
	ProtoICMPv6   = 58
	ProtoNoNext   = 59 // RFC 4303, Section 2.6: dummy (TFC) packet.
	ProtoDstOpts  = 60
	ProtoSCTP     = 132
	ProtoMobility = 135
	ProtoUDPLite  = 136
)

// UDP ports of IKE (IANA "Service Name and Transport Protocol Port Number
// Registry").
const (
	// PortIKE is the port of IKE messages before NAT detection (RFC 7296,
	// Section 2).
	PortIKE = 500
	// PortNATT is the port of IKE after NAT detection and of ESP in UDP
	// (RFC 3948, Section 2; RFC 7296, Section 2.23).
	PortNATT = 4500
)

// NonESPMarkerLen is the length of the non-ESP marker, the four zero bytes
// that precede an IKE message on PortNATT where an ESP packet would carry
// its SPI (RFC 3948, Section 2.2).
const NonESPMarkerLen = 4

// EncrID is an IKEv2 Transform Type 1 (Encryption Algorithm) ID.
type EncrID uint16

// Encryption transform IDs, RFC 7296 Section 3.3.2 and the IANA registry.
const (
	EncrNull             EncrID = 11 // RFC 2410
	EncrAESCBC           EncrID = 12 // RFC 3602
	EncrAESCTR           EncrID = 13 // RFC 3686
	EncrAESGCM8          EncrID = 18 // RFC 4106
	EncrAESGCM12         EncrID = 19 // RFC 4106
	EncrAESGCM16         EncrID = 20 // RFC 4106
	EncrNullAuthAESGMAC  EncrID = 21 // RFC 4543
	EncrChaCha20Poly1305 EncrID = 28 // RFC 7634
)

// IntegID is an IKEv2 Transform Type 3 (Integrity Algorithm) ID.
type IntegID uint16

// Integrity transform IDs.
const (
	IntegNone         IntegID = 0
	IntegHMACSHA1_96  IntegID = 2  // RFC 2404
	IntegAESXCBC96    IntegID = 5  // RFC 3566
	IntegHMACSHA2_256 IntegID = 12 // RFC 4868, 128-bit ICV
	IntegHMACSHA2_384 IntegID = 13 // RFC 4868, 192-bit ICV
	IntegHMACSHA2_512 IntegID = 14 // RFC 4868, 256-bit ICV
	IntegAES128GMAC   IntegID = 9  // RFC 4543 (AH)
	IntegAES256GMAC   IntegID = 11 // RFC 4543 (AH)
	IntegHMACSHA1_160 IntegID = 7
	IntegAESCMAC96    IntegID = 8 // RFC 4494
	IntegAES192GMAC   IntegID = 10
	IntegHMACMD5_96   IntegID = 1
	IntegDESMAC       IntegID = 3
	IntegKPDKMD5      IntegID = 4
	IntegHMACMD5_128  IntegID = 6
)

// PRFID is an IKEv2 Transform Type 2 (Pseudorandom Function) ID.
type PRFID uint16

// PRF transform IDs.
const (
	PRFHMACSHA1     PRFID = 2
	PRFAES128XCBC   PRFID = 4
	PRFHMACSHA2_256 PRFID = 5
	PRFHMACSHA2_384 PRFID = 6
	PRFHMACSHA2_512 PRFID = 7
)

// KEID is an IKEv2 Transform Type 4 (Key Exchange Method) ID.
type KEID uint16

// Key exchange method IDs.
const (
	KENone       KEID = 0
	KEMODP2048   KEID = 14
	KEMODP3072   KEID = 15
	KEMODP4096   KEID = 16
	KEECP256     KEID = 19
	KEECP384     KEID = 20
	KEECP521     KEID = 21
	KECurve25519 KEID = 31
	KEMLKEM512   KEID = 35
	KEMLKEM768   KEID = 36
	KEMLKEM1024  KEID = 37
)
