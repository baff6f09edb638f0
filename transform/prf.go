package transform

// IKEv2 pseudorandom functions (RFC 7296, Section 2.13) and the encryption
// and integrity algorithms that proposals name; the proposal syntax itself is
// in proposal.go.

import (
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/goipsec/goipsec/iana"
)

// ErrWeak is wrapped by the parsers of this package for algorithms that RFC 8247
// says MUST NOT or SHOULD NOT be used with IKEv2 and that this package does
// not implement at all: MODP groups of 1536 bits and less, DES, 3DES and MD5
// (RFC 8247, Sections 2.1, 2.2, 2.3 and 2.4).
var ErrWeak = errors.New("transform: weak algorithm refused (RFC 8247)")

// PRF is an IKEv2 pseudorandom function (Transform Type 2). The zero value is
// invalid; get one from NewPRF or ParsePRF. A PRF is a small comparable value,
// holds no key and is safe for concurrent use.
type PRF struct {
	id   iana.PRFID
	hash func() hash.Hash // nil for AES-XCBC-PRF-128
	size int
}

// NewPRF returns the PRF with IANA id id: HMAC-SHA2-256, -384 and -512
// (RFC 4868, Section 2.1.2), HMAC-SHA1 (RFC 2104; accepted for old peers but
// never in DefaultIKEProposals, RFC 8247 Section 2.3) and AES-XCBC-PRF-128
// (RFC 4434). Other ids return an error that wraps ErrNotImplemented or
// ErrUnknownSuite.
func NewPRF(id iana.PRFID) (PRF, error) {
	switch id {
	case iana.PRFHMACSHA2_256:
		return PRF{id, sha256.New, sha256.Size}, nil
	case iana.PRFHMACSHA2_384:
		return PRF{id, sha512.New384, sha512.Size384}, nil
	case iana.PRFHMACSHA2_512:
		return PRF{id, sha512.New, sha512.Size}, nil
	case iana.PRFHMACSHA1:
		return PRF{id, sha1.New, sha1.Size}, nil
	case iana.PRFAES128XCBC:
		return PRF{id, nil, aes.BlockSize}, nil
	case 1, 3: // PRF_HMAC_MD5, PRF_HMAC_TIGER
		return PRF{}, fmt.Errorf("%w: PRF %d is not supported (RFC 8247, Section 2.3)", ErrWeak, id)
	case 8: // PRF_AES128_CMAC (RFC 4615)
		return PRF{}, fmt.Errorf("%w: PRF_AES128_CMAC (RFC 4615)", ErrNotImplemented)
	}
	return PRF{}, fmt.Errorf("%w: PRF transform %d", ErrUnknownSuite, id)
}

// MustPRF is NewPRF for ids known to be valid, such as the constants of
// package iana that NewPRF implements; it panics on an error.
func MustPRF(id iana.PRFID) PRF {
	p, err := NewPRF(id)
	if err != nil {
		panic(err)
	}
	return p
}

// prfKeywords maps strongSwan's PRF keywords to their ids.
var prfKeywords = []struct {
	name string
	id   iana.PRFID
}{
	{"prfsha256", iana.PRFHMACSHA2_256},
	{"prfsha384", iana.PRFHMACSHA2_384},
	{"prfsha512", iana.PRFHMACSHA2_512},
	{"prfsha1", iana.PRFHMACSHA1},
	{"prfaesxcbc", iana.PRFAES128XCBC},
}

// ParsePRF returns the PRF named by a strongSwan keyword, case
// insensitively: prfsha256, prfsha384, prfsha512, prfsha1 or prfaesxcbc.
// prfmd5 wraps ErrWeak, prfaescmac ErrNotImplemented, anything else
// ErrUnknownSuite.
func ParsePRF(keyword string) (PRF, error) {
	tok := strings.ToLower(strings.TrimSpace(keyword))
	for _, k := range prfKeywords {
		if k.name == tok {
			return NewPRF(k.id)
		}
	}
	switch tok {
	case "prfmd5":
		return NewPRF(1)
	case "prfaescmac":
		return NewPRF(8)
	}
	return PRF{}, fmt.Errorf("%w %q: not a PRF keyword (prfsha256, prfsha384, prfsha512, prfsha1, prfaesxcbc)", ErrUnknownSuite, keyword)
}

// ID returns the IANA Transform Type 2 id of the PRF.
func (p PRF) ID() iana.PRFID { return p.id }

// Size returns the length of the PRF's output, which is also its preferred
// key length: the length of SK_d, SK_pi and SK_pr (RFC 7296, Section 2.14).
func (p PRF) Size() int { return p.size }

// String returns the strongSwan keyword of the PRF, such as "prfsha256".
func (p PRF) String() string {
	for _, k := range prfKeywords {
		if k.id == p.id {
			return k.name
		}
	}
	return fmt.Sprintf("prf%d", p.id)
}

