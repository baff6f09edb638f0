package transform

// The strongSwan proposal syntax of IKE and Child SAs: the keyword strings of
// swanctl.conf "proposals", "esp_proposals" and "ah_proposals" parsed into
// the lists of transforms that an SA payload offers (RFC 7296, Section 3.3).

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goipsec/goipsec/iana"
)

// IKEProposal is one IKE SA proposal (RFC 7296, Section 3.3): each field
// lists the acceptable transforms of one type, in order of preference, and
// any one of each type may be chosen. For AEAD proposals Integ is empty.
// AddKE[i] lists the Additional Key Exchange i+1 methods (Transform Types 6
// to 12, RFC 9370, Section 2.2.1); a KENone entry in it makes that exchange
// optional, an empty list means the proposal has none.
type IKEProposal struct {
	Encr  []EncrAlg
	Integ []iana.IntegID
	PRF   []iana.PRFID
	KE    []iana.KEID
	AddKE [7][]iana.KEID
}

// ESPProposal is one ESP (or, from ParseAHProposal, AH) Child SA proposal.
// For AEAD and AES-GMAC proposals Integ is empty; for AH Encr is. KE lists
// the key exchange methods for perfect forward secrecy in CREATE_CHILD_SA
// (RFC 7296, Section 1.3.1), empty without PFS. ESN lists the Extended
// Sequence Numbers transforms (Type 5) in order of preference: false is "No
// ESN" (0), true is "ESN" (1) (RFC 7296, Section 3.3.2); the parsers fill in
// [false] when the string names neither, as strongSwan does.
type ESPProposal struct {
	Encr  []EncrAlg
	Integ []iana.IntegID
	KE    []iana.KEID
	AddKE [7][]iana.KEID
	ESN   []bool
}

// Suites returns the ESP or AH suites that the proposal allows: each AEAD or
// AES-GMAC algorithm, each cipher with each integrity algorithm, or for AH
// each integrity algorithm, in order of preference.
func (p ESPProposal) Suites() []Suite {
	var out []Suite
	if len(p.Encr) == 0 {
		for _, id := range p.Integ {
			if i, ok := integByID(id); ok {
				out = append(out, Suite{Name: i.name, Kind: KindIntegrity, Integ: id})
			}
		}
		return out
	}
	for _, e := range p.Encr {
		if e.AEAD() {
			if s, err := SuiteFor(e, iana.IntegNone); err == nil {
				out = append(out, s)
			}
			continue
		}
		for _, i := range p.Integ {
			if s, err := SuiteFor(e, i); err == nil {
				out = append(out, s)
			}
		}
	}
	return out
}

// SuiteFor returns the ESP suite of a negotiated encryption and integrity
// transform (IntegNone for AEADs and AES-GMAC), as NewESP takes it.
func SuiteFor(e EncrAlg, integ iana.IntegID) (Suite, error) {
	name := e.String()
	if integ != iana.IntegNone {
		i, ok := integByID(integ)
		if !ok {
			return Suite{}, fmt.Errorf("%w: integrity transform %d", ErrUnknownSuite, integ)
		}
		name += "-" + i.name
	}
	return ParseESP(name)
}

// AHSuiteFor returns the AH suite of a negotiated integrity transform.
func AHSuiteFor(integ iana.IntegID) (Suite, error) {
	i, ok := integByID(integ)
	if !ok {
		return Suite{}, fmt.Errorf("%w: integrity transform %d", ErrUnknownSuite, integ)
	}
	return ParseAH(i.name)
}

// prfForInteg is strongSwan's rule for IKE proposals without a prf keyword:
// the PRF of the same hash as the integrity algorithm.
var prfForInteg = map[iana.IntegID]iana.PRFID{
	iana.IntegHMACSHA1_96:  iana.PRFHMACSHA1,
	iana.IntegHMACSHA2_256: iana.PRFHMACSHA2_256,
	iana.IntegHMACSHA2_384: iana.PRFHMACSHA2_384,
	iana.IntegHMACSHA2_512: iana.PRFHMACSHA2_512,
	iana.IntegAESXCBC96:    iana.PRFAES128XCBC,
}

