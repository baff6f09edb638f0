package ikewire

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/goipsec/goipsec/iana"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/cryptobyte"
)

// SKCipher protects the Encrypted (SK) and Encrypted Fragment (SKF) payloads
// of one direction of an IKE SA: SK_ei/SK_ai or SK_er/SK_ar (RFC 7296,
// Section 3.14). The implementations in this package hold no mutable state
// and are safe for concurrent use.
//
// Seal and Open work on a whole message msg in which msg[:ivOff] is the IKE
// header, any cleartext payloads and the SK or SKF payload header (the
// associated data of AEAD ciphers, RFC 5282, Section 5.1), msg[ivOff:] is
// the SK payload body: IV || inner payloads, padding and pad length || ICV.
type SKCipher interface {
	// IVLen returns the length of the IV field.
	IVLen() int
	// ICVLen returns the length of the Integrity Checksum Data.
	ICVLen() int
	// BlockSize returns the multiple that the encrypted part (inner
	// payloads, padding and pad length byte) must have: the cipher block
	// size for CBC, 1 for AEAD ciphers.
	BlockSize() int
	// Seal encrypts msg[ivOff+IVLen():len(msg)-ICVLen()] in place under
	// the IV the caller wrote at msg[ivOff:], and writes the ICV in the
	// last ICVLen() bytes. The caller checks the lengths.
	Seal(msg []byte, ivOff int)
	// Open verifies the ICV and only then decrypts in place. It returns
	// an error if the ICV does not match or the lengths are wrong.
	Open(msg []byte, ivOff int) error
}

// errAuth is returned by SKCipher.Open when the ICV does not match.
var errAuth = errors.New("ikewire: SK integrity check failed")

// aeadSK is an SKCipher for combined-mode ciphers: RFC 5282 (AES-GCM) and
// RFC 7634 (ChaCha20-Poly1305). The nonce is salt || IV.
type aeadSK struct {
	aead cipher.AEAD
	salt [4]byte
}

// NewAEAD returns an SKCipher for a combined-mode cipher with a 12-byte
// nonce made of the 4-byte salt and the 8-byte IV carried in the message
// (RFC 5282, Section 4; RFC 7634, Section 2).
func NewAEAD(aead cipher.AEAD, salt []byte) (SKCipher, error) {
	if aead.NonceSize() != 12 || len(salt) != 4 {
		return nil, errors.New("ikewire: AEAD needs a 12-byte nonce and a 4-byte salt")
	}
	c := &aeadSK{aead: aead}
	copy(c.salt[:], salt)
	return c, nil
}

// NewAESGCM returns the SKCipher for ENCR_AES_GCM_16 (icvLen 16) or
// ENCR_AES_GCM_12 (icvLen 12). keymat is the key (16, 24 or 32 bytes)
// followed by the 4-byte salt (RFC 5282, Section 7.1). ENCR_AES_GCM_8 is not
// implemented: crypto/cipher has no 8-byte tags.
func NewAESGCM(keymat []byte, icvLen int) (SKCipher, error) {
	if icvLen != 16 && icvLen != 12 {
		return nil, fmt.Errorf("ikewire: AES-GCM with a %d-byte ICV is not implemented", icvLen)
	}
	n := len(keymat) - 4
	if n != 16 && n != 24 && n != 32 {
		return nil, errors.New("ikewire: AES-GCM key material must be a 16, 24 or 32-byte key and a 4-byte salt")
	}
	block, err := aes.NewCipher(keymat[:n])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCMWithTagSize(block, icvLen)
	if err != nil {
		return nil, err
	}
	return NewAEAD(aead, keymat[n:])
}

// NewChaCha20Poly1305 returns the SKCipher for ENCR_CHACHA20_POLY1305.
// keymat is the 32-byte key followed by the 4-byte salt (RFC 7634,
// Section 4).
func NewChaCha20Poly1305(keymat []byte) (SKCipher, error) {
	if len(keymat) != chacha20poly1305.KeySize+4 {
		return nil, errors.New("ikewire: ChaCha20-Poly1305 key material must be 36 bytes")
	}
	aead, err := chacha20poly1305.New(keymat[:chacha20poly1305.KeySize])
	if err != nil {
		return nil, err
	}
	return NewAEAD(aead, keymat[chacha20poly1305.KeySize:])
}

func (c *aeadSK) IVLen() int     { return 8 }
func (c *aeadSK) ICVLen() int    { return c.aead.Overhead() }
func (c *aeadSK) BlockSize() int { return 1 }

func (c *aeadSK) nonce(msg []byte, ivOff int) []byte {
	var n [12]byte
	copy(n[:4], c.salt[:])
	copy(n[4:], msg[ivOff:ivOff+8])
	return n[:]
}

func (c *aeadSK) Seal(msg []byte, ivOff int) {
	start := ivOff + 8
	pt := msg[start : len(msg)-c.aead.Overhead()]
	c.aead.Seal(pt[:0], c.nonce(msg, ivOff), pt, msg[:ivOff])
}

