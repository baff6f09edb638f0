package transform

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// BenchmarkESP measures Seal and Open of a 1400-byte payload for every ESP
// suite. Compare the AEADs with BenchmarkStdlibAEAD, the bare AEAD on the
// same sizes.
func BenchmarkESP(b *testing.B) {
	for i, s := range ESPSuites() {
		e, err := s.NewESP(testKey(s.KeyLen(), byte(i)))
		if err != nil {
			b.Fatal(err)
		}
		pkt, _ := newPacket(e, 1, 1, 1400)
		b.Run(s.Name+"/seal", func(b *testing.B) {
			b.SetBytes(1400)
			b.ReportAllocs()
			for b.Loop() {
				e.Seal(pkt, 1, false)
			}
		})
		e.Seal(pkt, 1, false)
		sealed := append([]byte(nil), pkt...)
		b.Run(s.Name+"/open", func(b *testing.B) {
			b.SetBytes(1400)
			b.ReportAllocs()
			for b.Loop() {
				copy(pkt, sealed)
				if e.Open(pkt, 1, false) != nil {
					b.Fatal("Open failed")
				}
			}
		})
	}
}

// BenchmarkStdlibAEAD is the baseline: the bare AEADs, sealing and opening in
// place with a fixed nonce (the copy in open is the same as in BenchmarkESP).
func BenchmarkStdlibAEAD(b *testing.B) {
	block, _ := aes.NewCipher(make([]byte, 16))
	gcm, _ := cipher.NewGCM(block)
	cc, _ := chacha20poly1305.New(make([]byte, 32))
	for _, c := range []struct {
		name string
		a    cipher.AEAD
	}{{"aes128gcm16", gcm}, {"chacha20poly1305", cc}} {
		nonce, aad := make([]byte, 12), make([]byte, 8)
		buf := make([]byte, 1400+16)
		b.Run(c.name+"/seal", func(b *testing.B) {
			b.SetBytes(1400)
			b.ReportAllocs()
			for b.Loop() {
				c.a.Seal(buf[:0], nonce, buf[:1400], aad)
			}
		})
		c.a.Seal(buf[:0], nonce, buf[:1400], aad)
		sealed := append([]byte(nil), buf...)
		b.Run(c.name+"/open", func(b *testing.B) {
			b.SetBytes(1400)
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, sealed)
				if _, err := c.a.Open(buf[:0], nonce, buf, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