// weakKeywords are strongSwan keywords for algorithms that RFC 8247 forbids
// or discourages and that this package refuses, with the reason.
var weakKeywords = map[string]string{
	"des":          "DES (RFC 8247, Section 2.1: MUST NOT)",
	"3des":         "3DES (RFC 8247, Section 2.1: MAY, but 64-bit blocks; not implemented)",
	"des3":         "3DES (RFC 8247, Section 2.1; not implemented)",
	"md5":          "HMAC-MD5-96 (RFC 8247, Section 2.3: MUST NOT)",
	"md5_128":      "HMAC-MD5-128 (RFC 8247, Section 2.3: MUST NOT)",
	"prfmd5":       "PRF_HMAC_MD5 (RFC 8247, Section 2.2: MUST NOT)",
	"modp768":      "MODP-768, group 1 (RFC 8247, Section 2.4: MUST NOT)",
	"modp1024":     "MODP-1024, group 2 (RFC 8247, Section 2.4: SHOULD NOT)",
	"modp1536":     "MODP-1536, group 5 (RFC 8247, Section 2.4: SHOULD NOT)",
	"modp1024s160": "MODP-1024 with 160-bit subgroup, group 22 (RFC 8247, Section 2.4: SHOULD NOT)",
}

// weak returns the ErrWeak error for a refused keyword, or nil.
func weak(tok, what, s string) error {
	if why, ok := weakKeywords[tok]; ok {
		return fmt.Errorf("%w: %s %q: %s is refused", ErrWeak, what, s, why)
	}
	return nil
}

// unimplementedKeywords are strongSwan keywords this package knows but does
// not implement, with what they are.
var unimplementedKeywords = map[string]string{
	"aes128ccm8": "AES-CCM", "aes128ccm12": "AES-CCM", "aes128ccm16": "AES-CCM",
	"aes192ccm8": "AES-CCM", "aes192ccm12": "AES-CCM", "aes192ccm16": "AES-CCM",
	"aes256ccm8": "AES-CCM", "aes256ccm12": "AES-CCM", "aes256ccm16": "AES-CCM",
	"camellia128": "Camellia", "camellia192": "Camellia", "camellia256": "Camellia",
	"aescmac": "AES-CMAC-96 (RFC 4494)", "prfaescmac": "PRF_AES128_CMAC (RFC 4615)",
	"sha256_96":  "HMAC-SHA2-256-96 (non-standard truncation)",
	"aes128gmac": "AES-GMAC in IKE", "aes192gmac": "AES-GMAC in IKE", "aes256gmac": "AES-GMAC in IKE",
}

// splitProposal lowercases a proposal string and splits it into keywords.
func splitProposal(s string) ([]string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return nil, fmt.Errorf("transform: empty proposal")
	}
	toks := strings.Split(t, "-")
	for _, tok := range toks {
		if tok == "" {
			return nil, fmt.Errorf("transform: proposal %q has an empty keyword", s)
		}
	}
	return toks, nil
}

// parseKEToken handles the key exchange keywords common to IKE and Child
// proposals: a method (PFS or the IKE SA's KE) or "keN_method" for the
// additional key exchanges of RFC 9370 (strongSwan 6 syntax; "keN_none"
// makes exchange N optional). It reports whether tok was one.
func parseKEToken(tok, s string, ke *[]iana.KEID, add *[7][]iana.KEID) (bool, error) {
	if len(tok) > 4 && tok[0] == 'k' && tok[1] == 'e' && tok[2] >= '1' && tok[2] <= '7' && tok[3] == '_' {
		n := int(tok[2] - '1')
		rest := tok[4:]
		if rest == "none" {
			add[n] = appendUnique(add[n], iana.KENone)
			return true, nil
		}
		id, err := ParseKE(rest)
		if err != nil {
			return true, fmt.Errorf("%w (in %q of proposal %q)", err, tok, s)
		}
		add[n] = appendUnique(add[n], id)
		return true, nil
	}
	if err := weak(tok, "key exchange in proposal", s); err != nil {
		return true, err
	}
	id, err := ParseKE(tok)
	if errors.Is(err, ErrUnknownSuite) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%w (in proposal %q)", err, s)
	}
	*ke = appendUnique(*ke, id)
	return true, nil
}

