package ikewire

import (
	"errors"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// Limits that bound the allocation a single message can cause.
const (
	// MaxProposals is the most proposals an SA payload may carry.
	MaxProposals = 64
	// MaxTransforms is the most transforms a proposal may carry.
	MaxTransforms = 64
	// MaxAttributes is the most attributes a transform may carry.
	MaxAttributes = 16
	// MaxTrafficSelectors is the most selectors a TSi or TSr payload may carry.
	MaxTrafficSelectors = 256
	// MaxPayloads is the most payloads one payload chain may carry.
	MaxPayloads = 256
	// MinNonceLen and MaxNonceLen bound the Nonce Data (RFC 7296, Section 3.9).
	MinNonceLen, MaxNonceLen = 16, 256
)

// Payload is one IKEv2 payload. The implementations in this package are the
// pointer types *SA, *KE, *IDi, *IDr, *Cert, *CertReq, *Auth, *Nonce,
// *Notify, *Delete, *VendorID, *TSi, *TSr, *SK, *SKF, *CP, *EAP and *Unknown.
// The generic payload header (RFC 7296, Section 3.2) is not part of the
// structs: Next Payload follows from the order of a []Payload and the length
// is computed.
type Payload interface {
	// PayloadType returns the payload's type code.
	PayloadType() PayloadType
	// marshalBody appends the payload body, without generic header.
	marshalBody(b *cryptobyte.Builder)
}

// errMarshal is set on a builder when a payload cannot be encoded.
func errMarshal(b *cryptobyte.Builder, reason string) {
	b.SetError(errors.New("ikewire: " + reason))
}

// SA is the Security Association payload (RFC 7296, Section 3.3).
type SA struct {
	Proposals []Proposal
}

// Proposal is a proposal substructure (RFC 7296, Section 3.3.1).
type Proposal struct {
	// Num is the Proposal Num: 1 for the first proposal of an offer and one
	// more for each next one; in an answer, the number of the accepted
	// proposal. The codec does not check the sequence: that depends on the
	// exchange.
	Num uint8
	// Protocol is IKE, AH or ESP.
	Protocol ProtocolID
	// SPI is empty for IKE in IKE_SA_INIT, 8 bytes when rekeying an IKE SA
	// and 4 bytes for AH and ESP (Section 3.3.1).
	SPI []byte
	// Transforms lists the transforms; Section 3.3.6 explains their
	// semantics.
	Transforms []Transform
}

// Transform is a transform substructure (RFC 7296, Section 3.3.2).
type Transform struct {
	Type       TransformType
	ID         uint16
	Attributes []Attribute
}

// KeyLength returns the value of the Key Length attribute (in bits) and
// whether the transform has one (RFC 7296, Section 3.3.5).
func (t *Transform) KeyLength() (bits int, ok bool) {
	for _, a := range t.Attributes {
		if a.Type == AttrKeyLength && !a.TLV {
			return int(a.Value), true
		}
	}
	return 0, false
}

// Attribute is a transform attribute (RFC 7296, Section 3.3.5). TV-format
// attributes (AF bit set) carry Value; TLV-format attributes carry Data.
type Attribute struct {
	Type  uint16 // without the AF bit
	TLV   bool   // the AF bit is clear: the attribute carries Data
	Value uint16 // the value of a TV attribute
	Data  []byte // the value of a TLV attribute
}

// PayloadType returns PayloadSA.
func (*SA) PayloadType() PayloadType { return PayloadSA }

func (p *SA) marshalBody(b *cryptobyte.Builder) {
	if len(p.Proposals) == 0 || len(p.Proposals) > MaxProposals {
		errMarshal(b, "SA payload needs 1 to 64 proposals")
		return
	}
	for i := range p.Proposals {
		pr := &p.Proposals[i]
		last := uint8(2) // Section 3.3.1: 2 means more proposals follow.
		if i == len(p.Proposals)-1 {
			last = 0
		}
		if len(pr.SPI) > 255 || len(pr.Transforms) > MaxTransforms {
			errMarshal(b, "proposal SPI or transform count too large")
			return
		}
		inner := cryptobyte.NewBuilder(nil)
		inner.AddUint8(pr.Num)
		inner.AddUint8(uint8(pr.Protocol))
		inner.AddUint8(uint8(len(pr.SPI)))
		inner.AddUint8(uint8(len(pr.Transforms)))
		inner.AddBytes(pr.SPI)
		for j := range pr.Transforms {
			tr := &pr.Transforms[j]
			tl := uint8(3) // Section 3.3.2: 3 means more transforms follow.
			if j == len(pr.Transforms)-1 {
				tl = 0
			}
			tb := cryptobyte.NewBuilder(nil)
			tb.AddUint8(uint8(tr.Type))
			tb.AddUint8(0)
			tb.AddUint16(tr.ID)
			for _, a := range tr.Attributes {
				if a.Type > 0x7fff {
					errMarshal(tb, "transform attribute type too large")
					break
				}
				if a.TLV {
					tb.AddUint16(a.Type)
					tb.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(a.Data) })
				} else {
					tb.AddUint16(a.Type | 0x8000)
					tb.AddUint16(a.Value)
				}
			}
			addSub(inner, tl, 0, tb)
		}
		addSub(b, last, 0, inner)
	}
}