func (c *aeadSK) Open(msg []byte, ivOff int) error {
	start := ivOff + 8
	if len(msg)-start < c.aead.Overhead() {
		return errAuth
	}
	ct := msg[start:]
	if _, err := c.aead.Open(ct[:0], c.nonce(msg, ivOff), ct, msg[:ivOff]); err != nil {
		return errAuth
	}
	return nil
}

// cbcSK is an SKCipher for a block cipher in CBC mode plus an HMAC
// (RFC 7296, Section 3.14; RFC 3602; RFC 4868; RFC 2404).
type cbcSK struct {
	block  cipher.Block
	hash   func() hash.Hash
	key    []byte
	icvLen int
}

// NewCBCHMAC returns an SKCipher for block in CBC mode with the integrity
// algorithm integ keyed with integKey: AUTH_HMAC_SHA1_96 (RFC 2404),
// AUTH_HMAC_SHA2_256_128, AUTH_HMAC_SHA2_384_192 or AUTH_HMAC_SHA2_512_256
// (RFC 4868). The key must be as long as the hash output (RFC 4868,
// Section 2.1.1; RFC 2404, Section 3). Other integrity algorithms (AES-XCBC,
// AES-CMAC) are not implemented.
func NewCBCHMAC(block cipher.Block, integ iana.IntegID, integKey []byte) (SKCipher, error) {
	c := &cbcSK{block: block}
	var keyLen int
	switch integ {
	case iana.IntegHMACSHA1_96:
		c.hash, keyLen, c.icvLen = sha1.New, 20, 12
	case iana.IntegHMACSHA2_256:
		c.hash, keyLen, c.icvLen = sha256.New, 32, 16
	case iana.IntegHMACSHA2_384:
		c.hash, keyLen, c.icvLen = sha512.New384, 48, 24
	case iana.IntegHMACSHA2_512:
		c.hash, keyLen, c.icvLen = sha512.New, 64, 32
	default:
		return nil, fmt.Errorf("ikewire: integrity algorithm %d is not implemented", integ)
	}
	if len(integKey) != keyLen {
		return nil, fmt.Errorf("ikewire: integrity key must be %d bytes", keyLen)
	}
	c.key = bytes.Clone(integKey)
	return c, nil
}

// NewSKCipher returns the SKCipher for an IKE SA's negotiated encryption and
// integrity transforms. For AEAD ciphers (ENCR_AES_GCM_16, ENCR_AES_GCM_12,
// ENCR_CHACHA20_POLY1305) integ must be IntegNone and encKey holds key and
// salt; for ENCR_AES_CBC encKey is the AES key. Other algorithms return an
// error saying they are not implemented.
func NewSKCipher(encr iana.EncrID, integ iana.IntegID, encKey, integKey []byte) (SKCipher, error) {
	switch encr {
	case iana.EncrAESGCM16, iana.EncrAESGCM12, iana.EncrChaCha20Poly1305:
		// RFC 5282, Section 8: no separate integrity transform with AEAD.
		if integ != iana.IntegNone || len(integKey) != 0 {
			return nil, errors.New("ikewire: an AEAD cipher takes no integrity algorithm")
		}
		switch encr {
		case iana.EncrAESGCM16:
			return NewAESGCM(encKey, 16)
		case iana.EncrAESGCM12:
			return NewAESGCM(encKey, 12)
		}
		return NewChaCha20Poly1305(encKey)
	case iana.EncrAESCBC:
		block, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, fmt.Errorf("ikewire: AES-CBC: %w", err)
		}
		return NewCBCHMAC(block, integ, integKey)
	}
	return nil, fmt.Errorf("ikewire: encryption algorithm %d is not implemented for IKE", encr)
}

func (c *cbcSK) IVLen() int     { return c.block.BlockSize() }
func (c *cbcSK) ICVLen() int    { return c.icvLen }
func (c *cbcSK) BlockSize() int { return c.block.BlockSize() }

func (c *cbcSK) mac(msg []byte) []byte {
	h := hmac.New(c.hash, c.key)
	h.Write(msg)
	return h.Sum(nil)[:c.icvLen]
}

func (c *cbcSK) Seal(msg []byte, ivOff int) {
	bs := c.block.BlockSize()
	iv := msg[ivOff : ivOff+bs]
	ct := msg[ivOff+bs : len(msg)-c.icvLen]
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(ct, ct)
	// Section 3.14: the ICV covers the whole message up to the ICV.
	copy(msg[len(msg)-c.icvLen:], c.mac(msg[:len(msg)-c.icvLen]))
}

func (c *cbcSK) Open(msg []byte, ivOff int) error {
	bs := c.block.BlockSize()
	n := len(msg) - ivOff - bs - c.icvLen
	if n < bs || n%bs != 0 {
		return errAuth
	}
	end := len(msg) - c.icvLen
	if subtle.ConstantTimeCompare(c.mac(msg[:end]), msg[end:]) != 1 {
		return errAuth
	}
	ct := msg[ivOff+bs : end]
	cipher.NewCBCDecrypter(c.block, msg[ivOff:ivOff+bs]).CryptBlocks(ct, ct)
	return nil
}