func appendUnique[T comparable](l []T, v T) []T {
	for _, x := range l {
		if x == v {
			return l
		}
	}
	return append(l, v)
}

// ParseIKEProposal parses a strongSwan IKE proposal ("proposals" in
// swanctl.conf), case insensitively: keywords joined by dashes, any number
// of each transform type, each list meaning "any of, in this order":
//
//	aes256gcm16-prfsha256-x25519
//	aes128gcm16-prfsha384-ecp384
//	chacha20poly1305-prfsha512-curve25519
//	aes256-sha256-modp2048
//	aes128-aes256-sha256-sha384-modp2048-ecp256
//	aes256gcm16-prfsha384-x25519-ke1_mlkem768     (RFC 9370)
//
// Encryption is AES-CBC (aes128, aes192, aes256), AES-GCM (aesNNNgcm8/12/16)
// or chacha20poly1305; integrity is sha1, sha256, sha384, sha512 or aesxcbc;
// PRFs as ParsePRF; key exchanges as ParseKE, and keN_method (N = 1..7) for
// the additional key exchanges of RFC 9370. Without a prf keyword, the PRFs
// are those of the integrity algorithms, as strongSwan derives them (sha256
// gives prfsha256); an AEAD proposal therefore needs a prf keyword. AEAD and
// non-AEAD algorithms cannot share a proposal (RFC 7296, Section 3.3): write
// two. A key exchange method is required.
//
// prfsha1 (written or derived from sha1) is accepted for old peers, but
// never offered by DefaultIKEProposals (RFC 8247, Section 2.2). Weak
// algorithms (modp768, modp1024, modp1536, des, 3des, md5, prfmd5) wrap
// ErrWeak; known algorithms this package does not implement wrap
// ErrNotImplemented; anything else wraps ErrUnknownSuite.
func ParseIKEProposal(s string) (IKEProposal, error) {
	toks, err := splitProposal(s)
	if err != nil {
		return IKEProposal{}, err
	}
	var p IKEProposal
	for _, tok := range toks {
		if err := weak(tok, "IKE proposal", s); err != nil {
			return IKEProposal{}, err
		}
		if what, ok := unimplementedKeywords[tok]; ok {
			return IKEProposal{}, fmt.Errorf("%w: %s (%q in IKE proposal %q)", ErrNotImplemented, what, tok, s)
		}
		if e, ok := lookupEncr(tok); ok {
			switch {
			case e.id == iana.EncrNull:
				return IKEProposal{}, fmt.Errorf("transform: IKE proposal %q: IKE SAs are always encrypted; %q is for ESP only (RFC 7296, Section 3.3.2)", s, tok)
			case e.id == iana.EncrAESCTR:
				return IKEProposal{}, fmt.Errorf("%w: AES-CTR for IKE SAs (RFC 5930); use aes128 or aes128gcm16 (%q in IKE proposal %q)", ErrNotImplemented, tok, s)
			}
			p.Encr = appendUnique(p.Encr, EncrAlg{e.id, e.bits})
			continue
		}
		if i, ok := lookupInteg(tok); ok {
			p.Integ = appendUnique(p.Integ, i.id)
			continue
		}
		if strings.HasPrefix(tok, "prf") {
			prf, err := ParsePRF(tok)
			if err != nil {
				return IKEProposal{}, fmt.Errorf("%w (in IKE proposal %q)", err, s)
			}
			p.PRF = appendUnique(p.PRF, prf.ID())
			continue
		}
		ok, err := parseKEToken(tok, s, &p.KE, &p.AddKE)
		if err != nil {
			return IKEProposal{}, err
		}
		if ok {
			continue
		}
		if tok == "esn" || tok == "noesn" {
			return IKEProposal{}, fmt.Errorf("transform: IKE proposal %q: %q is for ESP and AH proposals only", s, tok)
		}
		return IKEProposal{}, fmt.Errorf("%w %q in IKE proposal %q", ErrUnknownSuite, tok, s)
	}
	if err := p.check(s); err != nil {
		return IKEProposal{}, err
	}
	return p, nil
}