// addSub appends a substructure with the layout of a generic header: one
// byte (next or last), the flags byte (critical bit and reserved zeros), a 2-byte length that counts the
// header, then the body built in sub.
func addSub(b *cryptobyte.Builder, first, flags uint8, sub *cryptobyte.Builder) {
	body, err := sub.Bytes()
	if err != nil {
		b.SetError(err)
		return
	}
	if len(body)+4 > 0xffff {
		errMarshal(b, "payload or substructure longer than 65535 bytes")
		return
	}
	b.AddUint8(first)
	b.AddUint8(flags)
	b.AddUint16(uint16(len(body) + 4))
	b.AddBytes(body)
}

// readSub reads a substructure header and its body; it reports false if the
// length is below 4 or beyond the data.
func readSub(s *cryptobyte.String, first *uint8, body *cryptobyte.String) bool {
	var reserved uint8
	var length uint16
	if !s.ReadUint8(first) || !s.ReadUint8(&reserved) || !s.ReadUint16(&length) || length < 4 {
		return false
	}
	return s.ReadBytes((*[]byte)(body), int(length)-4)
}

func parseSA(s cryptobyte.String) (*SA, error) {
	p := new(SA)
	for !s.Empty() {
		if len(p.Proposals) == MaxProposals {
			return nil, syntaxErr("SA payload: more than 64 proposals")
		}
		var last uint8
		var body cryptobyte.String
		if !readSub(&s, &last, &body) {
			return nil, syntaxErr("SA payload: bad proposal length")
		}
		// Section 3.3.1: Last Substruc is 0 for the last proposal, 2 otherwise.
		if (last == 0) != s.Empty() || (last != 0 && last != 2) {
			return nil, syntaxErr("SA payload: Last Substruc disagrees with the payload length")
		}
		var pr Proposal
		var proto, spiSize, nt uint8
		if !body.ReadUint8(&pr.Num) || !body.ReadUint8(&proto) || !body.ReadUint8(&spiSize) ||
			!body.ReadUint8(&nt) || !body.ReadBytes(&pr.SPI, int(spiSize)) {
			return nil, syntaxErr("SA payload: truncated proposal")
		}
		pr.Protocol = ProtocolID(proto)
		switch pr.Protocol {
		case ProtoIKE:
			if spiSize != 0 && spiSize != 8 {
				return nil, syntaxErr("SA payload: IKE proposal SPI size must be 0 or 8")
			}
		case ProtoAH, ProtoESP:
			if spiSize != 4 {
				return nil, syntaxErr("SA payload: AH/ESP proposal SPI size must be 4")
			}
		}
		if spiSize == 0 {
			pr.SPI = nil
		}
		if nt > MaxTransforms {
			return nil, syntaxErr("SA payload: more than 64 transforms in a proposal")
		}
		if nt > 0 {
			pr.Transforms = make([]Transform, 0, nt)
		}
		for !body.Empty() {
			var tl uint8
			var tb cryptobyte.String
			if !readSub(&body, &tl, &tb) {
				return nil, syntaxErr("SA payload: bad transform length")
			}
			// Section 3.3.2: Last Substruc is 0 for the last transform, 3 otherwise.
			if (tl == 0) != body.Empty() || (tl != 0 && tl != 3) {
				return nil, syntaxErr("SA payload: transform Last Substruc disagrees with the proposal length")
			}
			if len(pr.Transforms) == int(nt) {
				return nil, syntaxErr("SA payload: more transforms than Num Transforms")
			}
			var tr Transform
			var ttype, reserved uint8
			if !tb.ReadUint8(&ttype) || !tb.ReadUint8(&reserved) || !tb.ReadUint16(&tr.ID) {
				return nil, syntaxErr("SA payload: truncated transform")
			}
			tr.Type = TransformType(ttype)
			for !tb.Empty() {
				if len(tr.Attributes) == MaxAttributes {
					return nil, syntaxErr("SA payload: too many transform attributes")
				}
				var at, v uint16
				if !tb.ReadUint16(&at) || !tb.ReadUint16(&v) {
					return nil, syntaxErr("SA payload: truncated transform attribute")
				}
				a := Attribute{Type: at & 0x7fff, TLV: at&0x8000 == 0}
				if a.TLV {
					if !tb.ReadBytes(&a.Data, int(v)) {
						return nil, syntaxErr("SA payload: truncated TLV attribute")
					}
				} else {
					a.Value = v
				}
				tr.Attributes = append(tr.Attributes, a)
			}
			pr.Transforms = append(pr.Transforms, tr)
		}
		if len(pr.Transforms) != int(nt) {
			return nil, syntaxErr("SA payload: Num Transforms disagrees with the proposal")
		}
		p.Proposals = append(p.Proposals, pr)
	}
	if len(p.Proposals) == 0 {
		return nil, syntaxErr("SA payload without proposals")
	}
	return p, nil
}