// Sum returns prf(key, data[0] | data[1] | ...), Size() bytes. Any key length
// is accepted: HMAC takes any (RFC 2104, Section 3) and AES-XCBC-PRF-128
// zero-pads shorter keys and compresses longer ones (RFC 4434, Section 2).
// It panics on the zero PRF.
func (p PRF) Sum(key []byte, data ...[]byte) []byte {
	if p.hash != nil {
		m := hmac.New(p.hash, key)
		for _, d := range data {
			m.Write(d)
		}
		return m.Sum(nil)
	}
	if p.id != iana.PRFAES128XCBC {
		panic("transform: Sum on an invalid PRF; get one from NewPRF")
	}
	return xcbcPRF(key, data...)
}

// xcbcPRF is AES-XCBC-PRF-128 (RFC 4434, Section 2): a 16-byte key is used
// as it is, a shorter one is padded on the right with zeros, and a longer one
// is first replaced by AES-XCBC-PRF-128 of it under the all-zero key. The
// output is the untruncated 16-byte AES-XCBC-MAC (RFC 3566, Section 4).
func xcbcPRF(key []byte, data ...[]byte) []byte {
	var k [aes.BlockSize]byte
	switch {
	case len(key) > aes.BlockSize:
		copy(k[:], xcbcPRF(k[:], key))
	default:
		copy(k[:], key)
	}
	x, err := newXCBC(k[:])
	clear(k[:])
	if err != nil {
		panic(err) // unreachable: the key is 16 bytes
	}
	sc := getScratch()
	defer putScratch(sc)
	clear(sc.e[:])
	m := xcbcMAC{x: x, s: sc}
	for _, d := range data {
		m.write(d)
	}
	out := append([]byte(nil), m.sum()...)
	clear(sc.e[:])
	clear(sc.buf[:])
	return out
}

// EncrAlg is one encryption transform (Transform Type 1) of a proposal: the
// algorithm and its key size in bits (the Key Length attribute, RFC 7296
// Section 3.3.5).
type EncrAlg struct {
	ID      iana.EncrID
	KeyBits int
}

// String returns the strongSwan keyword of the algorithm, such as
// "aes256gcm16" or "aes128", or a numeric form for unknown ones.
func (e EncrAlg) String() string {
	for _, a := range encrAlgs {
		if a.id == e.ID && a.bits == e.KeyBits {
			return a.name
		}
	}
	return fmt.Sprintf("encr%d/%d", e.ID, e.KeyBits)
}

// AEAD reports whether the algorithm is a combined-mode algorithm that is
// negotiated without an integrity transform: AES-GCM, ChaCha20-Poly1305 and
// AES-GMAC (RFC 7296, Section 3.3; RFC 5282, Section 8; RFC 4543).
func (e EncrAlg) AEAD() bool {
	switch e.ID {
	case iana.EncrAESGCM8, iana.EncrAESGCM12, iana.EncrAESGCM16,
		iana.EncrChaCha20Poly1305, iana.EncrNullAuthAESGMAC:
		return true
	}
	return false
}

// HasKeyLengthAttr reports whether the transform carries a Key Length
// attribute on the wire: the AES variants do (RFC 7296, Section 3.3.5;
// RFC 3602, Section 5.3), ChaCha20-Poly1305 does not (RFC 7634, Section 4)
// and neither does NULL.
func (e EncrAlg) HasKeyLengthAttr() bool {
	switch e.ID {
	case iana.EncrAESCBC, iana.EncrAESCTR, iana.EncrAESGCM8, iana.EncrAESGCM12,
		iana.EncrAESGCM16, iana.EncrNullAuthAESGMAC:
		return true
	}
	return false
}

// KeyLen returns the length of the keying material the algorithm takes from
// prf+ (SK_ei and SK_er of an IKE SA, or the encryption part of a Child SA's
// KEYMAT): the key, plus the 4-byte salt of AES-GCM (RFC 5282, Section 7.1;
// RFC 4106, Section 8.1), ChaCha20-Poly1305 (RFC 7634, Section 2), AES-GMAC
// (RFC 4543, Section 8) and AES-CTR (RFC 3686, Section 5.1). It returns 0
// for unknown algorithms and for NULL.
func (e EncrAlg) KeyLen() int {
	s := Suite{Encr: e.ID, EncrKeyBits: e.KeyBits}
	return s.encrKeyLen()
}

// IntegKeyLen returns the key length of an integrity transform (Transform
// Type 3): 20 for HMAC-SHA1-96 (RFC 2404, Section 3), 32, 48 and 64 for
// HMAC-SHA2 (RFC 4868, Section 2.1.1), 16 for AES-XCBC-96 (RFC 3566,
// Section 4), and 0 for IntegNone and unknown ids.
func IntegKeyLen(id iana.IntegID) int {
	if i, ok := integByID(id); ok {
		return i.keyLen
	}
	return 0
}

// IntegICVLen returns the length of the (truncated) ICV of an integrity
// transform, as the IKE SK payload carries it (RFC 7296, Section 3.14): 12
// for HMAC-SHA1-96 and AES-XCBC-96, 16, 24 and 32 for HMAC-SHA2 (RFC 4868,
// Section 2.1.1), 0 for IntegNone and unknown ids.
func IntegICVLen(id iana.IntegID) int {
	if i, ok := integByID(id); ok {
		return i.icvLen
	}
	return 0
}