// check applies the rules of a complete IKE proposal and derives the PRFs
// of proposals without one.
func (p *IKEProposal) check(s string) error {
	if len(p.Encr) == 0 {
		return fmt.Errorf("transform: IKE proposal %q has no encryption algorithm, as in %q", s, "aes256gcm16-prfsha256-x25519")
	}
	aead := p.Encr[0].AEAD()
	for _, e := range p.Encr[1:] {
		if e.AEAD() != aead {
			return fmt.Errorf("transform: IKE proposal %q mixes combined-mode (AEAD) and other encryption algorithms; write them as two proposals (RFC 7296, Section 3.3)", s)
		}
	}
	switch {
	case aead && len(p.Integ) > 0:
		return fmt.Errorf("transform: IKE proposal %q: %s is a combined-mode algorithm and takes no integrity algorithm (RFC 7296, Section 3.3)", s, p.Encr[0])
	case !aead && len(p.Integ) == 0:
		return fmt.Errorf("transform: IKE proposal %q: %s needs an integrity algorithm, as in %q", s, p.Encr[0], p.Encr[0].String()+"-sha256-x25519")
	}
	if len(p.PRF) == 0 {
		for _, i := range p.Integ {
			if prf, ok := prfForInteg[i]; ok {
				p.PRF = appendUnique(p.PRF, prf)
			}
		}
		if len(p.PRF) == 0 {
			return fmt.Errorf("transform: IKE proposal %q has no PRF; add one, as in %q", s, p.Encr[0].String()+"-prfsha256-x25519")
		}
	}
	if len(p.KE) == 0 {
		return fmt.Errorf("transform: IKE proposal %q has no key exchange method, as in %q", s, "aes256gcm16-prfsha256-x25519")
	}
	for _, id := range p.KE {
		if id == iana.KENone {
			return fmt.Errorf("transform: IKE proposal %q: the IKE SA's key exchange cannot be none (RFC 7296, Section 2.18)", s)
		}
	}
	return nil
}

// String returns the proposal in strongSwan syntax, with canonical keywords.
func (p IKEProposal) String() string {
	var b strings.Builder
	for _, e := range p.Encr {
		addKeyword(&b, e.String())
	}
	for _, i := range p.Integ {
		addKeyword(&b, integName(i))
	}
	for _, id := range p.PRF {
		prf, err := NewPRF(id)
		if err != nil {
			addKeyword(&b, fmt.Sprintf("prf%d", id))
			continue
		}
		addKeyword(&b, prf.String())
	}
	writeKE(&b, p.KE, &p.AddKE)
	return b.String()
}

func addKeyword(b *strings.Builder, k string) {
	if b.Len() > 0 {
		b.WriteByte('-')
	}
	b.WriteString(k)
}

func integName(id iana.IntegID) string {
	if i, ok := integByID(id); ok {
		return i.name
	}
	return fmt.Sprintf("integ%d", id)
}

func writeKE(b *strings.Builder, ke []iana.KEID, add *[7][]iana.KEID) {
	for _, id := range ke {
		addKeyword(b, KEName(id))
	}
	for n, l := range add {
		for _, id := range l {
			addKeyword(b, fmt.Sprintf("ke%d_%s", n+1, KEName(id)))
		}
	}
}