// KE is the Key Exchange payload (RFC 7296, Section 3.4).
type KE struct {
	Group uint16 // Key Exchange Method (formerly Diffie-Hellman Group) Num
	Data  []byte
}

// PayloadType returns PayloadKE.
func (*KE) PayloadType() PayloadType { return PayloadKE }

func (p *KE) marshalBody(b *cryptobyte.Builder) {
	b.AddUint16(p.Group)
	b.AddUint16(0)
	b.AddBytes(p.Data)
}

func parseKE(s cryptobyte.String) (*KE, error) {
	p := new(KE)
	if !s.ReadUint16(&p.Group) || !s.Skip(2) {
		return nil, syntaxErr("KE payload too short")
	}
	// Section 3.4: every method has a non-empty public value; its exact
	// length depends on the method and is checked where it is used.
	if s.Empty() {
		return nil, syntaxErr("KE payload without key exchange data")
	}
	p.Data = s
	return p, nil
}

// nonEmpty returns s as a byte slice, or nil if it is empty, so that parsed
// and built values compare equal.
func nonEmpty(s []byte) []byte {
	if len(s) == 0 {
		return nil
	}
	return s
}

// Identification is the body of an IDi or IDr payload (RFC 7296,
// Section 3.5).
type Identification struct {
	IDType IDType
	Data   []byte
}

// Body returns the encoded payload body, which is RestOfInitIDPayload or
// RestOfRespIDPayload in the AUTH computation (RFC 7296, Section 2.15).
func (id *Identification) Body() []byte {
	b := make([]byte, 4, 4+len(id.Data))
	b[0] = byte(id.IDType)
	return append(b, id.Data...)
}

func (id *Identification) marshalBody(b *cryptobyte.Builder) {
	b.AddUint8(uint8(id.IDType))
	b.AddUint24(0)
	b.AddBytes(id.Data)
}

func parseID(s cryptobyte.String) (Identification, error) {
	var id Identification
	var t uint8
	if !s.ReadUint8(&t) || !s.Skip(3) {
		return id, syntaxErr("ID payload too short")
	}
	id.IDType, id.Data = IDType(t), nonEmpty(s)
	return id, nil
}

