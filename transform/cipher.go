package transform

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/goipsec/goipsec/iana"
)

// cipherESP is ESP with a cipher (AES-CBC, AES-CTR or NULL) and a separate
// integrity algorithm. The ICV covers the ESP header, the IV and the
// ciphertext, followed by the high 32 bits of the sequence number with ESN
// (RFC 4303, Sections 2.2.1 and 3.3.2). Seal encrypts, then MACs; Open
// checks the ICV before it decrypts anything (RFC 4303, Section 3.4.4.1).
type cipherESP struct {
	encr   iana.EncrID
	block  cipher.Block // AES-CBC and AES-CTR
	ivKey  cipher.Block // AES-CBC: makes IVs, see cbcIV
	nonce  [4]byte      // AES-CTR (RFC 3686, Section 4)
	integ  Integrity
	ivLen  int
	bsize  int
	icvLen int
}

func newCipherESP(s Suite, key []byte, integ Integrity) (ESP, error) {
	e := &cipherESP{encr: s.Encr, integ: integ, ivLen: s.IVLen(), bsize: s.BlockSize(), icvLen: integ.ICVLen()}
	var err error
	switch s.Encr {
	case iana.EncrAESCBC:
		if e.block, err = aes.NewCipher(key); err != nil {
			return nil, fmt.Errorf("transform: %s: %w", s.Name, err)
		}
		var k [16]byte
		if _, err := rand.Read(k[:]); err != nil {
			return nil, fmt.Errorf("transform: %s: IV key: %w", s.Name, err)
		}
		e.ivKey, err = aes.NewCipher(k[:])
		clear(k[:])
		if err != nil {
			return nil, fmt.Errorf("transform: %s: %w", s.Name, err)
		}
	case iana.EncrAESCTR:
		if e.block, err = aes.NewCipher(key[:len(key)-4]); err != nil {
			return nil, fmt.Errorf("transform: %s: %w", s.Name, err)
		}
		copy(e.nonce[:], key[len(key)-4:])
	case iana.EncrNull:
	default:
		return nil, fmt.Errorf("transform: %s: encryption algorithm %d is not implemented: %w", s.Name, s.Encr, ErrNotImplemented)
	}
	return e, nil
}

// IVLen implements ESP.
func (e *cipherESP) IVLen() int { return e.ivLen }

// BlockSize implements ESP.
func (e *cipherESP) BlockSize() int { return e.bsize }

// Warm implements Warmer: this struct, then the integrity algorithm's (the
// block cipher's round keys have no method that reads them).
func (e *cipherESP) Warm(level int) int {
	if level == 0 {
		return e.icvLen
	}
	return e.integ.ICVLen()
}

// ICVLen implements ESP.
func (e *cipherESP) ICVLen() int { return e.icvLen }

// Seal implements ESP. For AES-CBC the payload region must be a whole number
// of 16-byte blocks; Seal panics otherwise, since the caller pads it.
func (e *cipherESP) Seal(b []byte, seq uint64, esn bool) {
	off := ESPHeaderLen + e.ivLen
	end := len(b) - e.icvLen
	if end < off {
		panic("transform: Seal: region shorter than ESP header, IV and ICV")
	}
	iv, p := b[ESPHeaderLen:off], b[off:end]
	switch e.encr {
	case iana.EncrAESCBC:
		if len(p)%aes.BlockSize != 0 {
			panic("transform: Seal: AES-CBC payload is not a whole number of blocks")
		}
		e.cbcIV(iv, seq)
		cbcEncrypt(e.block, iv, p)
	case iana.EncrAESCTR:
		// RFC 3686, Section 3: the IV must be unique for the key; the
		// sequence number is.
		binary.BigEndian.PutUint64(iv, seq)
		sc := getScratch()
		ctrXOR(e.block, sc, &e.nonce, iv, p)
		putScratch(sc)
	}
	e.integ.Sum(b[end:], b[:end], uint32(seq>>32), esn)
}