// ParseESPProposal parses a strongSwan ESP proposal ("esp_proposals" in
// swanctl.conf), case insensitively:
//
//	aes256gcm16
//	aes256gcm16-x25519            (with PFS, RFC 7296 Section 1.3.1)
//	aes128-sha256-esn
//	aes128gcm16-esn-noesn         (either)
//	aes128-aes256-sha256-sha384   (any of each)
//	aes256gcm16-x25519-ke1_mlkem768
//
// Encryption and integrity keywords are those of ParseESP, and each
// combination must be one that ParseESP accepts (a cipher needs an
// integrity algorithm; AEADs and AES-GMAC take none). AEAD and non-AEAD
// algorithms cannot share a proposal: write two. Key exchange keywords are
// those of ParseKE and ParseIKEProposal; esn and noesn select the Extended
// Sequence Numbers transforms, and noesn alone is the default. A prf
// keyword is an error: Child SAs derive keys with the IKE SA's PRF.
func ParseESPProposal(s string) (ESPProposal, error) {
	return parseChildProposal(s, false)
}

// ParseAHProposal parses a strongSwan AH proposal ("ah_proposals"):
// integrity keywords of ParseAH ("sha256", "sha384-sha512"), optionally with
// key exchange methods for PFS and esn/noesn, as ParseESPProposal does. The
// result has no Encr.
func ParseAHProposal(s string) (ESPProposal, error) {
	return parseChildProposal(s, true)
}

func parseChildProposal(s string, ah bool) (ESPProposal, error) {
	proto := "ESP"
	if ah {
		proto = "AH"
	}
	toks, err := splitProposal(s)
	if err != nil {
		return ESPProposal{}, err
	}
	var (
		p       ESPProposal
		encrKws []string
		integ   []string
	)
	for _, tok := range toks {
		switch tok {
		case "esn":
			p.ESN = appendUnique(p.ESN, true)
			continue
		case "noesn":
			p.ESN = appendUnique(p.ESN, false)
			continue
		}
		if err := weak(tok, proto+" proposal", s); err != nil {
			return ESPProposal{}, err
		}
		if e, ok := lookupEncr(tok); ok {
			if ah {
				return ESPProposal{}, fmt.Errorf("transform: AH proposal %q: AH has no encryption; %q is for ESP", s, tok)
			}
			p.Encr = appendUnique(p.Encr, EncrAlg{e.id, e.bits})
			encrKws = appendUnique(encrKws, e.name)
			continue
		}
		if i, ok := lookupInteg(tok); ok {
			p.Integ = appendUnique(p.Integ, i.id)
			integ = appendUnique(integ, i.name)
			continue
		}
		if strings.HasPrefix(tok, "prf") {
			return ESPProposal{}, fmt.Errorf("transform: %s proposal %q: %q is a PRF, which only IKE proposals name (Child SA keys come from the IKE SA's PRF, RFC 7296 Section 2.17)", proto, s, tok)
		}
		ok, err := parseKEToken(tok, s, &p.KE, &p.AddKE)
		if err != nil {
			return ESPProposal{}, err
		}
		if ok {
			continue
		}
		if what, ok := unimplementedKeywords[tok]; ok && !strings.HasSuffix(tok, "gmac") {
			return ESPProposal{}, fmt.Errorf("%w: %s (%q in %s proposal %q)", ErrNotImplemented, what, tok, proto, s)
		}
		return ESPProposal{}, fmt.Errorf("%w %q in %s proposal %q", ErrUnknownSuite, tok, proto, s)
	}
	if len(p.ESN) == 0 {
		p.ESN = []bool{false}
	}
	for _, l := range p.AddKE {
		if len(l) > 0 && len(p.KE) == 0 {
			// RFC 9370, Section 2.2.4: the additional key exchanges of
			// CREATE_CHILD_SA follow its first, SK(0), which is PFS.
			return ESPProposal{}, fmt.Errorf("transform: %s proposal %q: additional key exchanges (keN_) need a key exchange method for PFS, as in %q", proto, s, "aes256gcm16-x25519-ke1_mlkem768")
		}
	}
	if ah {
		if len(p.Integ) == 0 {
			return ESPProposal{}, fmt.Errorf("transform: AH proposal %q has no integrity algorithm, as in %q", s, "sha256")
		}
		for _, i := range integ {
			if _, err := ParseAH(i); err != nil {
				return ESPProposal{}, fmt.Errorf("%w (in AH proposal %q)", err, s)
			}
		}
		return p, nil
	}
	if len(p.Encr) == 0 {
		return ESPProposal{}, fmt.Errorf("transform: ESP proposal %q has no encryption algorithm; for integrity only use %q", s, "null-sha256")
	}
	aead := p.Encr[0].AEAD()
	for _, e := range p.Encr[1:] {
		if e.AEAD() != aead {
			return ESPProposal{}, fmt.Errorf("transform: ESP proposal %q mixes combined-mode (AEAD) and other encryption algorithms; write them as two proposals (RFC 7296, Section 3.3)", s)
		}
	}
	// Every combination must be an ESP suite, by ParseESP's own rules.
	for _, e := range encrKws {
		if aead {
			name := e
			if len(integ) > 0 {
				name += "-" + integ[0]
			}
			if _, err := ParseESP(name); err != nil {
				return ESPProposal{}, fmt.Errorf("%w (in ESP proposal %q)", err, s)
			}
			continue
		}
		if len(integ) == 0 {
			if _, err := ParseESP(e); err != nil {
				return ESPProposal{}, fmt.Errorf("%w (in ESP proposal %q)", err, s)
			}
		}
		for _, i := range integ {
			if _, err := ParseESP(e + "-" + i); err != nil {
				return ESPProposal{}, fmt.Errorf("%w (in ESP proposal %q)", err, s)
			}
		}
	}
	return p, nil
}

