package transform

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/goipsec/goipsec/iana"
)

// aeadIVLen is the length of the explicit IV of AES-GCM, AES-GMAC and
// ChaCha20-Poly1305 in ESP (RFC 4106 Section 3.1, RFC 4543 Section 3.1,
// RFC 7634 Section 2).
const aeadIVLen = 8

// aeadOff is where the payload of an AEAD packet starts in the ESP region.
const aeadOff = ESPHeaderLen + aeadIVLen

// aeadESP is ESP with a combined-mode algorithm: AES-GCM (RFC 4106) or
// ChaCha20-Poly1305 (RFC 7634). The nonce is salt || IV; the IV is the 64-bit
// sequence number, which is unique for the key as RFC 4106 Section 3.1 and
// RFC 7634 Section 2 require (the ESP layer never reuses a sequence number
// under one SA, RFC 4303 Section 3.3.3).
//
// Go's crypto/cipher refuses GCM tags shorter than 12 bytes, so AES-GCM with
// an 8-byte ICV (trunc) runs GCM with the full 16-byte tag and keeps its
// leftmost 8 bytes (RFC 4106, Section 6; NIST SP 800-38D, Section 5.2.1.2).
// Sealing shifts the payload over the IV field to make room for the 16-byte
// tag, at the cost of two memory moves. Opening cannot check a truncated
// tag directly: it decrypts into scratch space, re-encrypts that plaintext to
// recompute the full tag, and copies the plaintext into b only if the tag
// matches, so Open of AES-GCM-8 costs about twice that of AES-GCM-16.
type aeadESP struct {
	aead   cipher.AEAD // with trunc, GCM with a 16-byte tag
	salt   [4]byte
	icvLen int
	trunc  bool
}

func newAEAD(s Suite, key []byte) (ESP, error) {
	k := key[:len(key)-4]
	e := &aeadESP{icvLen: s.ICVLen()}
	copy(e.salt[:], key[len(key)-4:])
	var err error
	if s.Encr == iana.EncrChaCha20Poly1305 {
		e.aead, err = chacha20poly1305.New(k)
		if err != nil {
			return nil, fmt.Errorf("transform: %s: %w", s.Name, err)
		}
		return e, nil
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("transform: %s: %w", s.Name, err)
	}
	switch e.icvLen {
	case 12:
		e.aead, err = cipher.NewGCMWithTagSize(block, 12)
	case 8:
		e.trunc = true
		e.aead, err = cipher.NewGCM(block)
	default:
		e.aead, err = cipher.NewGCM(block)
	}
	if err != nil {
		return nil, fmt.Errorf("transform: %s: %w", s.Name, err)
	}
	return e, nil
}

// IVLen implements ESP.
func (e *aeadESP) IVLen() int { return aeadIVLen }

// BlockSize implements ESP. RFC 4106 Section 3.2 and RFC 7634 Section 3 need
// no padding beyond the 4-byte alignment of RFC 4303, Section 2.4.
func (e *aeadESP) BlockSize() int { return 4 }

// ICVLen implements ESP.
func (e *aeadESP) ICVLen() int { return e.icvLen }

// Warm implements Warmer: this struct, then the AEAD's state through a
// method that reads it (AES-GCM's nonce size sits on a line of its GHASH
// table, with the round keys on the same page or the next).
func (e *aeadESP) Warm(level int) int {
	if level == 0 {
		return e.icvLen
	}
	return e.aead.NonceSize()
}

// Seal implements ESP.
func (e *aeadESP) Seal(b []byte, seq uint64, esn bool) {
	if len(b) < aeadOff+e.icvLen {
		panic("transform: Seal: region shorter than ESP header, IV and ICV")
	}
	binary.BigEndian.PutUint64(b[ESPHeaderLen:aeadOff], seq)
	sc := getScratch()
	e.seal(sc, b, sc.espAAD(b, seq, esn))
	putScratch(sc)
}

// seal encrypts the payload of b in place under the IV already in b[8:16]
// and writes the ICV. aad must not overlap b[8:].
func (e *aeadESP) seal(sc *scratch, b, aad []byte) {
	nonce := sc.setNonce(&e.salt, b[ESPHeaderLen:aeadOff])
	end := len(b) - e.icvLen
	if !e.trunc {
		p := b[aeadOff:end]
		e.aead.Seal(p[:0], nonce, p, aad)
		return
	}
	// AES-GCM-8: the 16-byte tag needs 8 more bytes than the ICV field, so
	// move the plaintext 8 bytes left, over the IV, and seal it there.
	n := end - aeadOff
	p := b[ESPHeaderLen : ESPHeaderLen+n]
	copy(p, b[aeadOff:end])
	e.aead.Seal(p[:0], nonce, p, aad) // ciphertext || tag fills b[8:]
	copy(sc.tag[:8], b[ESPHeaderLen+n:])
	copy(b[aeadOff:end], p)
	copy(b[end:], sc.tag[:8])
	copy(b[ESPHeaderLen:aeadOff], nonce[4:])
}

// Open implements ESP.
func (e *aeadESP) Open(b []byte, seq uint64, esn bool) error {
	if len(b) < aeadOff+e.icvLen {
		return ErrTruncated
	}
	if len(b) > MaxPacketLen {
		return ErrMalformed
	}
	sc := getScratch()
	err := e.open(sc, b, sc.espAAD(b, seq, esn))
	putScratch(sc)
	return err
}

