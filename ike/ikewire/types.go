package ikewire

import "strconv"

// ExchangeType is the Exchange Type field of the IKE header (RFC 7296,
// Section 3.1).
type ExchangeType uint8

// Exchange types.
const (
	IKE_SA_INIT      ExchangeType = 34 // RFC 7296, Section 1.2
	IKE_AUTH         ExchangeType = 35 // RFC 7296, Section 1.2
	CREATE_CHILD_SA  ExchangeType = 36 // RFC 7296, Section 1.3
	INFORMATIONAL    ExchangeType = 37 // RFC 7296, Section 1.4
	IKE_INTERMEDIATE ExchangeType = 43 // RFC 9242, Section 3
	IKE_FOLLOWUP_KE  ExchangeType = 44 // RFC 9370, Section 2.2.2
)

// String returns the RFC name of the exchange type, or its number.
func (x ExchangeType) String() string {
	switch x {
	case IKE_SA_INIT:
		return "IKE_SA_INIT"
	case IKE_AUTH:
		return "IKE_AUTH"
	case CREATE_CHILD_SA:
		return "CREATE_CHILD_SA"
	case INFORMATIONAL:
		return "INFORMATIONAL"
	case IKE_INTERMEDIATE:
		return "IKE_INTERMEDIATE"
	case IKE_FOLLOWUP_KE:
		return "IKE_FOLLOWUP_KE"
	}
	return "EXCHANGE(" + strconv.Itoa(int(x)) + ")"
}

// Flags is the Flags field of the IKE header (RFC 7296, Section 3.1). Bits
// other than I, V and R are reserved: cleared on receive, zero on send.
type Flags uint8

// Header flags.
const (
	FlagInitiator Flags = 0x08 // I: sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // V: the sender can speak a higher major version
	FlagResponse  Flags = 0x20 // R: this message is a response
	flagsDefined        = FlagInitiator | FlagVersion | FlagResponse
)

// PayloadType is an IKEv2 payload type (RFC 7296, Section 3.2).
type PayloadType uint8

// Payload types.
const (
	PayloadNone     PayloadType = 0  // no next payload
	PayloadSA       PayloadType = 33 // Security Association
	PayloadKE       PayloadType = 34 // Key Exchange
	PayloadIDi      PayloadType = 35 // Identification - Initiator
	PayloadIDr      PayloadType = 36 // Identification - Responder
	PayloadCERT     PayloadType = 37 // Certificate
	PayloadCERTREQ  PayloadType = 38 // Certificate Request
	PayloadAUTH     PayloadType = 39 // Authentication
	PayloadNonce    PayloadType = 40 // Nonce (Ni, Nr)
	PayloadNotify   PayloadType = 41 // Notify (N)
	PayloadDelete   PayloadType = 42 // Delete (D)
	PayloadVendorID PayloadType = 43 // Vendor ID (V)
	PayloadTSi      PayloadType = 44 // Traffic Selector - Initiator
	PayloadTSr      PayloadType = 45 // Traffic Selector - Responder
	PayloadSK       PayloadType = 46 // Encrypted and Authenticated
	PayloadCP       PayloadType = 47 // Configuration
	PayloadEAP      PayloadType = 48 // Extensible Authentication
	PayloadSKF      PayloadType = 53 // Encrypted and Authenticated Fragment, RFC 7383
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi",
	PayloadIDr: "IDr", PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ",
	PayloadAUTH: "AUTH", PayloadNonce: "Nonce", PayloadNotify: "N",
	PayloadDelete: "D", PayloadVendorID: "V", PayloadTSi: "TSi",
	PayloadTSr: "TSr", PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP",
	PayloadSKF: "SKF",
}

// String returns the RFC 7296 notation of the payload type, or its number.
func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return "PAYLOAD(" + strconv.Itoa(int(t)) + ")"
}

// ProtocolID identifies the protocol of a proposal, Notify or Delete payload
// (RFC 7296, Section 3.3.1).
type ProtocolID uint8

// Protocol IDs.
const (
	ProtoNone ProtocolID = 0 // Notify payloads that concern no SA
	ProtoIKE  ProtocolID = 1
	ProtoAH   ProtocolID = 2
	ProtoESP  ProtocolID = 3
)

// TransformType is the Transform Type of a transform substructure (RFC 7296,
// Section 3.3.2; RFC 9370, Section 2.2.1).
type TransformType uint8