// String returns the proposal in strongSwan syntax, with canonical keywords.
func (p ESPProposal) String() string {
	var b strings.Builder
	for _, e := range p.Encr {
		addKeyword(&b, e.String())
	}
	for _, i := range p.Integ {
		addKeyword(&b, integName(i))
	}
	writeKE(&b, p.KE, &p.AddKE)
	if len(p.ESN) == 1 && !p.ESN[0] {
		return b.String() // the default
	}
	for _, e := range p.ESN {
		if e {
			addKeyword(&b, "esn")
		} else {
			addKeyword(&b, "noesn")
		}
	}
	return b.String()
}

// The default proposals, in strongSwan syntax. They follow RFC 8247
// (Sections 2.1 to 2.4) and RFC 8221 (Section 5): no SHA-1 PRF, no MODP
// group under 3072 bits.
const (
	defaultIKEAEAD   = "aes256gcm16-aes128gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-modp3072"
	defaultIKECipher = "aes256-aes128-sha256-sha384-sha512-x25519-ecp256-modp3072"
	defaultESPAEAD   = "aes256gcm16-aes128gcm16-chacha20poly1305"
	defaultESPCipher = "aes256-aes128-sha256"
)

// DefaultIKEProposals returns the IKE proposals offered when the
// configuration names none:
//
//	aes256gcm16-aes128gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-modp3072
//	aes256-aes128-sha256-sha384-sha512-x25519-ecp256-modp3072
//
// It returns new slices on every call.
func DefaultIKEProposals() []IKEProposal {
	out := make([]IKEProposal, 0, 2)
	for _, s := range []string{defaultIKEAEAD, defaultIKECipher} {
		p, err := ParseIKEProposal(s)
		if err != nil {
			panic(err) // a test parses them
		}
		out = append(out, p)
	}
	return out
}

// DefaultESPProposals returns the ESP proposals offered when the
// configuration names none, without PFS and without ESN:
//
//	aes256gcm16-aes128gcm16-chacha20poly1305
//	aes256-aes128-sha256
//
// It returns new slices on every call.
func DefaultESPProposals() []ESPProposal {
	out := make([]ESPProposal, 0, 2)
	for _, s := range []string{defaultESPAEAD, defaultESPCipher} {
		p, err := ParseESPProposal(s)
		if err != nil {
			panic(err)
		}
		out = append(out, p)
	}
	return out
}
