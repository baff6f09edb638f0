package transform

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"

	"github.com/goipsec/goipsec/iana"
)

// newIntegrity returns the integrity algorithm id keyed with key, whose
// length the caller has checked.
func newIntegrity(id iana.IntegID, key []byte) (Integrity, error) {
	alg, ok := integByID(id)
	if !ok {
		return nil, fmt.Errorf("transform: integrity algorithm %d: %w", id, ErrNotImplemented)
	}
	switch id {
	case iana.IntegHMACSHA1_96:
		return newHMAC(sha1.New, key, alg.icvLen), nil
	case iana.IntegHMACSHA2_256:
		return newHMAC(sha256.New, key, alg.icvLen), nil
	case iana.IntegHMACSHA2_384:
		return newHMAC(sha512.New384, key, alg.icvLen), nil
	case iana.IntegHMACSHA2_512:
		return newHMAC(sha512.New, key, alg.icvLen), nil
	case iana.IntegAESXCBC96:
		return newXCBC(key)
	}
	return nil, fmt.Errorf("transform: integrity algorithm %d: %w", id, ErrNotImplemented)
}

// hmacInteg is HMAC (RFC 2104) truncated to icvLen bytes: HMAC-SHA1-96
// (RFC 2404) and HMAC-SHA2-256-128, -384-192 and -512-256 (RFC 4868,
// Section 2.1.1). A hash.Hash is not safe for concurrent use, so each
// goroutine takes a keyed state from a pool; Reset brings it back to the
// keyed initial state without allocating.
type hmacInteg struct {
	icvLen int
	pool   sync.Pool // of *hmacState
}

type hmacState struct {
	h   hash.Hash
	hi  [4]byte
	sum [sha512.Size]byte
}

func newHMAC(h func() hash.Hash, key []byte, icvLen int) *hmacInteg {
	k := append([]byte(nil), key...)
	m := &hmacInteg{icvLen: icvLen}
	m.pool.New = func() any { return &hmacState{h: hmac.New(h, k)} }
	return m
}

// ICVLen implements Integrity.
func (m *hmacInteg) ICVLen() int { return m.icvLen }

// mac computes the full HMAC of msg || seqHi into st.sum and returns it.
func (m *hmacInteg) mac(st *hmacState, msg []byte, seqHi uint32, esn bool) []byte {
	st.h.Reset()
	st.h.Write(msg)
	if esn {
		binary.BigEndian.PutUint32(st.hi[:], seqHi)
		st.h.Write(st.hi[:])
	}
	return st.h.Sum(st.sum[:0])
}

// Sum implements Integrity.
func (m *hmacInteg) Sum(icv, msg []byte, seqHi uint32, esn bool) {
	st := m.pool.Get().(*hmacState)
	copy(icv[:m.icvLen], m.mac(st, msg, seqHi, esn))
	m.pool.Put(st)
}

// Verify implements Integrity.
func (m *hmacInteg) Verify(icv, msg []byte, seqHi uint32, esn bool) bool {
	if len(icv) != m.icvLen {
		return false
	}
	st := m.pool.Get().(*hmacState)
	ok := subtle.ConstantTimeCompare(m.mac(st, msg, seqHi, esn)[:m.icvLen], icv) == 1
	m.pool.Put(st)
	return ok
}

// xcbcInteg is AES-XCBC-MAC-96 (RFC 3566): CBC-MAC under K1 = AES-K(0x01..),
// with K2 = AES-K(0x02..) mixed into a complete last block and K3 =
// AES-K(0x03..) into a padded one (Section 4), truncated to 96 bits
// (Section 4.1). The keys are read-only after setup; the chaining state lives
// in pooled scratch space, so it is safe for concurrent use and allocates
// nothing.
type xcbcInteg struct {
	k1     cipher.Block
	k2, k3 [aes.BlockSize]byte
}

// xcbcICVLen is the ICV length of AES-XCBC-MAC-96 (RFC 3566, Section 4.1).
const xcbcICVLen = 12

func newXCBC(key []byte) (*xcbcInteg, error) {
	k, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("transform: aesxcbc: %w", err)
	}
	var x xcbcInteg
	var k1 [aes.BlockSize]byte
	for i, dst := range [][]byte{k1[:], x.k2[:], x.k3[:]} {
		for j := range dst {
			dst[j] = byte(i + 1)
		}
		k.Encrypt(dst, dst)
	}
	if x.k1, err = aes.NewCipher(k1[:]); err != nil {
		return nil, fmt.Errorf("transform: aesxcbc: %w", err)
	}
	clear(k1[:])
	return &x, nil
}

// ICVLen implements Integrity.
func (x *xcbcInteg) ICVLen() int { return xcbcICVLen }

// xcbcMAC is the state of one AES-XCBC-MAC computation: the chaining value
// and up to one block of input not yet processed. The last block is held
// back until the end, since it is treated differently (RFC 3566, Section
// 4, steps 2 and 3).
type xcbcMAC struct {
	x *xcbcInteg
	s *scratch
	n int // bytes pending in s.buf
}

func (m *xcbcMAC) write(p []byte) {
	e, buf := m.s.e[:], m.s.buf[:]
	if m.n > 0 {
		c := copy(buf[m.n:], p)
		m.n += c
		p = p[c:]
		if len(p) == 0 {
			return // the pending block may be the last one
		}
		// The pending block is full and more input follows.
		subtle.XORBytes(e, e, buf)
		m.x.k1.Encrypt(e, e)
	}
	for len(p) > aes.BlockSize {
		subtle.XORBytes(e, e, p[:aes.BlockSize])
		m.x.k1.Encrypt(e, e)
		p = p[aes.BlockSize:]
	}
	m.n = copy(buf, p)
}

// sum finishes the MAC into m.s.e.
func (m *xcbcMAC) sum() []byte {
	e, buf := m.s.e[:], m.s.buf[:]
	if m.n == aes.BlockSize {
		subtle.XORBytes(e, e, buf)
		subtle.XORBytes(e, e, m.x.k2[:])
	} else {
		// An incomplete (or empty) last block is padded with 0x80 and
		// zeros (RFC 3566, Section 4, step 3b).
		buf[m.n] = 0x80
		clear(buf[m.n+1:])
		subtle.XORBytes(e, e, buf)
		subtle.XORBytes(e, e, m.x.k3[:])
	}
	m.x.k1.Encrypt(e, e)
	return e
}

// mac computes the full 16-byte MAC of msg || seqHi into sc.e.
func (x *xcbcInteg) mac(sc *scratch, msg []byte, seqHi uint32, esn bool) []byte {
	clear(sc.e[:])
	m := xcbcMAC{x: x, s: sc}
	m.write(msg)
	if esn {
		binary.BigEndian.PutUint32(sc.tag[:4], seqHi)
		m.write(sc.tag[:4])
	}
	return m.sum()
}

// Sum implements Integrity.
func (x *xcbcInteg) Sum(icv, msg []byte, seqHi uint32, esn bool) {
	sc := getScratch()
	copy(icv[:xcbcICVLen], x.mac(sc, msg, seqHi, esn))
	putScratch(sc)
}

// Verify implements Integrity.
func (x *xcbcInteg) Verify(icv, msg []byte, seqHi uint32, esn bool) bool {
	if len(icv) != xcbcICVLen {
		return false
	}
	sc := getScratch()
	ok := subtle.ConstantTimeCompare(x.mac(sc, msg, seqHi, esn)[:xcbcICVLen], icv) == 1
	putScratch(sc)
	return ok
}
