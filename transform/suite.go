package transform

import (
	"fmt"
	"strings"

	"github.com/goipsec/goipsec/iana"
)

// encrAlg is one encryption keyword: a cipher, an AEAD or AES-GMAC.
type encrAlg struct {
	name string // canonical strongSwan keyword
	kind Kind   // KindAEAD, KindGMAC or KindCipher
	id   iana.EncrID
	bits int
}

// integAlg is one integrity keyword.
type integAlg struct {
	name   string // canonical strongSwan keyword
	id     iana.IntegID
	keyLen int // RFC 2404 Section 3, RFC 4868 Section 2.1.1, RFC 3566 Section 4
	icvLen int // RFC 2404 Section 2, RFC 4868 Section 2.1.1, RFC 3566 Section 4.1
}

// The canonical keywords, in the order ESPSuites and AHSuites list them.
var (
	encrAlgs = []encrAlg{
		{"aes128gcm16", KindAEAD, iana.EncrAESGCM16, 128},
		{"aes192gcm16", KindAEAD, iana.EncrAESGCM16, 192},
		{"aes256gcm16", KindAEAD, iana.EncrAESGCM16, 256},
		{"aes128gcm12", KindAEAD, iana.EncrAESGCM12, 128},
		{"aes192gcm12", KindAEAD, iana.EncrAESGCM12, 192},
		{"aes256gcm12", KindAEAD, iana.EncrAESGCM12, 256},
		{"aes128gcm8", KindAEAD, iana.EncrAESGCM8, 128},
		{"aes192gcm8", KindAEAD, iana.EncrAESGCM8, 192},
		{"aes256gcm8", KindAEAD, iana.EncrAESGCM8, 256},
		{"chacha20poly1305", KindAEAD, iana.EncrChaCha20Poly1305, 256},
		{"aes128gmac", KindGMAC, iana.EncrNullAuthAESGMAC, 128},
		{"aes192gmac", KindGMAC, iana.EncrNullAuthAESGMAC, 192},
		{"aes256gmac", KindGMAC, iana.EncrNullAuthAESGMAC, 256},
		{"aes128", KindCipher, iana.EncrAESCBC, 128},
		{"aes192", KindCipher, iana.EncrAESCBC, 192},
		{"aes256", KindCipher, iana.EncrAESCBC, 256},
		{"aes128ctr", KindCipher, iana.EncrAESCTR, 128},
		{"aes192ctr", KindCipher, iana.EncrAESCTR, 192},
		{"aes256ctr", KindCipher, iana.EncrAESCTR, 256},
		{"null", KindCipher, iana.EncrNull, 0},
	}
	integAlgs = []integAlg{
		{"sha1", iana.IntegHMACSHA1_96, 20, 12},
		{"sha256", iana.IntegHMACSHA2_256, 32, 16},
		{"sha384", iana.IntegHMACSHA2_384, 48, 24},
		{"sha512", iana.IntegHMACSHA2_512, 64, 32},
		{"aesxcbc", iana.IntegAESXCBC96, 16, 12},
	}
)

// Aliases that strongSwan accepts for the same algorithms (its proposal
// keyword table): GCM ICV lengths in bits, "aes" for AES-128-CBC, "sha" for
// HMAC-SHA1-96 and the sha2_* spellings.
var aliases = map[string]string{
	"aes128gcm128": "aes128gcm16", "aes192gcm128": "aes192gcm16", "aes256gcm128": "aes256gcm16",
	"aes128gcm96": "aes128gcm12", "aes192gcm96": "aes192gcm12", "aes256gcm96": "aes256gcm12",
	"aes128gcm64": "aes128gcm8", "aes192gcm64": "aes192gcm8", "aes256gcm64": "aes256gcm8",
	"aes":      "aes128",
	"sha":      "sha1",
	"sha2_256": "sha256",
	"sha2_384": "sha384",
	"sha2_512": "sha512",
}

func lookupEncr(tok string) (encrAlg, bool) {
	if a, ok := aliases[tok]; ok {
		tok = a
	}
	for _, e := range encrAlgs {
		if e.name == tok {
			return e, true
		}
	}
	return encrAlg{}, false
}

func lookupInteg(tok string) (integAlg, bool) {
	if a, ok := aliases[tok]; ok {
		tok = a
	}
	for _, i := range integAlgs {
		if i.name == tok {
			return i, true
		}
	}
	return integAlg{}, false
}

func integByID(id iana.IntegID) (integAlg, bool) {
	for _, i := range integAlgs {
		if i.id == id {
			return i, true
		}
	}
	return integAlg{}, false
}

