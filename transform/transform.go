// Package transform implements the cryptographic transforms of ESP and AH by
// their IANA IDs and strongSwan keywords: AEADs (AES-GCM with 8-, 12- and
// 16-byte ICVs, ChaCha20-Poly1305), AES-GMAC, cipher plus integrity suites
// (AES-CBC, AES-CTR and NULL with HMAC-SHA1-96, HMAC-SHA2 and AES-XCBC-96),
// and the integrity algorithms of AH. Encryption without integrity does not
// exist here: every suite authenticates (RFC 8221, Section 5).
//
// It knows the layout of an ESP packet (RFC 4303, Section 2) but not of IP:
// it seals and opens the region that starts at the ESP header.
package transform

import (
	"errors"

	"github.com/goipsec/goipsec/iana"
)

// ESPHeaderLen is the length of the ESP header: SPI and the low 32 bits of the
// sequence number. RFC 4303, Section 2.
const ESPHeaderLen = 8

// ErrAuth is returned by Open and Verify when the ICV does not match.
var ErrAuth = errors.New("transform: integrity check failed")

// ESP is the cryptographic state of one direction of an ESP SA. It is safe for
// concurrent use by many goroutines and allocates nothing per packet.
//
// The region b passed to Seal and Open is laid out as
//
//	b[0:8]                    ESP header: SPI, low 32 bits of the sequence number
//	b[8:8+IVLen()]            IV
//	b[8+IVLen():len(b)-ICVLen()]  payload || padding || pad length || next header
//	b[len(b)-ICVLen():]       ICV
//
// seq is the full 64-bit sequence number of the packet; with esn its high 32
// bits take part in the integrity check (RFC 4303, Section 2.2.1 and
// Appendix A), without esn they are ignored.
type ESP interface {
	// IVLen returns the length of the IV field (0 for NULL encryption).
	IVLen() int
	// BlockSize returns the alignment that payload, padding and the 2-byte
	// trailer together must have: the cipher's block size, at least 4.
	BlockSize() int
	// ICVLen returns the length of the ICV.
	ICVLen() int
	// Seal writes the IV, encrypts the payload region in place and writes the
	// ICV. The ESP header in b[0:8] is taken as it is; the caller writes it.
	// Seal must be called at most once per sequence number and SA. It panics
	// if b is shorter than 8+IVLen()+ICVLen() or if the payload region is not
	// aligned as BlockSize says for AES-CBC, or, for AES-GMAC with ESN, if b
	// is longer than MaxPacketLen: the caller builds b. Counter-based transforms (GCM, GMAC, ChaCha20-Poly1305, CTR) use
	// seq as the IV, which is unique per key (RFC 4106, Section 3.1); CBC uses
	// an unpredictable IV (RFC 3602, Section 2.4).
	Seal(b []byte, seq uint64, esn bool)
	// Open checks the ICV and, only if it matches, decrypts the payload region
	// in place. It returns ErrAuth on a mismatch; b's contents are then
	// unspecified. It returns ErrTruncated if len(b) is less than
	// 8+IVLen()+ICVLen(), and ErrMalformed if the payload region is not a
	// whole number of cipher blocks (AES-CBC) or len(b) exceeds
	// MaxPacketLen. It never panics.
	Open(b []byte, seq uint64, esn bool) error
}

// Warmer is implemented by the ESP transforms of this package. Warm reads
// the transform's per-SA state that lies level pointer hops away from the
// transform (0: the transform's own struct; 1: the state of the cipher
// behind it, such as AES-GCM's round keys and GHASH table) and returns a
// number computed from what it read, which means nothing (nothing lies
// deeper than level 1). It loads those cache lines, and the
// address translations of their pages, ahead of Seal or Open, so that the
// data plane can warm a whole batch's SAs one level at a time: the loads of
// one level are then independent of each other, and the processor overlaps
// the cache misses of different SAs that the packet work itself would take
// one after the other (docs/performance.md, "Warming a batch's SAs"). It
// has no other effect, allocates nothing and is safe for concurrent use.
type Warmer interface {
	Warm(level int) int
}

// Integrity is the keyed integrity function of one direction of an AH SA (and
// of the integrity half of ESP cipher suites). Safe for concurrent use; no
// allocations per packet.
type Integrity interface {
	// ICVLen returns the length of the (possibly truncated) ICV.
	ICVLen() int
	// Sum writes ICVLen() bytes of MAC(msg || seqHi) into icv, where the 4-byte
	// big-endian seqHi is appended only when esn is true (RFC 4302,
	// Section 3.3.3.2.1; RFC 4303, Section 2.2.1).
	Sum(icv, msg []byte, seqHi uint32, esn bool)
	// Verify reports in constant time whether icv is the ICV of msg.
	Verify(icv, msg []byte, seqHi uint32, esn bool) bool
}

// Kind says which family a suite belongs to.
type Kind uint8

// Suite kinds.
const (
	KindAEAD      Kind = iota + 1 // combined mode: AES-GCM, ChaCha20-Poly1305
	KindGMAC                      // ENCR_NULL_AUTH_AES_GMAC: integrity only, inside ESP (RFC 4543)
	KindCipher                    // a cipher (or NULL) plus an integrity algorithm
	KindIntegrity                 // integrity only, for AH
)

// Suite describes one ESP or AH algorithm suite. The zero value is invalid;
// get suites from ParseESP, ParseAH, ESPSuites or AHSuites.
type Suite struct {
	// Name is the canonical strongSwan keyword: "aes256gcm16",
	// "chacha20poly1305", "aes128-sha256", "null-sha256", "aes128gmac" for
	// ESP; "sha256", "aesxcbc" for AH.
	Name        string
	Kind        Kind
	Encr        iana.EncrID  // 0 for AH suites
	EncrKeyBits int          // key size in bits, without salt or nonce
	Integ       iana.IntegID // IntegNone for AEAD and GMAC suites
}

// ErrUnknownSuite is wrapped by ParseESP and ParseAH for names they do not know.
var ErrUnknownSuite = errors.New("transform: unknown algorithm")

// ErrNotImplemented is wrapped by ParseESP and ParseAH for algorithms that
// exist in the IANA registry and in strongSwan but not here, such as AES-GMAC
// for AH.
var ErrNotImplemented = errors.New("transform: not implemented")

// ErrTruncated is returned by Open when b is shorter than the ESP header, IV
// and ICV together.
var ErrTruncated = errors.New("transform: packet too short for the transform")

// ErrMalformed is returned by Open when the length of b cannot be right for
// the transform: a CBC payload that is not a whole number of cipher blocks,
// or a packet longer than MaxPacketLen.
var ErrMalformed = errors.New("transform: packet length invalid for the transform")

// MaxPacketLen is the longest region b that Open accepts, and that Seal
// accepts for the suites that need scratch space (AES-GCM with an 8-byte
// ICV, AES-GMAC with extended sequence numbers). It is the largest IPv4 total
// length (RFC 791); IPv6 jumbograms (RFC 2675) are not supported.
const MaxPacketLen = 65535