// IDi is the Identification - Initiator payload (RFC 7296, Section 3.5).
type IDi struct{ Identification }

// IDr is the Identification - Responder payload (RFC 7296, Section 3.5).
type IDr struct{ Identification }

// PayloadType returns PayloadIDi.
func (*IDi) PayloadType() PayloadType { return PayloadIDi }

// PayloadType returns PayloadIDr.
func (*IDr) PayloadType() PayloadType { return PayloadIDr }

// Cert is the Certificate payload (RFC 7296, Section 3.6).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

// PayloadType returns PayloadCERT.
func (*Cert) PayloadType() PayloadType { return PayloadCERT }

func (p *Cert) marshalBody(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Encoding))
	b.AddBytes(p.Data)
}

// CertReq is the Certificate Request payload (RFC 7296, Section 3.7). For
// X.509 encodings Data is a concatenation of 20-byte SHA-1 hashes of CA
// public keys.
type CertReq struct {
	Encoding CertEncoding
	Data     []byte
}

// PayloadType returns PayloadCERTREQ.
func (*CertReq) PayloadType() PayloadType { return PayloadCERTREQ }

func (p *CertReq) marshalBody(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Encoding))
	b.AddBytes(p.Data)
}

func parseCertBody(s cryptobyte.String) (CertEncoding, []byte, error) {
	var e uint8
	if !s.ReadUint8(&e) {
		return 0, nil, syntaxErr("CERT/CERTREQ payload too short")
	}
	return CertEncoding(e), nonEmpty(s), nil
}

// Auth is the Authentication payload (RFC 7296, Section 3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

// PayloadType returns PayloadAUTH.
func (*Auth) PayloadType() PayloadType { return PayloadAUTH }

func (p *Auth) marshalBody(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Method))
	b.AddUint24(0)
	b.AddBytes(p.Data)
}

func parseAuth(s cryptobyte.String) (*Auth, error) {
	var m uint8
	if !s.ReadUint8(&m) || !s.Skip(3) {
		return nil, syntaxErr("AUTH payload too short")
	}
	return &Auth{Method: AuthMethod(m), Data: nonEmpty(s)}, nil
}

// Nonce is the Nonce payload, Ni or Nr (RFC 7296, Section 3.9). Data is 16
// to 256 bytes long.
type Nonce struct {
	Data []byte
}

// PayloadType returns PayloadNonce.
func (*Nonce) PayloadType() PayloadType { return PayloadNonce }

func (p *Nonce) marshalBody(b *cryptobyte.Builder) {
	if len(p.Data) < MinNonceLen || len(p.Data) > MaxNonceLen {
		errMarshal(b, "nonce must be 16 to 256 bytes")
		return
	}
	b.AddBytes(p.Data)
}

func parseNonce(s cryptobyte.String) (*Nonce, error) {
	// Section 3.9: the size of the Nonce Data MUST be between 16 and 256 octets.
	if len(s) < MinNonceLen || len(s) > MaxNonceLen {
		return nil, syntaxErr("Nonce payload: nonce must be 16 to 256 bytes")
	}
	return &Nonce{Data: s}, nil
}

// Notify is the Notify payload (RFC 7296, Section 3.10).
type Notify struct {
	// Protocol is the protocol of the SA the notification concerns, or 0
	// when SPI is empty.
	Protocol ProtocolID
	SPI      []byte
	Type     NotifyType
	Data     []byte
}

// PayloadType returns PayloadNotify.
func (*Notify) PayloadType() PayloadType { return PayloadNotify }

func (p *Notify) marshalBody(b *cryptobyte.Builder) {
	if len(p.SPI) > 255 {
		errMarshal(b, "notify SPI longer than 255 bytes")
		return
	}
	b.AddUint8(uint8(p.Protocol))
	b.AddUint8(uint8(len(p.SPI)))
	b.AddUint16(uint16(p.Type))
	b.AddBytes(p.SPI)
	b.AddBytes(p.Data)
}