// open checks the ICV of b under aad and the IV in b[8:16] and decrypts the
// payload in place. aad must not overlap b[8:].
func (e *aeadESP) open(sc *scratch, b, aad []byte) error {
	nonce := sc.setNonce(&e.salt, b[ESPHeaderLen:aeadOff])
	if !e.trunc {
		if _, err := e.aead.Open(b[aeadOff:aeadOff], nonce, b[aeadOff:], aad); err != nil {
			return ErrAuth
		}
		return nil
	}
	end := len(b) - e.icvLen
	n := end - aeadOff
	c := b[aeadOff:end]
	big := bigPool.Get().(*bigScratch)
	// GCM encryption is XOR with the key stream of the nonce, so sealing the
	// ciphertext yields the plaintext (the tag that comes with it is
	// meaningless); sealing that plaintext then yields the ciphertext and
	// its true tag.
	e.aead.Seal(big.a[:0], nonce, c, aad)
	full := e.aead.Seal(big.b[:0], nonce, big.a[:n], aad)
	if subtle.ConstantTimeCompare(full[n:n+8], b[end:]) != 1 {
		clear(big.a[:n])
		bigPool.Put(big)
		return ErrAuth
	}
	copy(c, big.a[:n])
	bigPool.Put(big)
	return nil
}

// gmacESP is ESP with ENCR_NULL_AUTH_AES_GMAC (RFC 4543): the payload is not
// encrypted, and the GCM tag over an empty plaintext authenticates the AAD
// SPI || [seqHi ||] seqLo || IV || payload (RFC 4543, Sections 3.2 and 5).
// Without ESN that AAD is exactly the region b up to the ICV, so no bytes
// are copied; with ESN it is built in pooled scratch space.
type gmacESP struct {
	gcm  cipher.AEAD
	salt [4]byte
}

func newGMAC(key []byte) (ESP, error) {
	block, err := aes.NewCipher(key[:len(key)-4])
	if err != nil {
		return nil, fmt.Errorf("transform: AES-GMAC: %w", err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("transform: AES-GMAC: %w", err)
	}
	e := &gmacESP{gcm: g}
	copy(e.salt[:], key[len(key)-4:])
	return e, nil
}

// gmacICVLen is the ICV length of AES-GMAC (RFC 4543, Section 3.3).
const gmacICVLen = 16

// IVLen implements ESP.
func (e *gmacESP) IVLen() int { return aeadIVLen }

// BlockSize implements ESP.
func (e *gmacESP) BlockSize() int { return 4 }

// Warm implements Warmer, as for the AEADs.
func (e *gmacESP) Warm(level int) int {
	if level == 0 {
		return int(e.salt[0])
	}
	return e.gcm.NonceSize()
}

// ICVLen implements ESP.
func (e *gmacESP) ICVLen() int { return gmacICVLen }

// Seal implements ESP. With esn, len(b) must not exceed MaxPacketLen.
func (e *gmacESP) Seal(b []byte, seq uint64, esn bool) {
	if len(b) < aeadOff+gmacICVLen {
		panic("transform: Seal: region shorter than ESP header, IV and ICV")
	}
	binary.BigEndian.PutUint64(b[ESPHeaderLen:aeadOff], seq)
	sc := getScratch()
	if !esn {
		e.seal(sc, b, b[:len(b)-gmacICVLen])
	} else {
		if len(b) > MaxPacketLen {
			panic("transform: Seal: AES-GMAC with ESN: region longer than MaxPacketLen")
		}
		big := bigPool.Get().(*bigScratch)
		e.seal(sc, b, gmacESNAAD(big, b, seq))
		bigPool.Put(big)
	}
	putScratch(sc)
}

// gmacESNAAD builds SPI || seqHi || seqLo || IV || payload in big.a.
func gmacESNAAD(big *bigScratch, b []byte, seq uint64) []byte {
	end := len(b) - gmacICVLen
	copy(big.a[0:4], b[0:4])
	binary.BigEndian.PutUint32(big.a[4:8], uint32(seq>>32))
	copy(big.a[8:], b[4:end])
	return big.a[:end+4]
}

// seal writes the ICV of aad under the IV in b[8:16] into the end of b.
func (e *gmacESP) seal(sc *scratch, b, aad []byte) {
	nonce := sc.setNonce(&e.salt, b[ESPHeaderLen:aeadOff])
	end := len(b) - gmacICVLen
	e.gcm.Seal(b[end:end], nonce, nil, aad)
}

// Open implements ESP.
func (e *gmacESP) Open(b []byte, seq uint64, esn bool) error {
	if len(b) < aeadOff+gmacICVLen {
		return ErrTruncated
	}
	if len(b) > MaxPacketLen {
		return ErrMalformed
	}
	sc := getScratch()
	var err error
	if !esn {
		err = e.open(sc, b, b[:len(b)-gmacICVLen])
	} else {
		big := bigPool.Get().(*bigScratch)
		err = e.open(sc, b, gmacESNAAD(big, b, seq))
		bigPool.Put(big)
	}
	putScratch(sc)
	return err
}

// open checks the ICV at the end of b against aad and the IV in b[8:16].
func (e *gmacESP) open(sc *scratch, b, aad []byte) error {
	nonce := sc.setNonce(&e.salt, b[ESPHeaderLen:aeadOff])
	end := len(b) - gmacICVLen
	if _, err := e.gcm.Open(b[end:end], nonce, b[end:], aad); err != nil {
		return ErrAuth
	}
	return nil
}
