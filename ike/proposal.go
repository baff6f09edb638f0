package ike

import (
	"fmt"
	"slices"
	"strings"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/ike/keys"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// xform is one transform of a proposal as matching sees it: its type, ID and
// key length (0 when the transform has no Key Length attribute).
type xform struct {
	typ  ikewire.TransformType
	id   uint16
	bits int
}

// offer is one proposal as lists of transforms by type, in order of
// preference. A type that is absent is represented by an empty list and
// matches only NONE (ID 0) where NONE is meaningful (RFC 7296, Section
// 3.3.6: INTEG with AEADs, KE and ESN in child proposals).
type offer struct {
	num   uint8
	proto ikewire.ProtocolID
	spi   []byte
	lists map[ikewire.TransformType][]xform
}

func encrXform(e transform.EncrAlg) xform {
	x := xform{typ: ikewire.TransformENCR, id: uint16(e.ID)}
	if e.HasKeyLengthAttr() {
		x.bits = e.KeyBits
	}
	return x
}

func (x xform) encr() transform.EncrAlg {
	e := transform.EncrAlg{ID: iana.EncrID(x.id), KeyBits: x.bits}
	if x.id == uint16(iana.EncrChaCha20Poly1305) {
		e.KeyBits = 256 // RFC 7634, Section 4: no Key Length attribute
	}
	return e
}

// ikeOffer converts a configured IKE proposal.
func ikeOffer(p transform.IKEProposal) offer {
	o := offer{proto: ikewire.ProtoIKE, lists: map[ikewire.TransformType][]xform{}}
	for _, e := range p.Encr {
		o.add(encrXform(e))
	}
	for _, id := range p.PRF {
		o.add(xform{typ: ikewire.TransformPRF, id: uint16(id)})
	}
	for _, id := range p.Integ {
		o.add(xform{typ: ikewire.TransformINTEG, id: uint16(id)})
	}
	for _, id := range p.KE {
		o.add(xform{typ: ikewire.TransformKE, id: uint16(id)})
	}
	// RFC 9370, Section 2.2.1: Transform Types 6 to 12, Additional Key
	// Exchange 1 to 7; NONE (0) in a list makes that exchange optional.
	for i, l := range p.AddKE {
		for _, id := range l {
			o.add(xform{typ: ikewire.TransformADDKE1 + ikewire.TransformType(i), id: uint16(id)})
		}
	}
	return o
}

// hasAddKE reports whether any of the proposals has an additional key
// exchange (RFC 9370), optional or not.
func hasAddKE(ps []transform.IKEProposal) bool {
	for _, p := range ps {
		for _, l := range p.AddKE {
			if len(l) > 0 {
				return true
			}
		}
	}
	return false
}

// childOffer converts a configured ESP or AH proposal; withKE false drops
// its KE methods (IKE_AUTH, RFC 7296, Section 1.2).
func childOffer(p transform.ESPProposal, proto sa.Protocol, withKE bool) offer {
	o := offer{proto: ikewire.ProtoESP, lists: map[ikewire.TransformType][]xform{}}
	if proto == sa.AH {
		o.proto = ikewire.ProtoAH
	} else {
		for _, e := range p.Encr {
			o.add(encrXform(e))
		}
	}
	for _, id := range p.Integ {
		o.add(xform{typ: ikewire.TransformINTEG, id: uint16(id)})
	}
	if withKE {
		for _, id := range p.KE {
			o.add(xform{typ: ikewire.TransformKE, id: uint16(id)})
		}
		// RFC 9370, Section 2.2.3: Additional Key Exchange transforms
		// in CREATE_CHILD_SA, like KE; IKE_AUTH leaves them out.
		for i, l := range p.AddKE {
			for _, id := range l {
				o.add(xform{typ: ikewire.TransformADDKE1 + ikewire.TransformType(i), id: uint16(id)})
			}
		}
	}
	esn := p.ESN
	if len(esn) == 0 {
		esn = []bool{false}
	}
	for _, e := range esn {
		x := xform{typ: ikewire.TransformESN}
		if e {
			x.id = 1
		}
		o.add(x)
	}
	return o
}

func (o *offer) add(x xform) {
	if !slices.Contains(o.lists[x.typ], x) {
		o.lists[x.typ] = append(o.lists[x.typ], x)
	}
}

// wire returns the offer as a Proposal substructure.
func (o offer) wire() ikewire.Proposal {
	p := ikewire.Proposal{Num: o.num, Protocol: o.proto, SPI: o.spi}
	for _, t := range wireOrder {
		for _, x := range o.lists[t] {
			tr := ikewire.Transform{Type: x.typ, ID: x.id}
			if x.bits != 0 {
				tr.Attributes = []ikewire.Attribute{{Type: ikewire.AttrKeyLength, Value: uint16(x.bits)}}
			}
			p.Transforms = append(p.Transforms, tr)
		}
	}
	return p
}

// wireOrder is the order of transform types in the proposals we send.
var wireOrder = []ikewire.TransformType{ikewire.TransformENCR, ikewire.TransformPRF, ikewire.TransformINTEG, ikewire.TransformKE, ikewire.TransformESN,
	ikewire.TransformADDKE1, ikewire.TransformADDKE1 + 1, ikewire.TransformADDKE1 + 2, ikewire.TransformADDKE1 + 3,
	ikewire.TransformADDKE1 + 4, ikewire.TransformADDKE1 + 5, ikewire.TransformADDKE7}

// parseOffer converts a received Proposal substructure. Transforms with
// attributes other than Key Length are dropped (RFC 7296, Section 3.3.6:
// unknown attributes make the transform unacceptable).
func parseOffer(p ikewire.Proposal) offer {
	o := offer{num: p.Num, proto: p.Protocol, spi: p.SPI, lists: map[ikewire.TransformType][]xform{}}
	for _, t := range p.Transforms {
		x := xform{typ: t.Type, id: t.ID}
		ok := true
		for _, a := range t.Attributes {
			if a.Type == ikewire.AttrKeyLength && !a.TLV {
				x.bits = int(a.Value)
			} else {
				ok = false
			}
		}
		if ok {
			o.add(x)
		} else if _, seen := o.lists[t.Type]; !seen {
			o.lists[t.Type] = nil // the type is present, with nothing acceptable
		}
	}
	return o
}

// pick returns the first transform of ours that theirs also lists. An
// absent list on either side stands for NONE when none is true.
func pick(ours, theirs []xform, none bool) (xform, bool) {
	if none {
		if len(ours) == 0 && len(theirs) == 0 {
			return xform{}, true
		}
		if len(ours) == 0 {
			ours = []xform{{}}
		}
		if len(theirs) == 0 {
			theirs = []xform{{}}
		}
	}
	for _, x := range ours {
		for _, y := range theirs {
			if x.id == y.id && x.bits == y.bits {
				return x, true
			}
		}
	}
	return xform{}, false
}

// unknownRequired reports whether a received proposal requires a transform
// type other than the known ones (those of RFC 7296 and the Additional Key
// Exchanges 1 to 7 of RFC 9370, Types 6 to 12); it then cannot match.
func unknownRequired(theirs offer) bool {
	for t, l := range theirs.lists {
		switch t {
		case ikewire.TransformENCR, ikewire.TransformPRF, ikewire.TransformINTEG, ikewire.TransformKE, ikewire.TransformESN:
			continue
		}
		if t >= ikewire.TransformADDKE1 && t <= ikewire.TransformADDKE7 {
			continue
		}
		if !slices.ContainsFunc(l, func(x xform) bool { return x.id == 0 }) {
			return true
		}
	}
	return false
}

// ikeSuite is a negotiated IKE SA suite.
type ikeSuite struct {
	encr  transform.EncrAlg
	integ iana.IntegID
	prf   iana.PRFID
	ke    iana.KEID
	// addKE are the Additional Key Exchange 1 to 7 methods, KENone for
	// those not negotiated (RFC 9370, Section 2.2.1).
	addKE [7]iana.KEID
}

// hasAddKE reports whether the suite has additional key exchanges.
func (s ikeSuite) hasAddKE() bool { return s.addKE != [7]iana.KEID{} }

func (s ikeSuite) keys() keys.Suite { return keys.Suite{PRF: s.prf, Encr: s.encr, Integ: s.integ} }

func (s ikeSuite) String() string {
	var b strings.Builder
	b.WriteString(s.encr.String())
	if s.integ != iana.IntegNone {
		fmt.Fprintf(&b, "-%s", integName(s.integ))
	}
	if prf, err := transform.NewPRF(s.prf); err == nil {
		b.WriteString("-" + prf.String())
	}
	b.WriteString("-" + transform.KEName(s.ke))
	for i, k := range s.addKE {
		if k != iana.KENone {
			fmt.Fprintf(&b, "-ke%d_%s", i+1, transform.KEName(k))
		}
	}
	return b.String()
}

func integName(id iana.IntegID) string {
	if s, err := transform.AHSuiteFor(id); err == nil {
		return s.Name
	}
	return fmt.Sprintf("integ%d", id)
}

// matchIKE matches one of our offers with one of theirs (RFC 7296, Section
// 3.3.6). ke, when not KENone, restricts the key exchange method.
func matchIKE(ours, theirs offer, ke iana.KEID) (ikeSuite, bool) {
	if theirs.proto != ikewire.ProtoIKE || unknownRequired(theirs) {
		return ikeSuite{}, false
	}
	var s ikeSuite
	T := func(t ikewire.TransformType) ([]xform, []xform) { return ours.lists[t], theirs.lists[t] }
	found := false
	o, t := T(ikewire.TransformENCR)
	for _, x := range o {
		if _, ok := pick([]xform{x}, t, false); !ok {
			continue
		}
		e := x.encr()
		oi, ti := T(ikewire.TransformINTEG)
		if e.AEAD() {
			// RFC 5282, Section 8: no integrity transform, or NONE.
			if _, ok := pick(nil, ti, true); !ok {
				continue
			}
			s.encr, s.integ, found = e, iana.IntegNone, true
			break
		}
		var nz []xform
		for _, y := range oi {
			if y.id != 0 {
				nz = append(nz, y)
			}
		}
		if i, ok := pick(nz, ti, false); ok {
			s.encr, s.integ, found = e, iana.IntegID(i.id), true
			break
		}
	}
	if !found {
		return ikeSuite{}, false
	}
	op, tp := T(ikewire.TransformPRF)
	prf, ok := pick(op, tp, false)
	if !ok {
		return ikeSuite{}, false
	}
	s.prf = iana.PRFID(prf.id)
	ok2, tk := T(ikewire.TransformKE)
	if ke != iana.KENone {
		ok2 = []xform{{typ: ikewire.TransformKE, id: uint16(ke)}}
		if !slices.Contains(ours.lists[ikewire.TransformKE], ok2[0]) {
			return ikeSuite{}, false
		}
	}
	k, ok := pick(ok2, tk, false)
	if !ok || k.id == 0 {
		return ikeSuite{}, false
	}
	s.ke = iana.KEID(k.id)
	// RFC 9370, Section 2.2.1: each Additional Key Exchange type is
	// negotiated like the others; an absent type stands for NONE.
	for i := range s.addKE {
		t := ikewire.TransformADDKE1 + ikewire.TransformType(i)
		a, ok := pick(ours.lists[t], theirs.lists[t], true)
		if !ok {
			return ikeSuite{}, false
		}
		s.addKE[i] = iana.KEID(a.id)
	}
	return s, true
}

// wireIKE returns the single-proposal answer for suite s.
func (s ikeSuite) wire(num uint8, spi []byte) ikewire.Proposal {
	o := offer{num: num, proto: ikewire.ProtoIKE, spi: spi, lists: map[ikewire.TransformType][]xform{}}
	o.add(encrXform(s.encr))
	o.add(xform{typ: ikewire.TransformPRF, id: uint16(s.prf)})
	if s.integ != iana.IntegNone {
		o.add(xform{typ: ikewire.TransformINTEG, id: uint16(s.integ)})
	}
	o.add(xform{typ: ikewire.TransformKE, id: uint16(s.ke)})
	for i, k := range s.addKE {
		if k != iana.KENone {
			o.add(xform{typ: ikewire.TransformADDKE1 + ikewire.TransformType(i), id: uint16(k)})
		}
	}
	return o.wire()
}

// selectIKE chooses an IKE suite: our proposals in order of preference
// against theirs (strongSwan's default), restricted to ke first so that
// the initiator's KE payload can be used, then without restriction. It
// returns the suite, the number of the peer's proposal, and whether the KE
// payload's method was chosen.
func selectIKE(ours []transform.IKEProposal, theirs []ikewire.Proposal, ke iana.KEID) (s ikeSuite, num uint8, keOK, ok bool) {
	for _, restrict := range []iana.KEID{ke, iana.KENone} {
		for _, p := range ours {
			o := ikeOffer(p)
			for _, tp := range theirs {
				if s, ok := matchIKE(o, parseOffer(tp), restrict); ok {
					return s, tp.Num, s.ke == ke, true
				}
			}
		}
	}
	return ikeSuite{}, 0, false, false
}

// ikeSuiteAllowed reports whether the suite of an IKE SA (encryption,
// integrity, PRF, key exchange method and every Additional Key Exchange of
// RFC 9370, Section 2.2.1) is one that proposals ps accept. IKE_SA_INIT
// chooses the suite with the proposals of the first peer whose addresses
// match; IKE_AUTH may select another peer by identity, whose proposals the
// suite must then satisfy too (RFC 7296, Section 2.7: an SA is only
// established with a proposal the configuration allows).
func ikeSuiteAllowed(ps []transform.IKEProposal, s ikeSuite) bool {
	theirs := parseOffer(s.wire(1, nil))
	for _, p := range ps {
		if got, ok := matchIKE(ikeOffer(p), theirs, s.ke); ok && got == s {
			return true
		}
	}
	return false
}

// checkIKEAnswer validates a responder's IKE proposal against what we
// offered (RFC 7296, Section 2.7: the answer holds one proposal, with one
// transform of each type, taken from the offer).
func checkIKEAnswer(ours []transform.IKEProposal, sap *ikewire.SA) (ikeSuite, []byte, error) {
	if sap == nil || len(sap.Proposals) != 1 {
		return ikeSuite{}, nil, fmt.Errorf("ike: the responder's SA payload must hold exactly one proposal")
	}
	ans := sap.Proposals[0]
	if err := singleTransforms(ans); err != nil {
		return ikeSuite{}, nil, err
	}
	if int(ans.Num) < 1 || int(ans.Num) > len(ours) {
		return ikeSuite{}, nil, fmt.Errorf("ike: the responder chose proposal %d (%s), which was not offered (configured %s)",
			ans.Num, proposalText(ans), ikeConfiguredText(ours))
	}
	s, ok := matchIKE(ikeOffer(ours[ans.Num-1]), parseOffer(ans), iana.KENone)
	if !ok {
		return ikeSuite{}, nil, fmt.Errorf("ike: the responder's proposal %s was not offered (configured %s)",
			proposalText(ans), ikeConfiguredText(ours))
	}
	return s, ans.SPI, nil
}

func singleTransforms(p ikewire.Proposal) error {
	seen := map[ikewire.TransformType]bool{}
	for _, t := range p.Transforms {
		if seen[t.Type] {
			return fmt.Errorf("ike: the answer has more than one transform of type %d", t.Type)
		}
		seen[t.Type] = true
	}
	return nil
}

// childSuite is a negotiated CHILD SA suite.
type childSuite struct {
	encr  transform.EncrAlg
	integ iana.IntegID
	ke    iana.KEID
	// addKE are the Additional Key Exchange 1 to 7 methods, KENone for
	// those not negotiated (RFC 9370, Section 2.2.3).
	addKE [7]iana.KEID
	esn   bool
	suite transform.Suite
}

// hasAddKE reports whether the suite has additional key exchanges.
func (s childSuite) hasAddKE() bool { return s.addKE != [7]iana.KEID{} }

// matchChild matches our child offer with theirs. withKE false ignores KE
// and Additional Key Exchange transforms on both sides (IKE_AUTH, RFC 7296,
// Section 1.2; RFC 9370, Section 2.2.3).
func matchChild(ours, theirs offer, withKE bool) (childSuite, bool) {
	if theirs.proto != ours.proto || unknownRequired(theirs) {
		return childSuite{}, false
	}
	var s childSuite
	T := func(t ikewire.TransformType) ([]xform, []xform) { return ours.lists[t], theirs.lists[t] }
	oi, ti := T(ikewire.TransformINTEG)
	found := false
	if ours.proto == ikewire.ProtoAH {
		var nz []xform
		for _, y := range oi {
			if y.id != 0 {
				nz = append(nz, y)
			}
		}
		i, ok := pick(nz, ti, false)
		if !ok {
			return childSuite{}, false
		}
		st, err := transform.AHSuiteFor(iana.IntegID(i.id))
		if err != nil {
			return childSuite{}, false
		}
		s.integ, s.suite, found = iana.IntegID(i.id), st, true
	} else {
		o, t := T(ikewire.TransformENCR)
		for _, x := range o {
			if _, ok := pick([]xform{x}, t, false); !ok {
				continue
			}
			e := x.encr()
			integ := iana.IntegNone
			if e.AEAD() {
				if _, ok := pick(nil, ti, true); !ok {
					continue
				}
			} else {
				var nz []xform
				for _, y := range oi {
					if y.id != 0 {
						nz = append(nz, y)
					}
				}
				i, ok := pick(nz, ti, false)
				if !ok {
					continue
				}
				integ = iana.IntegID(i.id)
			}
			st, err := transform.SuiteFor(e, integ)
			if err != nil {
				continue
			}
			s.encr, s.integ, s.suite, found = e, integ, st, true
			break
		}
	}
	if !found {
		return childSuite{}, false
	}
	if withKE {
		k, ok := pick(ours.lists[ikewire.TransformKE], theirs.lists[ikewire.TransformKE], true)
		if !ok {
			return childSuite{}, false
		}
		s.ke = iana.KEID(k.id)
		// RFC 9370, Section 2.2.1: each Additional Key Exchange type is
		// negotiated like the others; an absent type stands for NONE.
		for i := range s.addKE {
			t := ikewire.TransformADDKE1 + ikewire.TransformType(i)
			a, ok := pick(ours.lists[t], theirs.lists[t], true)
			if !ok {
				return childSuite{}, false
			}
			s.addKE[i] = iana.KEID(a.id)
		}
		if s.ke == iana.KENone && s.hasAddKE() {
			// The key exchanges are SK(0), SK(1), ... (RFC 9370,
			// Section 2.2.4): additional ones need the first.
			return childSuite{}, false
		}
	}
	e, ok := pick(ours.lists[ikewire.TransformESN], theirs.lists[ikewire.TransformESN], true)
	if !ok {
		return childSuite{}, false
	}
	s.esn = e.id == 1
	return s, true
}

// wire returns the single-proposal answer for the child suite.
func (s childSuite) wire(num uint8, proto ikewire.ProtocolID, spi []byte) ikewire.Proposal {
	o := offer{num: num, proto: proto, spi: spi, lists: map[ikewire.TransformType][]xform{}}
	if proto == ikewire.ProtoESP {
		o.add(encrXform(s.encr))
	}
	if s.integ != iana.IntegNone {
		o.add(xform{typ: ikewire.TransformINTEG, id: uint16(s.integ)})
	}
	if s.ke != iana.KENone {
		o.add(xform{typ: ikewire.TransformKE, id: uint16(s.ke)})
	}
	for i, k := range s.addKE {
		if k != iana.KENone {
			o.add(xform{typ: ikewire.TransformADDKE1 + ikewire.TransformType(i), id: uint16(k)})
		}
	}
	x := xform{typ: ikewire.TransformESN}
	if s.esn {
		x.id = 1
	}
	o.add(x)
	return o.wire()
}

// childOffers returns our child proposals as wire proposals numbered from 1
// with SPI spi.
func childOffers(c *ChildConfig, spi uint32, withKE bool) []ikewire.Proposal {
	var out []ikewire.Proposal
	for i, p := range c.proposals() {
		o := childOffer(p, c.protocol(), withKE)
		o.num = uint8(i + 1)
		o.spi = spiBytes(spi)
		out = append(out, o.wire())
	}
	return out
}

// selectChild chooses a child suite for the peer's proposals. ke restricts
// the key exchange method to the peer's KE payload when not KENone. It
// returns the suite, the peer's proposal (for its number and SPI), and
// ok. keOK is false when a suite matched only with another KE method than
// the KE payload's (the caller answers INVALID_KE_PAYLOAD).
func selectChild(c *ChildConfig, theirs []ikewire.Proposal, withKE bool, ke iana.KEID) (s childSuite, tp ikewire.Proposal, keOK, ok bool) {
	for pass := 0; pass < 2; pass++ {
		for _, p := range c.proposals() {
			o := childOffer(p, c.protocol(), withKE)
			for _, t := range theirs {
				s, ok := matchChild(o, parseOffer(t), withKE)
				if !ok || (pass == 0 && withKE && s.ke != ke) {
					continue
				}
				if len(t.SPI) != 4 {
					continue
				}
				return s, t, !withKE || s.ke == ke, true
			}
		}
	}
	return childSuite{}, ikewire.Proposal{}, false, false
}

// checkChildAnswer validates the responder's child proposal.
func checkChildAnswer(c *ChildConfig, sap *ikewire.SA, withKE bool) (childSuite, uint32, error) {
	if sap == nil || len(sap.Proposals) != 1 {
		return childSuite{}, 0, fmt.Errorf("ike: the responder's child SA payload must hold exactly one proposal")
	}
	ans := sap.Proposals[0]
	if err := singleTransforms(ans); err != nil {
		return childSuite{}, 0, err
	}
	props := c.proposals()
	if int(ans.Num) < 1 || int(ans.Num) > len(props) || len(ans.SPI) != 4 {
		return childSuite{}, 0, fmt.Errorf("ike: the responder chose child proposal %d (%s), which was not offered (configured %s)",
			ans.Num, proposalText(ans), childConfiguredText(c))
	}
	s, ok := matchChild(childOffer(props[ans.Num-1], c.protocol(), withKE), parseOffer(ans), withKE)
	if !ok {
		return childSuite{}, 0, fmt.Errorf("ike: the responder's child proposal %s was not offered (configured %s)",
			proposalText(ans), childConfiguredText(c))
	}
	return s, spiValue(ans.SPI), nil
}

// The texts below describe a refused negotiation for the log, in
// strongSwan's proposal syntax, so that an operator can compare both sides
// at a glance (RFC 7296, Section 3.10.1: NO_PROPOSAL_CHOSEN itself says
// nothing of what was offered).

// offeredText returns the peer's proposals: "[aes128-sha256-modp2048,
// aes256gcm16-prfsha256-x25519]".
func offeredText(ps []ikewire.Proposal) string {
	texts := make([]string, 0, len(ps))
	for _, p := range ps {
		texts = append(texts, proposalText(p))
	}
	return "[" + strings.Join(texts, ", ") + "]"
}

// proposalText returns one received proposal in strongSwan syntax; an ESP
// or AH proposal is prefixed "ah:" for AH, an unknown protocol or
// transform is shown by number.
func proposalText(p ikewire.Proposal) string {
	o := parseOffer(p)
	var ke []iana.KEID
	var addKE [7][]iana.KEID
	for _, x := range o.lists[ikewire.TransformKE] {
		ke = append(ke, iana.KEID(x.id))
	}
	for i := range addKE {
		for _, x := range o.lists[ikewire.TransformADDKE1+ikewire.TransformType(i)] {
			addKE[i] = append(addKE[i], iana.KEID(x.id))
		}
	}
	var encr []transform.EncrAlg
	for _, x := range o.lists[ikewire.TransformENCR] {
		encr = append(encr, x.encr())
	}
	var integ []iana.IntegID
	for _, x := range o.lists[ikewire.TransformINTEG] {
		if x.id != 0 {
			integ = append(integ, iana.IntegID(x.id))
		}
	}
	switch p.Protocol {
	case ikewire.ProtoIKE:
		ip := transform.IKEProposal{Encr: encr, Integ: integ, KE: ke, AddKE: addKE}
		for _, x := range o.lists[ikewire.TransformPRF] {
			ip.PRF = append(ip.PRF, iana.PRFID(x.id))
		}
		return ip.String()
	case ikewire.ProtoESP, ikewire.ProtoAH:
		cp := transform.ESPProposal{Encr: encr, Integ: integ, KE: ke, AddKE: addKE}
		for _, x := range o.lists[ikewire.TransformESN] {
			cp.ESN = append(cp.ESN, x.id == 1)
		}
		if p.Protocol == ikewire.ProtoAH {
			return "ah:" + cp.String()
		}
		return cp.String()
	}
	return fmt.Sprintf("protocol%d", p.Protocol)
}

// ikeConfiguredText returns our IKE proposals.
func ikeConfiguredText(ps []transform.IKEProposal) string {
	texts := make([]string, 0, len(ps))
	for _, p := range ps {
		texts = appendNew(texts, p.String())
	}
	return "[" + strings.Join(texts, ", ") + "]"
}

// peersConfiguredText returns the IKE proposals of the peers a responder
// considered, each once.
func peersConfiguredText(peers []*Peer) string {
	var texts []string
	for _, p := range peers {
		for _, ip := range p.proposals() {
			texts = appendNew(texts, ip.String())
		}
	}
	return "[" + strings.Join(texts, ", ") + "]"
}

// childConfiguredText returns the proposals of the children considered,
// each once.
func childConfiguredText(cs ...*ChildConfig) string {
	var texts []string
	for _, c := range cs {
		for _, p := range c.proposals() {
			t := p.String()
			if c.protocol() == sa.AH {
				t = "ah:" + t
			}
			texts = appendNew(texts, t)
		}
	}
	return "[" + strings.Join(texts, ", ") + "]"
}

func appendNew(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
}

func spiBytes(spi uint32) []byte {
	return []byte{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi)}
}

func spiValue(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func spi64Bytes(spi uint64) []byte {
	b := make([]byte, 8)
	for i := range 8 {
		b[i] = byte(spi >> (56 - 8*i))
	}
	return b
}

func spi64Value(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// firstKE returns the first KE method of the child's first proposal that
// has one, KENone without PFS.
func firstKE(c *ChildConfig) iana.KEID {
	for _, p := range c.proposals() {
		for _, k := range p.KE {
			if k != iana.KENone {
				return k
			}
		}
	}
	return iana.KENone
}

// offersKE reports whether our IKE proposals include method ke.
func offersIKEKE(ps []transform.IKEProposal, ke iana.KEID) bool {
	for _, p := range ps {
		if slices.Contains(p.KE, ke) {
			return true
		}
	}
	return false
}

func offersChildKE(c *ChildConfig, ke iana.KEID) bool {
	for _, p := range c.proposals() {
		if slices.Contains(p.KE, ke) {
			return true
		}
	}
	return false
}