func parseNotify(s cryptobyte.String) (*Notify, error) {
	p := new(Notify)
	var proto, spiSize uint8
	var t uint16
	if !s.ReadUint8(&proto) || !s.ReadUint8(&spiSize) || !s.ReadUint16(&t) ||
		!s.ReadBytes(&p.SPI, int(spiSize)) {
		return nil, syntaxErr("Notify payload too short")
	}
	p.Protocol, p.Type, p.SPI, p.Data = ProtocolID(proto), NotifyType(t), nonEmpty(p.SPI), nonEmpty(s)
	return p, nil
}

// Delete is the Delete payload (RFC 7296, Section 3.11). Deleting an IKE SA
// takes no SPIs (the IKE header names it); AH and ESP SPIs are 4 bytes.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

// PayloadType returns PayloadDelete.
func (*Delete) PayloadType() PayloadType { return PayloadDelete }

func (p *Delete) marshalBody(b *cryptobyte.Builder) {
	switch {
	case p.Protocol == ProtoIKE && len(p.SPIs) == 0:
		b.AddUint8(uint8(ProtoIKE))
		b.AddUint8(0)
		b.AddUint16(0)
	case (p.Protocol == ProtoAH || p.Protocol == ProtoESP) && len(p.SPIs) > 0 && len(p.SPIs) <= 0xffff:
		b.AddUint8(uint8(p.Protocol))
		b.AddUint8(4)
		b.AddUint16(uint16(len(p.SPIs)))
		for _, spi := range p.SPIs {
			b.AddUint32(spi)
		}
	default:
		errMarshal(b, "Delete payload: IKE takes no SPIs, AH/ESP at least one")
	}
}

func parseDelete(s cryptobyte.String) (*Delete, error) {
	p := new(Delete)
	var proto, spiSize uint8
	var n uint16
	if !s.ReadUint8(&proto) || !s.ReadUint8(&spiSize) || !s.ReadUint16(&n) {
		return nil, syntaxErr("Delete payload too short")
	}
	p.Protocol = ProtocolID(proto)
	switch p.Protocol {
	case ProtoIKE:
		// Section 3.11: the SPI size is zero for IKE and no SPIs follow.
		if spiSize != 0 || n != 0 || !s.Empty() {
			return nil, syntaxErr("Delete payload: IKE SA deletion carries no SPIs")
		}
	case ProtoAH, ProtoESP:
		if spiSize != 4 || n == 0 || len(s) != 4*int(n) {
			return nil, syntaxErr("Delete payload: AH/ESP SPIs disagree with the payload length")
		}
		p.SPIs = make([]uint32, n)
		for i := range p.SPIs {
			s.ReadUint32(&p.SPIs[i])
		}
	default:
		return nil, syntaxErr("Delete payload: unknown protocol")
	}
	return p, nil
}

// VendorID is the Vendor ID payload (RFC 7296, Section 3.12).
type VendorID struct {
	Data []byte
}

// PayloadType returns PayloadVendorID.
func (*VendorID) PayloadType() PayloadType { return PayloadVendorID }

func (p *VendorID) marshalBody(b *cryptobyte.Builder) { b.AddBytes(p.Data) }

// TrafficSelector is one traffic selector (RFC 7296, Section 3.13.1). For
// TS_IPV4_ADDR_RANGE and TS_IPV6_ADDR_RANGE, StartAddress and EndAddress hold
// addresses of that family and Data is nil; other types (RFC 4595's
// TS_FC_ADDR_RANGE, RFC 9478's TS_SECLABEL) keep the bytes after the
// Selector Length in Data and leave the other fields zero.
type TrafficSelector struct {
	Type         TSType
	IPProtocol   uint8 // 0 means any protocol
	StartPort    uint16
	EndPort      uint16
	StartAddress netip.Addr
	EndAddress   netip.Addr
	Data         []byte
}

// TrafficSelectors is the body of a TSi or TSr payload (RFC 7296,
// Section 3.13).
type TrafficSelectors struct {
	Selectors []TrafficSelector
}

// TSi is the Traffic Selector - Initiator payload (RFC 7296, Section 3.13).
type TSi struct{ TrafficSelectors }

// TSr is the Traffic Selector - Responder payload (RFC 7296, Section 3.13).
type TSr struct{ TrafficSelectors }

