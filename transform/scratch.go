package transform

import (
	"encoding/binary"
	"sync"
)

// scratch holds the small per-packet buffers: nonces, the ESN AAD, counter
// blocks and MAC state. They cannot live on the stack because they are
// passed to methods of interfaces (cipher.AEAD, cipher.Block), which the
// compiler must assume keep them; a pool keeps the hot path free of
// allocations.
type scratch struct {
	nonce [12]byte // salt || IV (RFC 4106, Section 4)
	aad   [12]byte // SPI || seqHi || seqLo (RFC 4106, Section 5)
	tag   [16]byte
	ctr   [16]byte // counter block (RFC 3686, Section 4)
	ks    [16]byte // one block of key stream
	e     [16]byte // AES-XCBC-MAC chaining value
	buf   [16]byte // AES-XCBC-MAC pending block
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch  { return scratchPool.Get().(*scratch) }
func putScratch(s *scratch) { scratchPool.Put(s) }

// bigScratch is room for two copies of a whole packet: AES-GCM with an 8-byte
// ICV decrypts into a and re-encrypts into b to recompute the full tag, and
// AES-GMAC with ESN builds its AAD in a. It is pooled because it is large
// (2 x 64 KiB); the pool holds about one per goroutine that needs one at a
// time, and the garbage collector empties it when idle.
type bigScratch struct {
	a [MaxPacketLen + 32]byte
	b [MaxPacketLen + 32]byte
}

var bigPool = sync.Pool{New: func() any { return new(bigScratch) }}

// setNonce writes salt || iv into s.nonce and returns it.
func (s *scratch) setNonce(salt *[4]byte, iv []byte) []byte {
	copy(s.nonce[:4], salt[:])
	copy(s.nonce[4:], iv)
	return s.nonce[:]
}

// espAAD returns the AAD of an AEAD over the ESP region b: the ESP header
// b[0:8] as it is, or with ESN the SPI, the high 32 bits of seq and the low
// 32 bits from the header (RFC 4106 Section 5, RFC 7634 Section 2.1).
func (s *scratch) espAAD(b []byte, seq uint64, esn bool) []byte {
	if !esn {
		return b[:ESPHeaderLen]
	}
	copy(s.aad[0:4], b[0:4])
	binary.BigEndian.PutUint32(s.aad[4:8], uint32(seq>>32))
	copy(s.aad[8:12], b[4:8])
	return s.aad[:]
}
