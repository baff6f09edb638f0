package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/goipsec/goipsec/replay"
)

// Benchmarks: BenchmarkSeal and BenchmarkOpen time this package on inner
// packets of SIZE bytes (tunnel mode, IPv4 outer), BenchmarkAEAD the bare
// standard-library or x/crypto primitives on SIZE bytes with the same key
// sizes, nonce and AAD lengths (for CBC+HMAC suites: cipher.BlockMode
// encryption or decryption plus HMAC). Every iteration of every benchmark
// first copies SIZE bytes into the work buffer (the plaintext to seal, or
// the packet to open, since both work in place), so the ratios compare like
// with like. Compare with
//
//	go test ./esp -run XXX -bench 'Seal|Open|AEAD' -benchtime 1s

var benchSizes = []int{64, 512, 1400, 8192}

var benchSuites = []string{
	"aes128gcm16", "aes256gcm16", "aes128gcm8", "chacha20poly1305", "aes128gmac", "aes256gmac",
	"aes128-sha256", "aes256-sha256", "aes256-sha512", "aes128-sha1",
}

func benchNames(b *testing.B, f func(b *testing.B, suite string, size int)) {
	for _, s := range benchSuites {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s, n), func(b *testing.B) { f(b, s, n) })
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	benchNames(b, func(b *testing.B, suite string, size int) {
		o, _ := newPair(b, suite, Config{})
		pkt := innerPacket(false, size-28)
		buf, s, e := place(pkt)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			copy(buf[s:e], pkt)
			if _, _, err := o.Seal(buf, s, e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	const ring = 128
	benchNames(b, func(b *testing.B, suite string, size int) {
		o, in := newPair(b, suite, Config{ReplayWindow: 2 * ring})
		pkt := innerPacket(false, size-28)
		var sealed [ring][]byte
		for i := range sealed {
			sealed[i] = seal(b, o, pkt)
		}
		buf := make([]byte, len(sealed[0]))
		b.SetBytes(int64(size))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == ring {
				// Every sequence number of the ring was accepted: start a
				// new window, outside the timing.
				b.StopTimer()
				in.window = replay.Window{}
				if err := in.window.Init(2*ring, false); err != nil {
					b.Fatal(err)
				}
				i = 0
				b.StartTimer()
			}
			copy(buf, sealed[i])
			if _, _, err := in.Open(buf, 0, len(buf)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// bareAEAD is the primitive of one suite without ESP around it.
type bareAEAD struct {
	aead  cipher.AEAD // AEAD and GMAC suites
	gmac  bool
	block cipher.Block // CBC suites
	mac   hash.Hash
	tag   int
}

func newBare(b *testing.B, suite string) *bareAEAD {
	key := testKey(64, 1)
	aesGCM := func(n, tag int) cipher.AEAD {
		blk, err := aes.NewCipher(key[:n])
		if err != nil {
			b.Fatal(err)
		}
		a, err := cipher.NewGCMWithTagSize(blk, tag)
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	cbc := func(n int, h func() hash.Hash, tag int) *bareAEAD {
		blk, err := aes.NewCipher(key[:n])
		if err != nil {
			b.Fatal(err)
		}
		return &bareAEAD{block: blk, mac: hmac.New(h, key[:32]), tag: tag}
	}
	switch suite {
	case "aes128gcm16":
		return &bareAEAD{aead: aesGCM(16, 16)}
	case "aes256gcm16":
		return &bareAEAD{aead: aesGCM(32, 16)}
	case "aes128gcm8":
		return &bareAEAD{aead: aesGCM(16, 16)} // GCM-8 is GCM-16 truncated (RFC 4106, Section 6)
	case "aes128gmac":
		return &bareAEAD{aead: aesGCM(16, 16), gmac: true}
	case "aes256gmac":
		return &bareAEAD{aead: aesGCM(32, 16), gmac: true}
	case "chacha20poly1305":
		a, err := chacha20poly1305.New(key[:32])
		if err != nil {
			b.Fatal(err)
		}
		return &bareAEAD{aead: a}
	case "aes128-sha256":
		return cbc(16, sha256.New, 16)
	case "aes256-sha256":
		return cbc(32, sha256.New, 16)
	case "aes256-sha512":
		return cbc(32, sha512.New, 32)
	case "aes128-sha1":
		return cbc(16, sha1.New, 12)
	}
	b.Fatalf("no bare primitive for %s", suite)
	return nil
}

// BenchmarkAEAD times the bare primitives: Seal and Open of SIZE bytes with
// an 8-byte AAD (the ESP header) and a 12-byte nonce; for GMAC, a tag over
// SIZE bytes of AAD; for CBC+HMAC, CBC over SIZE bytes rounded up to the
// block and HMAC over the header, IV and ciphertext.
func BenchmarkAEAD(b *testing.B) {
	for _, op := range []string{"Seal", "Open"} {
		b.Run(op, func(b *testing.B) {
			benchNames(b, func(b *testing.B, suite string, size int) {
				p := newBare(b, suite)
				n := (size + 15) &^ 15
				src := make([]byte, n+64)
				for i := range src {
					src[i] = byte(i)
				}
				buf := make([]byte, 8+16+n+64)
				nonce := make([]byte, 12)
				iv := make([]byte, 16)
				var sum [64]byte
				hdr := buf[:8]
				if op == "Open" && p.aead != nil {
					// Prepare a valid ciphertext to open.
					if p.gmac {
						src = p.aead.Seal(src[:size], nonce, nil, src[:size])
					} else {
						src = p.aead.Seal(nil, nonce, src[:size], hdr)
					}
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					switch {
					case p.gmac && op == "Seal":
						copy(buf, src[:size])
						p.aead.Seal(buf[size:size], nonce, nil, buf[:size])
					case p.gmac:
						copy(buf, src[:size+16])
						if _, err := p.aead.Open(buf[size:size], nonce, buf[size:size+16], buf[:size]); err != nil {
							b.Fatal(err)
						}
					case p.aead != nil && op == "Seal":
						copy(buf[8:], src[:size])
						p.aead.Seal(buf[8:8], nonce, buf[8:8+size], hdr)
					case p.aead != nil:
						copy(buf[8:], src[:size+p.aead.Overhead()])
						if _, err := p.aead.Open(buf[8:8], nonce, buf[8:8+size+p.aead.Overhead()], hdr); err != nil {
							b.Fatal(err)
						}
					case op == "Seal":
						copy(buf[24:], src[:n])
						cipher.NewCBCEncrypter(p.block, iv).CryptBlocks(buf[24:24+n], buf[24:24+n])
						p.mac.Reset()
						p.mac.Write(buf[:24+n])
						copy(buf[24+n:], p.mac.Sum(sum[:0])[:p.tag])
					default:
						copy(buf[24:], src[:n])
						p.mac.Reset()
						p.mac.Write(buf[:24+n])
						if !hmac.Equal(p.mac.Sum(sum[:0])[:p.tag], src[n:n+p.tag]) && src[0] == 0xff {
							b.Fatal("unreachable: keeps the comparison")
						}
						cipher.NewCBCDecrypter(p.block, iv).CryptBlocks(buf[24:24+n], buf[24:24+n])
					}
				}
			})
		})
	}
}