// SealSK encodes m with inner encrypted in an SK payload appended after
// m.Payloads (RFC 7296, Section 3.14), and returns the message. The IV is
// read from rand (crypto/rand.Reader in production): CBC needs an
// unpredictable IV, and AEAD IVs must not repeat under a key, which random
// 8-byte IVs ensure for far more messages than an IKE SA exchanges. Padding
// is the least that aligns to c.BlockSize(), with zero bytes. m.Payloads
// must not hold an SK or SKF payload; m itself is not modified.
func SealSK(m *Message, inner []Payload, c SKCipher, rand io.Reader) ([]byte, error) {
	for _, p := range inner {
		if p == nil {
			return nil, errors.New("ikewire: nil payload")
		}
	}
	pt, err := marshalInner(inner)
	if err != nil {
		return nil, err
	}
	first := PayloadNone
	if len(inner) > 0 {
		first = inner[0].PayloadType()
	}
	return sealPlaintext(m, &SK{NextPayload: first}, pt, c, rand)
}

// marshalInner encodes a payload chain to be encrypted.
func marshalInner(inner []Payload) ([]byte, error) {
	b := cryptobyte.NewBuilder(nil)
	marshalChain(b, inner, false)
	return b.Bytes()
}

// sealPlaintext builds m with the protected payload p (an *SK or *SKF whose
// body is ignored) carrying the encrypted plaintext pt, padded.
func sealPlaintext(m *Message, p Payload, pt []byte, c SKCipher, rand io.Reader) ([]byte, error) {
	for _, q := range m.Payloads {
		if t := q.PayloadType(); t == PayloadSK || t == PayloadSKF {
			return nil, errors.New("ikewire: SealSK: m.Payloads already holds an SK or SKF payload")
		}
	}
	bs := c.BlockSize()
	padLen := (bs - (len(pt)+1)%bs) % bs
	body := make([]byte, c.IVLen()+len(pt)+padLen+1+c.ICVLen())
	copy(body[c.IVLen():], pt)
	body[c.IVLen()+len(pt)+padLen] = byte(padLen)
	switch p := p.(type) {
	case *SK:
		p.Body = body
	case *SKF:
		p.Body = body
	}
	for _, q := range m.Payloads {
		if q == nil {
			return nil, errors.New("ikewire: nil payload")
		}
	}
	mm := &Message{Header: m.Header, Payloads: append(m.Payloads[:len(m.Payloads):len(m.Payloads)], p)}
	out, err := mm.Marshal()
	if err != nil {
		return nil, err
	}
	ivOff := len(out) - len(body)
	if _, err := io.ReadFull(rand, out[ivOff:ivOff+c.IVLen()]); err != nil {
		return nil, fmt.Errorf("ikewire: reading the IV: %w", err)
	}
	c.Seal(out, ivOff)
	return out, nil
}

// OpenSK verifies and decrypts the SK payload of m, a message from Parse
// whose last payload is an *SK, and returns the inner payloads, parsed with
// the SK payload's Next Payload as the first type. It does not modify m.
// A failed integrity check, or an SK body too short for c, is an error with
// Notify 0 (drop the message, RFC 7296, Section 2.21.2); a malformed
// decrypted chain maps to INVALID_SYNTAX or UNSUPPORTED_CRITICAL_PAYLOAD.
func OpenSK(m *Message, c SKCipher) ([]Payload, error) {
	if len(m.Payloads) == 0 {
		return nil, syntaxErr("OpenSK: message has no SK payload")
	}
	sk, ok := m.Payloads[len(m.Payloads)-1].(*SK)
	if !ok {
		return nil, syntaxErr("OpenSK: the last payload is not SK")
	}
	pt, err := openPlaintext(m.Raw, len(sk.Body), c)
	if err != nil {
		return nil, err
	}
	return parseChain(pt, sk.NextPayload, false)
}

// openPlaintext decrypts the protected payload body, the last bodyLen bytes
// of raw, into a new buffer and returns the plaintext without padding.
func openPlaintext(raw []byte, bodyLen int, c SKCipher) ([]byte, error) {
	if len(raw) < HeaderLen+genericHeaderLen+bodyLen {
		return nil, drop("OpenSK: message was not produced by Parse")
	}
	if bodyLen < c.IVLen()+c.ICVLen()+1 {
		return nil, drop("SK payload too short for the cipher")
	}
	buf := bytes.Clone(raw)
	ivOff := len(buf) - bodyLen
	if err := c.Open(buf, ivOff); err != nil {
		return nil, drop(err.Error()[len("ikewire: "):])
	}
	pt := buf[ivOff+c.IVLen() : len(buf)-c.ICVLen()]
	// Section 3.14: the Pad Length byte ends the plaintext; the padding
	// before it may hold any value.
	padLen := int(pt[len(pt)-1])
	if padLen+1 > len(pt) {
		return nil, syntaxErr("SK payload: pad length beyond the plaintext")
	}
	return pt[:len(pt)-1-padLen], nil
}