// cbcIV writes the IV of the packet with sequence number seq: the encryption
// of seq under a random AES key that is drawn when the SA is set up and used
// for nothing else. RFC 3602 Section 2.4 requires an IV that an attacker
// cannot predict; a block cipher under a secret key maps distinct inputs to
// outputs that are unpredictable without that key, and sequence numbers do
// not repeat under one SA (RFC 4303, Section 3.3.3). This is the method of
// NIST SP 800-38A, Appendix C (encrypt a nonce), with a key of its own. It
// costs one AES block, where crypto/rand may cost a system call per packet.
func (e *cipherESP) cbcIV(iv []byte, seq uint64) {
	binary.BigEndian.PutUint64(iv[:8], seq)
	clear(iv[8:])
	e.ivKey.Encrypt(iv, iv)
}

// Open implements ESP.
func (e *cipherESP) Open(b []byte, seq uint64, esn bool) error {
	off := ESPHeaderLen + e.ivLen
	end := len(b) - e.icvLen
	if end < off {
		return ErrTruncated
	}
	if len(b) > MaxPacketLen {
		return ErrMalformed
	}
	iv, p := b[ESPHeaderLen:off], b[off:end]
	if e.encr == iana.EncrAESCBC && len(p)%aes.BlockSize != 0 {
		return ErrMalformed
	}
	if !e.integ.Verify(b[end:], b[:end], uint32(seq>>32), esn) {
		return ErrAuth
	}
	switch e.encr {
	case iana.EncrAESCBC:
		cbcDecrypt(e.block, iv, p)
	case iana.EncrAESCTR:
		sc := getScratch()
		ctrXOR(e.block, sc, &e.nonce, iv, p)
		putScratch(sc)
	}
	return nil
}

// cbcEncrypt encrypts p in place in CBC mode (RFC 3602, Section 2.3 and NIST
// SP 800-38A, Section 6.2). It works on cipher.Block directly because
// cipher.NewCBCEncrypter allocates on every call; each block is chained to
// the previous ciphertext block in p itself, so it needs no buffer.
func cbcEncrypt(block cipher.Block, iv, p []byte) {
	prev := iv
	for i := 0; i+aes.BlockSize <= len(p); i += aes.BlockSize {
		blk := p[i : i+aes.BlockSize]
		subtle.XORBytes(blk, blk, prev)
		block.Encrypt(blk, blk)
		prev = blk
	}
}

// cbcDecrypt decrypts p in place in CBC mode. It runs from the last block to
// the first, so the ciphertext block that each one is chained to is still
// intact when it is needed.
func cbcDecrypt(block cipher.Block, iv, p []byte) {
	for i := len(p) - len(p)%aes.BlockSize - aes.BlockSize; i >= 0; i -= aes.BlockSize {
		blk := p[i : i+aes.BlockSize]
		block.Decrypt(blk, blk)
		if i == 0 {
			subtle.XORBytes(blk, blk, iv)
		} else {
			subtle.XORBytes(blk, blk, p[i-aes.BlockSize:i])
		}
	}
}

// ctrXOR encrypts or decrypts p in place with AES-CTR as ESP uses it: the
// counter block is nonce || IV || a 32-bit block counter that starts at 1
// (RFC 3686, Section 4). It works on cipher.Block because cipher.NewCTR
// allocates on every call.
func ctrXOR(block cipher.Block, sc *scratch, nonce *[4]byte, iv, p []byte) {
	copy(sc.ctr[0:4], nonce[:])
	copy(sc.ctr[4:12], iv)
	for ctr := uint32(1); len(p) > 0; ctr++ {
		binary.BigEndian.PutUint32(sc.ctr[12:], ctr)
		block.Encrypt(sc.ks[:], sc.ctr[:])
		n := subtle.XORBytes(p, p, sc.ks[:])
		p = p[n:]
	}
}