// ParseESP returns the ESP suite named by a strongSwan keyword, case
// insensitively: an AEAD ("aes256gcm16", its alias "aes256gcm128",
// "chacha20poly1305"), AES-GMAC ("aes128gmac", RFC 4543), or a cipher and an
// integrity algorithm joined by a dash ("aes128-sha256", "aes256ctr-sha384",
// "null-sha256"). The returned Suite carries the canonical keyword in Name.
//
// A cipher without integrity ("aes128", "null") is refused: encryption
// without authentication is not allowed (RFC 8221, Section 5). An AEAD or
// AES-GMAC with an integrity algorithm is refused too (RFC 7296, Section 3.3).
// Names that are not known wrap ErrUnknownSuite.
func ParseESP(name string) (Suite, error) {
	toks := strings.Split(strings.ToLower(strings.TrimSpace(name)), "-")
	if len(toks) > 2 {
		return Suite{}, fmt.Errorf("%w: ESP suite %q has more than a cipher and an integrity algorithm", ErrUnknownSuite, name)
	}
	var (
		encr             encrAlg
		integ            integAlg
		haveEncr, haveIn bool
	)
	for _, tok := range toks {
		if e, ok := lookupEncr(tok); ok {
			if haveEncr {
				return Suite{}, fmt.Errorf("transform: ESP suite %q has two encryption algorithms", name)
			}
			encr, haveEncr = e, true
			continue
		}
		if i, ok := lookupInteg(tok); ok {
			if haveIn {
				return Suite{}, fmt.Errorf("transform: ESP suite %q has two integrity algorithms", name)
			}
			integ, haveIn = i, true
			continue
		}
		return Suite{}, fmt.Errorf("%w %q in ESP suite %q", ErrUnknownSuite, tok, name)
	}
	switch {
	case !haveEncr:
		return Suite{}, fmt.Errorf("transform: ESP suite %q has no encryption algorithm; for integrity only use %q", name, "null-"+integ.name)
	case encr.kind != KindCipher && haveIn:
		return Suite{}, fmt.Errorf("transform: ESP suite %q: %s is a combined-mode algorithm and takes no integrity algorithm (RFC 7296, Section 3.3)", name, encr.name)
	case encr.kind == KindCipher && !haveIn:
		return Suite{}, fmt.Errorf("transform: ESP suite %q: encryption without integrity is not allowed (RFC 8221, Section 5); add one, as in %q", name, encr.name+"-sha256")
	}
	s := Suite{Name: encr.name, Kind: encr.kind, Encr: encr.id, EncrKeyBits: encr.bits}
	if haveIn {
		s.Name += "-" + integ.name
		s.Integ = integ.id
	}
	return s, nil
}

// ParseAH returns the AH suite named by a strongSwan integrity keyword, case
// insensitively: "sha1" (HMAC-SHA1-96), "sha256", "sha384", "sha512"
// (HMAC-SHA2 with ICVs truncated to half the hash, RFC 4868) or "aesxcbc"
// (AES-XCBC-MAC-96, RFC 3566). AES-GMAC for AH (RFC 4543) is refused with an
// error that wraps ErrNotImplemented. Names that are not known wrap
// ErrUnknownSuite.
func ParseAH(name string) (Suite, error) {
	tok := strings.ToLower(strings.TrimSpace(name))
	if i, ok := lookupInteg(tok); ok {
		return Suite{Name: i.name, Kind: KindIntegrity, Integ: i.id}, nil
	}
	if e, ok := lookupEncr(tok); ok {
		if e.kind == KindGMAC {
			return Suite{}, fmt.Errorf("%w: AH suite %q: AES-GMAC (RFC 4543) is not implemented for AH, only for ESP", ErrNotImplemented, name)
		}
		return Suite{}, fmt.Errorf("transform: AH suite %q: AH has no encryption; name an integrity algorithm such as %q", name, "sha256")
	}
	return Suite{}, fmt.Errorf("%w %q in AH suite %q", ErrUnknownSuite, tok, name)
}

// ESPSuites returns every ESP suite this package implements, with canonical
// names: each AEAD and AES-GMAC, and each cipher with each integrity
// algorithm.
func ESPSuites() []Suite {
	var out []Suite
	for _, e := range encrAlgs {
		if e.kind != KindCipher {
			out = append(out, Suite{Name: e.name, Kind: e.kind, Encr: e.id, EncrKeyBits: e.bits})
			continue
		}
		for _, i := range integAlgs {
			out = append(out, Suite{Name: e.name + "-" + i.name, Kind: KindCipher, Encr: e.id, EncrKeyBits: e.bits, Integ: i.id})
		}
	}
	return out
}

// AHSuites returns every AH suite this package implements.
func AHSuites() []Suite {
	out := make([]Suite, 0, len(integAlgs))
	for _, i := range integAlgs {
		out = append(out, Suite{Name: i.name, Kind: KindIntegrity, Integ: i.id})
	}
	return out
}

// String returns the canonical name of the suite.
func (s Suite) String() string { return s.Name }

