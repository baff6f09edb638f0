package ikewire

import (
	"bytes"
	"encoding/binary"
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

const (
	// HeaderLen is the length of the IKE header (RFC 7296, Section 3.1).
	HeaderLen = 28
	// MaxMessageLen is the longest message Parse accepts and Marshal
	// produces: 64 KiB, more than a UDP datagram can carry.
	MaxMessageLen = 65535
	// genericHeaderLen is the length of the generic payload header.
	genericHeaderLen = 4
	// version is the Version field sent: major 2, minor 0 (Section 3.1).
	version = 0x20
)

// Header is the IKE header (RFC 7296, Section 3.1). The Version field is not
// kept: Parse accepts only major version 2 and ignores the minor version
// (Section 2.5), Marshal sends 2.0.
type Header struct {
	SPIi uint64 // IKE SA Initiator's SPI
	SPIr uint64 // IKE SA Responder's SPI; zero in the first message
	// NextPayload is the type of the first payload. Parse and ParseHeader
	// set it; Marshal ignores it and derives it from the payloads.
	NextPayload PayloadType
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	// Length is the length of the whole message. Parse and ParseHeader set
	// it; Marshal ignores it and writes the actual length.
	Length uint32
}

// IsResponse reports whether the R flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the I flag is set: the message comes from the
// original initiator of the IKE SA.
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// ParseHeader parses and checks the IKE header of the datagram b, for
// dispatch before full parsing. It returns an error with Notify 0 (drop)
// if b is shorter than the header, longer than MaxMessageLen, if the Length
// field differs from len(b) (Section 3.1: Length is the total length of the
// message), for major versions below 2 (IKEv1 is not supported) and for the
// reserved exchange types 0-33; with Notify INVALID_MAJOR_VERSION for major
// versions above 2 (Section 2.5). On errors after the first, the returned
// Header holds the fields read, so a caller can address a response.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, drop("message shorter than the IKE header")
	}
	h.SPIi = binary.BigEndian.Uint64(b[0:8])
	h.SPIr = binary.BigEndian.Uint64(b[8:16])
	h.NextPayload = PayloadType(b[16])
	ver := b[17]
	h.Exchange = ExchangeType(b[18])
	// Section 3.1: reserved flag bits are ignored on receive.
	h.Flags = Flags(b[19]) & flagsDefined
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	if len(b) > MaxMessageLen {
		return h, drop("message longer than 64 KiB")
	}
	if int64(h.Length) != int64(len(b)) {
		return h, drop("IKE header length disagrees with the datagram length")
	}
	switch major := ver >> 4; {
	case major > 2:
		// Section 2.5: reject with INVALID_MAJOR_VERSION; the response
		// header carries the version we speak.
		return h, &ParseError{Notify: NotifyInvalidMajorVersion, Reason: "unsupported major version"}
	case major < 2:
		return h, drop("IKEv1 (or older) is not supported")
	}
	if h.Exchange < IKE_SA_INIT {
		// Section 3.1: exchange types 0-33 are reserved.
		return h, drop("reserved exchange type")
	}
	return h, nil
}

// Message is an IKEv2 message: the header and the cleartext payload chain.
// If the message is protected, its last payload is an *SK or *SKF whose body
// OpenSK decrypts.
type Message struct {
	Header
	Payloads []Payload
	// Raw is the message as received (set by Parse) and is what AUTH signs
	// for IKE_SA_INIT messages (RFC 7296, Section 2.15) and what the SK
	// integrity check covers. Marshal neither reads nor sets it.
	Raw []byte
}

// Parse parses the datagram b as an IKEv2 message: the header (as
// ParseHeader) and the payload chain up to and including an SK or SKF
// payload, which must be the last one (Section 3.14). It copies b into
// m.Raw; the payloads alias m.Raw. Every error is a *ParseError.
func Parse(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	raw := bytes.Clone(b)
	payloads, err := parseChain(raw[HeaderLen:], h.NextPayload, true)
	if err != nil {
		return nil, err
	}
	return &Message{Header: h, Payloads: payloads, Raw: raw}, nil
}

// parseChain parses a payload chain that starts with a payload of type
// first. In the outer chain (outer true) an SK or SKF payload ends it; in
// a decrypted chain they are not allowed.
func parseChain(data []byte, first PayloadType, outer bool) ([]Payload, error) {
	s := cryptobyte.String(data)
	var payloads []Payload
	for next := first; next != PayloadNone; {
		if len(payloads) == MaxPayloads {
			return nil, syntaxErr("too many payloads")
		}
		var np, flags uint8
		var length uint16
		if !s.ReadUint8(&np) || !s.ReadUint8(&flags) || !s.ReadUint16(&length) {
			return nil, syntaxErr("truncated generic payload header")
		}
		var body cryptobyte.String
		if length < genericHeaderLen || !s.ReadBytes((*[]byte)(&body), int(length)-genericHeaderLen) {
			return nil, syntaxErr("payload length beyond the message or below 4")
		}
		critical := flags&0x80 != 0
		if next == PayloadSK || next == PayloadSKF {
			if !outer {
				return nil, syntaxErr("SK or SKF payload inside an encrypted payload")
			}
			// Section 3.14: the Encrypted payload is the last one, and
			// its Next Payload is the first inner payload's type.
			if !s.Empty() {
				return nil, syntaxErr("data after the SK or SKF payload")
			}
			if next == PayloadSK {
				payloads = append(payloads, &SK{NextPayload: PayloadType(np), Body: nonEmpty(body)})
			} else {
				p, err := parseSKF(body, PayloadType(np))
				if err != nil {
					return nil, err
				}
				payloads = append(payloads, p)
			}
			return payloads, nil
		}
		p, err := parsePayload(next, body, critical)
		if err != nil {
			return nil, err
		}
		payloads = append(payloads, p)
		next = PayloadType(np)
	}
	if !s.Empty() {
		return nil, syntaxErr("data after the last payload")
	}
	return payloads, nil
}