// PayloadType returns PayloadTSi.
func (*TSi) PayloadType() PayloadType { return PayloadTSi }

// PayloadType returns PayloadTSr.
func (*TSr) PayloadType() PayloadType { return PayloadTSr }

func (p *TrafficSelectors) marshalBody(b *cryptobyte.Builder) {
	if len(p.Selectors) == 0 || len(p.Selectors) > MaxTrafficSelectors-1 {
		errMarshal(b, "TS payload needs 1 to 255 selectors")
		return
	}
	b.AddUint8(uint8(len(p.Selectors)))
	b.AddUint24(0)
	for _, ts := range p.Selectors {
		switch ts.Type {
		case TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE:
			want := ts.Type == TS_IPV4_ADDR_RANGE
			if ts.StartAddress.Is4() != want || ts.EndAddress.Is4() != want ||
				!ts.StartAddress.IsValid() || !ts.EndAddress.IsValid() ||
				(!want && (!ts.StartAddress.Is6() || !ts.EndAddress.Is6())) {
				errMarshal(b, "traffic selector address family disagrees with its type")
				return
			}
			s, e := ts.StartAddress.AsSlice(), ts.EndAddress.AsSlice()
			b.AddUint8(uint8(ts.Type))
			b.AddUint8(ts.IPProtocol)
			b.AddUint16(uint16(8 + 2*len(s)))
			b.AddUint16(ts.StartPort)
			b.AddUint16(ts.EndPort)
			b.AddBytes(s)
			b.AddBytes(e)
		default:
			if len(ts.Data)+4 > 0xffff {
				errMarshal(b, "traffic selector too long")
				return
			}
			b.AddUint8(uint8(ts.Type))
			b.AddUint8(ts.IPProtocol)
			b.AddUint16(uint16(4 + len(ts.Data)))
			b.AddBytes(ts.Data)
		}
	}
}

func parseTS(s cryptobyte.String) (TrafficSelectors, error) {
	var p TrafficSelectors
	var n uint8
	if !s.ReadUint8(&n) || !s.Skip(3) {
		return p, syntaxErr("TS payload too short")
	}
	if n == 0 {
		return p, syntaxErr("TS payload without selectors")
	}
	p.Selectors = make([]TrafficSelector, 0, n)
	for i := 0; i < int(n); i++ {
		var ts TrafficSelector
		var t uint8
		var l uint16
		var body cryptobyte.String
		if !s.ReadUint8(&t) || !s.ReadUint8(&ts.IPProtocol) || !s.ReadUint16(&l) || l < 4 ||
			!s.ReadBytes((*[]byte)(&body), int(l)-4) {
			return p, syntaxErr("TS payload: truncated traffic selector")
		}
		ts.Type = TSType(t)
		switch ts.Type {
		case TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE:
			alen := 4
			if ts.Type == TS_IPV6_ADDR_RANGE {
				alen = 16
			}
			// Section 3.13.1: Selector Length is 16 for IPv4, 40 for IPv6.
			if int(l) != 8+2*alen {
				return p, syntaxErr("TS payload: bad selector length")
			}
			var a, e []byte
			body.ReadUint16(&ts.StartPort)
			body.ReadUint16(&ts.EndPort)
			body.ReadBytes(&a, alen)
			body.ReadBytes(&e, alen)
			ts.StartAddress, _ = netip.AddrFromSlice(a)
			ts.EndAddress, _ = netip.AddrFromSlice(e)
		default:
			ts.Data = nonEmpty(body)
		}
		p.Selectors = append(p.Selectors, ts)
	}
	if !s.Empty() {
		return p, syntaxErr("TS payload: Number of TSs disagrees with the payload length")
	}
	return p, nil
}

// SK is the Encrypted and Authenticated payload (RFC 7296, Section 3.14) as
// it is on the wire: Body is IV || ciphertext || ICV. Use OpenSK to decrypt
// it and SealSK to build a message with one.
type SK struct {
	// NextPayload is the type of the first inner payload (the Next Payload
	// field of the SK payload's generic header).
	NextPayload PayloadType
	Body        []byte
}

// PayloadType returns PayloadSK.
func (*SK) PayloadType() PayloadType { return PayloadSK }