// encrKeyLen returns the length of the encryption part of the KEYMAT: the
// cipher key and, for the counter-based transforms, the 4-byte salt or nonce
// that follows it (RFC 4106 Section 8.1, RFC 4543 Section 8, RFC 7634
// Section 2, RFC 3686 Section 5.1).
func (s Suite) encrKeyLen() int {
	switch s.Encr {
	case iana.EncrAESGCM8, iana.EncrAESGCM12, iana.EncrAESGCM16,
		iana.EncrNullAuthAESGMAC, iana.EncrChaCha20Poly1305, iana.EncrAESCTR:
		return s.EncrKeyBits/8 + 4
	case iana.EncrAESCBC:
		return s.EncrKeyBits / 8
	}
	return 0
}

// KeyLen returns the length of the KEYMAT that NewESP or NewAH takes, laid out
// as IKEv2 derives it (RFC 7296, Section 2.17) and as ip xfrm takes it: for
// AEADs and AES-GMAC the key then a 4-byte salt (36 bytes for
// ChaCha20-Poly1305); for AES-CTR the key then a 4-byte nonce; for cipher
// suites the cipher key then the integrity key (20 bytes for sha1, 32, 48 and
// 64 for sha256, sha384 and sha512, 16 for aesxcbc); for NULL encryption the
// integrity key only. It returns 0 for the zero Suite.
func (s Suite) KeyLen() int {
	n := s.encrKeyLen()
	if i, ok := integByID(s.Integ); ok && (s.Kind == KindCipher || s.Kind == KindIntegrity) {
		n += i.keyLen
	}
	return n
}

// IVLen returns the length of the ESP IV field: 16 for AES-CBC (RFC 3602,
// Section 3), 0 for NULL and AH, 8 for the others.
func (s Suite) IVLen() int {
	switch s.Encr {
	case iana.EncrAESCBC:
		return 16
	case iana.EncrNull, 0:
		return 0
	}
	return 8
}

// ICVLen returns the length of the ICV: 16 for ChaCha20-Poly1305, AES-GMAC
// and AES-GCM-16, 12 and 8 for AES-GCM-12 and -8, and the truncated MAC
// length of the integrity algorithm otherwise.
func (s Suite) ICVLen() int {
	switch s.Encr {
	case iana.EncrAESGCM8:
		return 8
	case iana.EncrAESGCM12:
		return 12
	case iana.EncrAESGCM16, iana.EncrNullAuthAESGMAC, iana.EncrChaCha20Poly1305:
		return 16
	}
	if i, ok := integByID(s.Integ); ok {
		return i.icvLen
	}
	return 0
}

// BlockSize returns the alignment of the ESP payload and trailer: 16 for
// AES-CBC, 4 otherwise (RFC 4303, Section 2.4). It is 0 for AH suites.
func (s Suite) BlockSize() int {
	switch {
	case s.Kind == KindIntegrity || s.Kind == 0:
		return 0
	case s.Encr == iana.EncrAESCBC:
		return 16
	}
	return 4
}

// checkKey returns an error if the suite cannot be keyed for want (an ESP or
// an AH suite) or if key has the wrong length.
func (s Suite) checkKey(key []byte, ah bool) error {
	if s.Kind == 0 || s.KeyLen() == 0 {
		return fmt.Errorf("transform: invalid suite %q; get suites from ParseESP, ParseAH, ESPSuites or AHSuites", s.Name)
	}
	if ah != (s.Kind == KindIntegrity) {
		if ah {
			return fmt.Errorf("transform: %q is an ESP suite, not an AH suite", s.Name)
		}
		return fmt.Errorf("transform: %q is an AH suite, not an ESP suite", s.Name)
	}
	if len(key) != s.KeyLen() {
		return fmt.Errorf("transform: %s needs a %d-byte key, got %d bytes", s.Name, s.KeyLen(), len(key))
	}
	return nil
}

// NewESP returns the ESP state for one direction of an SA of this suite,
// keyed with key (KeyLen bytes, laid out as KeyLen describes). The key is
// copied. Suites that need randomness (the IV key of AES-CBC) draw it from
// crypto/rand here, never per packet.
func (s Suite) NewESP(key []byte) (ESP, error) {
	if err := s.checkKey(key, false); err != nil {
		return nil, err
	}
	ek, ik := key[:s.encrKeyLen()], key[s.encrKeyLen():]
	switch s.Kind {
	case KindAEAD:
		return newAEAD(s, ek)
	case KindGMAC:
		return newGMAC(ek)
	}
	integ, err := newIntegrity(s.Integ, ik)
	if err != nil {
		return nil, err
	}
	return newCipherESP(s, ek, integ)
}

// NewAH returns the integrity state for one direction of an AH SA of this
// suite, keyed with key (KeyLen bytes). The key is copied.
func (s Suite) NewAH(key []byte) (Integrity, error) {
	if err := s.checkKey(key, true); err != nil {
		return nil, err
	}
	return newIntegrity(s.Integ, key)
}