// parsePayload parses one payload body.
func parsePayload(t PayloadType, body cryptobyte.String, critical bool) (Payload, error) {
	switch t {
	case PayloadSA:
		return parseSA(body)
	case PayloadKE:
		return parseKE(body)
	case PayloadIDi:
		id, err := parseID(body)
		if err != nil {
			return nil, err
		}
		return &IDi{id}, nil
	case PayloadIDr:
		id, err := parseID(body)
		if err != nil {
			return nil, err
		}
		return &IDr{id}, nil
	case PayloadCERT:
		e, d, err := parseCertBody(body)
		if err != nil {
			return nil, err
		}
		return &Cert{Encoding: e, Data: d}, nil
	case PayloadCERTREQ:
		e, d, err := parseCertBody(body)
		if err != nil {
			return nil, err
		}
		return &CertReq{Encoding: e, Data: d}, nil
	case PayloadAUTH:
		return parseAuth(body)
	case PayloadNonce:
		return parseNonce(body)
	case PayloadNotify:
		return parseNotify(body)
	case PayloadDelete:
		return parseDelete(body)
	case PayloadVendorID:
		return &VendorID{Data: nonEmpty(body)}, nil
	case PayloadTSi:
		ts, err := parseTS(body)
		if err != nil {
			return nil, err
		}
		return &TSi{ts}, nil
	case PayloadTSr:
		ts, err := parseTS(body)
		if err != nil {
			return nil, err
		}
		return &TSr{ts}, nil
	case PayloadCP:
		return parseCP(body)
	case PayloadEAP:
		return &EAP{Message: nonEmpty(body)}, nil
	}
	// Section 2.5: an unknown payload with the critical bit set rejects
	// the whole message with UNSUPPORTED_CRITICAL_PAYLOAD, whose data is
	// the payload type (Section 3.10.1); others are skipped.
	if critical {
		return nil, &ParseError{
			Notify: NotifyUnsupportedCriticalPayload,
			Data:   []byte{byte(t)},
			Reason: "unsupported critical payload " + t.String(),
		}
	}
	return &Unknown{Type: t, Body: nonEmpty(body)}, nil
}

// Marshal encodes the message: the header with the Version set to 2.0 and
// Next Payload and Length computed, then the payloads. An *SK or *SKF
// payload must be the last one; its body is written as it is (use SealSK to
// encrypt).
func (m *Message) Marshal() ([]byte, error) {
	for _, p := range m.Payloads {
		if p == nil {
			return nil, errors.New("ikewire: nil payload")
		}
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 512))
	first := PayloadNone
	if len(m.Payloads) > 0 {
		first = m.Payloads[0].PayloadType()
	}
	writeHeader(b, &m.Header, first)
	marshalChain(b, m.Payloads, true)
	out, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return finishLength(out)
}

// writeHeader appends the IKE header with a zero Length.
func writeHeader(b *cryptobyte.Builder, h *Header, first PayloadType) {
	b.AddUint64(h.SPIi)
	b.AddUint64(h.SPIr)
	b.AddUint8(uint8(first))
	b.AddUint8(version)
	b.AddUint8(uint8(h.Exchange))
	b.AddUint8(uint8(h.Flags & flagsDefined))
	b.AddUint32(h.MessageID)
	b.AddUint32(0)
}

// finishLength writes the Length field of the message in out.
func finishLength(out []byte) ([]byte, error) {
	if len(out) > MaxMessageLen {
		return nil, errTooLong
	}
	binary.BigEndian.PutUint32(out[24:28], uint32(len(out)))
	return out, nil
}

var errTooLong = &ParseError{Reason: "message longer than 64 KiB"}

// marshalChain appends the payloads, each with its generic header.
func marshalChain(b *cryptobyte.Builder, payloads []Payload, outer bool) {
	if len(payloads) > MaxPayloads {
		errMarshal(b, "too many payloads")
		return
	}
	for _, p := range payloads {
		if p == nil {
			errMarshal(b, "nil payload")
			return
		}
	}
	for i, p := range payloads {
		next, flags := PayloadNone, uint8(0)
		if i+1 < len(payloads) {
			next = payloads[i+1].PayloadType()
		}
		switch p := p.(type) {
		case *SK:
			next = p.NextPayload
		case *SKF:
			next = p.NextPayload
		case *Unknown:
			if p.Critical {
				flags = 0x80
			}
			if isKnown(p.Type) {
				errMarshal(b, "Unknown payload with the type of a known payload")
				return
			}
		}
		if t := p.PayloadType(); t == PayloadSK || t == PayloadSKF {
			if !outer || i != len(payloads)-1 {
				errMarshal(b, "SK or SKF payload must be the last outer payload")
				return
			}
		}
		body := cryptobyte.NewBuilder(nil)
		p.marshalBody(body)
		addSub(b, uint8(next), flags, body)
	}
}

// isKnown reports whether Parse decodes payloads of type t into their own
// struct.
func isKnown(t PayloadType) bool {
	return t == PayloadNone || (t >= PayloadSA && t <= PayloadEAP) || t == PayloadSKF
}