// Transform types.
const (
	TransformENCR   TransformType = 1  // Encryption Algorithm
	TransformPRF    TransformType = 2  // Pseudorandom Function
	TransformINTEG  TransformType = 3  // Integrity Algorithm
	TransformKE     TransformType = 4  // Key Exchange Method (formerly D-H group)
	TransformESN    TransformType = 5  // Extended Sequence Numbers
	TransformADDKE1 TransformType = 6  // Additional Key Exchange 1, RFC 9370
	TransformADDKE7 TransformType = 12 // Additional Key Exchange 7, RFC 9370
)

// AttrKeyLength is the Key Length transform attribute type, the only
// attribute RFC 7296 defines (Section 3.3.5). Its value is in bits and it
// uses the TV format.
const AttrKeyLength uint16 = 14

// IDType is the ID Type of an IDi or IDr payload (RFC 7296, Section 3.5).
type IDType uint8

// Identification types.
const (
	ID_IPV4_ADDR   IDType = 1
	ID_FQDN        IDType = 2
	ID_RFC822_ADDR IDType = 3
	ID_IPV6_ADDR   IDType = 5
	ID_DER_ASN1_DN IDType = 9
	ID_DER_ASN1_GN IDType = 10
	ID_KEY_ID      IDType = 11
	ID_NULL        IDType = 13 // RFC 7619
)

// AuthMethod is the Auth Method of an AUTH payload (RFC 7296, Section 3.8).
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASig           AuthMethod = 1  // RSA Digital Signature
	AuthSharedKeyMIC     AuthMethod = 2  // Shared Key Message Integrity Code
	AuthDSSSig           AuthMethod = 3  // DSS Digital Signature
	AuthECDSA256         AuthMethod = 9  // RFC 4754
	AuthECDSA384         AuthMethod = 10 // RFC 4754
	AuthECDSA521         AuthMethod = 11 // RFC 4754
	AuthNull             AuthMethod = 13 // RFC 7619
	AuthDigitalSignature AuthMethod = 14 // RFC 7427
)

// CertEncoding is the Cert Encoding of a CERT or CERTREQ payload (RFC 7296,
// Section 3.6).
type CertEncoding uint8

// Certificate encodings.
const (
	CertPKCS7X509      CertEncoding = 1
	CertX509Signature  CertEncoding = 4
	CertCRL            CertEncoding = 7
	CertHashURLX509    CertEncoding = 12
	CertHashURLBundle  CertEncoding = 13
	CertOCSPContent    CertEncoding = 14 // RFC 4806
	CertRawPublicKey   CertEncoding = 15 // RFC 7670
	CertRawRSAKeyOld   CertEncoding = 11 // deprecated by RFC 7296
	CertX509Attribute  CertEncoding = 10
	CertSPKI           CertEncoding = 9
	CertAuthRevocation CertEncoding = 8
)

// TSType is the TS Type of a traffic selector (RFC 7296, Section 3.13.1).
type TSType uint8

// Traffic selector types.
const (
	TS_IPV4_ADDR_RANGE TSType = 7
	TS_IPV6_ADDR_RANGE TSType = 8
)

// CFGType is the CFG Type of a Configuration payload (RFC 7296,
// Section 3.15).
type CFGType uint8

// Configuration payload types.
const (
	CFG_REQUEST CFGType = 1
	CFG_REPLY   CFGType = 2
	CFG_SET     CFGType = 3
	CFG_ACK     CFGType = 4
)

// CPAttrType is a configuration attribute type (RFC 7296, Section 3.15.1).
type CPAttrType uint16

// Configuration attribute types.
const (
	INTERNAL_IP4_ADDRESS CPAttrType = 1
	INTERNAL_IP4_NETMASK CPAttrType = 2
	INTERNAL_IP4_DNS     CPAttrType = 3
	INTERNAL_IP4_NBNS    CPAttrType = 4
	INTERNAL_IP4_DHCP    CPAttrType = 6
	APPLICATION_VERSION  CPAttrType = 7
	INTERNAL_IP6_ADDRESS CPAttrType = 8
	INTERNAL_IP6_DNS     CPAttrType = 10
	INTERNAL_IP6_DHCP    CPAttrType = 12
	INTERNAL_IP4_SUBNET  CPAttrType = 13
	SUPPORTED_ATTRIBUTES CPAttrType = 14
	INTERNAL_IP6_SUBNET  CPAttrType = 15
)