func (p *SK) marshalBody(b *cryptobyte.Builder) { b.AddBytes(p.Body) }

// SKF is the Encrypted and Authenticated Fragment payload (RFC 7383,
// Section 2.5).
type SKF struct {
	// NextPayload is the type of the first inner payload in fragment 1
	// and zero in the others.
	NextPayload PayloadType
	// Number is the Fragment Number, from 1 to Total.
	Number uint16
	// Total is the Total Fragments.
	Total uint16
	// Body is IV || ciphertext || ICV.
	Body []byte
}

// PayloadType returns PayloadSKF.
func (*SKF) PayloadType() PayloadType { return PayloadSKF }

func (p *SKF) marshalBody(b *cryptobyte.Builder) {
	b.AddUint16(p.Number)
	b.AddUint16(p.Total)
	b.AddBytes(p.Body)
}

func parseSKF(s cryptobyte.String, next PayloadType) (*SKF, error) {
	p := &SKF{NextPayload: next}
	if !s.ReadUint16(&p.Number) || !s.ReadUint16(&p.Total) {
		return nil, syntaxErr("SKF payload too short")
	}
	// RFC 7383, Section 2.5: numbering starts at 1 and Total is the
	// number of the last fragment; Section 2.6: other fragments are
	// discarded.
	if p.Number == 0 || p.Total == 0 || p.Number > p.Total {
		return nil, drop("SKF payload: bad Fragment Number or Total Fragments")
	}
	p.Body = nonEmpty(s)
	return p, nil
}

// CPAttribute is a configuration attribute (RFC 7296, Section 3.15.1).
type CPAttribute struct {
	Type  CPAttrType // 15 bits
	Value []byte
}

// CP is the Configuration payload (RFC 7296, Section 3.15).
type CP struct {
	CFGType    CFGType
	Attributes []CPAttribute
}

// PayloadType returns PayloadCP.
func (*CP) PayloadType() PayloadType { return PayloadCP }

func (p *CP) marshalBody(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.CFGType))
	b.AddUint24(0)
	for _, a := range p.Attributes {
		if a.Type > 0x7fff || len(a.Value) > 0xffff {
			errMarshal(b, "configuration attribute type or value too large")
			return
		}
		b.AddUint16(uint16(a.Type))
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(a.Value) })
	}
}

func parseCP(s cryptobyte.String) (*CP, error) {
	p := new(CP)
	var t uint8
	if !s.ReadUint8(&t) || !s.Skip(3) {
		return nil, syntaxErr("CP payload too short")
	}
	p.CFGType = CFGType(t)
	for !s.Empty() {
		if len(p.Attributes) == MaxPayloads {
			return nil, syntaxErr("CP payload: too many attributes")
		}
		var at uint16
		var v cryptobyte.String
		if !s.ReadUint16(&at) || !s.ReadUint16LengthPrefixed(&v) {
			return nil, syntaxErr("CP payload: truncated attribute")
		}
		// Section 3.15.1: the top bit is reserved.
		p.Attributes = append(p.Attributes, CPAttribute{Type: CPAttrType(at & 0x7fff), Value: nonEmpty(v)})
	}
	return p, nil
}

// EAP is the Extensible Authentication payload (RFC 7296, Section 3.16).
// Message is the EAP message, kept opaque.
type EAP struct {
	Message []byte
}

// PayloadType returns PayloadEAP.
func (*EAP) PayloadType() PayloadType { return PayloadEAP }

func (p *EAP) marshalBody(b *cryptobyte.Builder) { b.AddBytes(p.Message) }

// Unknown is a payload of a type this package does not understand, kept
// raw. Parse returns one only for payloads without the critical bit: RFC
// 7296, Section 2.5 says to skip those, and callers do so by ignoring
// *Unknown. Marshal writes Critical as given.
type Unknown struct {
	Type     PayloadType
	Critical bool
	Body     []byte
}

// PayloadType returns the payload's type.
func (p *Unknown) PayloadType() PayloadType { return p.Type }

func (p *Unknown) marshalBody(b *cryptobyte.Builder) { b.AddBytes(p.Body) }
