package transform

// Wycheproof (github.com/c2sp/wycheproof, testvectors_v1) through this
// package's ESP code: each 12-byte Wycheproof nonce is split into the 4-byte
// salt that ends the KEYMAT and the 8-byte IV of the ESP packet (RFC 4106
// Section 4, RFC 7634 Section 2), and the vector's AAD is passed as is.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"testing"
)

type wycheAEADFile struct {
	TestGroups []struct {
		IVSize  int `json:"ivSize"`
		KeySize int `json:"keySize"`
		TagSize int `json:"tagSize"`
		Tests   []struct {
			TcID   int    `json:"tcId"`
			Key    string `json:"key"`
			IV     string `json:"iv"`
			AAD    string `json:"aad"`
			Msg    string `json:"msg"`
			CT     string `json:"ct"`
			Tag    string `json:"tag"`
			Result string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// wycheAEAD runs one AEAD vector with the ICV truncated to icvLen. valid says
// whether the truncated vector must verify.
func wycheAEAD(t *testing.T, suite string, key, nonce, aad, msg, ct, tag []byte, icvLen int, valid bool) {
	t.Helper()
	e := mustESP(t, suite, append(bytes.Clone(key), nonce[:4]...)).(*aeadESP)
	sc := getScratch()
	defer putScratch(sc)
	want := append(bytes.Clone(ct), tag[:icvLen]...)
	if valid {
		b := aeadRegion(nonce[4:], msg, icvLen)
		e.seal(sc, b, aad)
		if !bytes.Equal(b[aeadOff:], want) {
			t.Errorf("seal\n got %x\nwant %x", b[aeadOff:], want)
		}
	}
	b := aeadRegion(nonce[4:], want, 0)
	err := e.open(sc, b, aad)
	switch {
	case valid && err != nil:
		t.Errorf("open: %v", err)
	case valid && !bytes.Equal(b[aeadOff:aeadOff+len(msg)], msg):
		t.Errorf("open\n got %x\nwant %x", b[aeadOff:aeadOff+len(msg)], msg)
	case !valid && !errors.Is(err, ErrAuth):
		t.Errorf("open of an invalid vector: %v, want ErrAuth", err)
	}
}

func TestWycheproofAESGCM(t *testing.T) {
	var f wycheAEADFile
	wycheproof(t, "aes_gcm_test.json", &f)
	n := map[int]int{}
	for _, g := range f.TestGroups {
		if g.IVSize != 96 || g.TagSize != 128 {
			continue // ESP nonces are 96 bits (RFC 4106, Section 4)
		}
		for _, tc := range g.Tests {
			key, nonce, aad, msg, ct, tag := unhex(t, tc.Key), unhex(t, tc.IV), unhex(t, tc.AAD), unhex(t, tc.Msg), unhex(t, tc.CT), unhex(t, tc.Tag)
			if tc.Result == "acceptable" || len(tag) != 16 {
				continue
			}
			// What the vector's (key, nonce, AAD, message) truly seal to,
			// from Go's own GCM: a vector marked invalid because of a
			// change in tag bytes that truncation drops is valid for the
			// shorter ICV.
			block, _ := aes.NewCipher(key)
			std, _ := cipher.NewGCM(block)
			truth := std.Seal(nil, nonce, msg, aad)
			for _, icv := range []int{16, 12, 8} {
				valid := tc.Result == "valid"
				if !valid && icv < 16 {
					valid = bytes.Equal(truth[:len(ct)], ct) && bytes.Equal(truth[len(ct):len(ct)+icv], tag[:icv])
				}
				t.Run(fmt.Sprintf("tc%d/icv%d", tc.TcID, icv), func(t *testing.T) {
					wycheAEAD(t, fmt.Sprintf("aes%dgcm%d", g.KeySize, icv), key, nonce, aad, msg, ct, tag, icv, valid)
				})
				n[icv]++
			}
		}
	}
	if n[16] < 150 {
		t.Fatalf("only %d AES-GCM vectors with 96-bit nonces", n[16])
	}
}

func TestWycheproofChaCha20Poly1305(t *testing.T) {
	var f wycheAEADFile
	wycheproof(t, "chacha20_poly1305_test.json", &f)
	n := 0
	for _, g := range f.TestGroups {
		if g.IVSize != 96 || g.TagSize != 128 {
			continue
		}
		for _, tc := range g.Tests {
			if tc.Result == "acceptable" {
				continue
			}
			t.Run(fmt.Sprintf("tc%d", tc.TcID), func(t *testing.T) {
				wycheAEAD(t, "chacha20poly1305", unhex(t, tc.Key), unhex(t, tc.IV), unhex(t, tc.AAD),
					unhex(t, tc.Msg), unhex(t, tc.CT), unhex(t, tc.Tag), 16, tc.Result == "valid")
			})
			n++
		}
	}
	if n < 300 {
		t.Fatalf("only %d ChaCha20-Poly1305 vectors", n)
	}
}

// TestWycheproofAESGMAC checks the GMAC of ENCR_NULL_AUTH_AES_GMAC: the
// vector's message is the whole AAD (RFC 4543, Section 3.2).
func TestWycheproofAESGMAC(t *testing.T) {
	var f struct {
		TestGroups []struct {
			IVSize  int `json:"ivSize"`
			KeySize int `json:"keySize"`
			TagSize int `json:"tagSize"`
			Tests   []struct {
				TcID   int    `json:"tcId"`
				Key    string `json:"key"`
				IV     string `json:"iv"`
				Msg    string `json:"msg"`
				Tag    string `json:"tag"`
				Result string `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	wycheproof(t, "aes_gmac_test.json", &f)
	n := 0
	sc := getScratch()
	defer putScratch(sc)
	for _, g := range f.TestGroups {
		if g.IVSize != 96 || g.TagSize != 128 {
			continue
		}
		for _, tc := range g.Tests {
			key, nonce, msg, tag := unhex(t, tc.Key), unhex(t, tc.IV), unhex(t, tc.Msg), unhex(t, tc.Tag)
			if tc.Result == "acceptable" || len(tag) != gmacICVLen || len(key)*8 != g.KeySize {
				continue
			}
			e := mustESP(t, fmt.Sprintf("aes%dgmac", g.KeySize), append(key, nonce[:4]...)).(*gmacESP)
			if tc.Result == "valid" {
				b := aeadRegion(nonce[4:], nil, gmacICVLen)
				e.seal(sc, b, msg)
				if !bytes.Equal(b[aeadOff:], tag) {
					t.Errorf("tc%d: seal\n got %x\nwant %x", tc.TcID, b[aeadOff:], tag)
				}
			}
			err := e.open(sc, aeadRegion(nonce[4:], tag, 0), msg)
			if tc.Result == "valid" && err != nil {
				t.Errorf("tc%d: open: %v", tc.TcID, err)
			}
			if tc.Result == "invalid" && !errors.Is(err, ErrAuth) {
				t.Errorf("tc%d: open of an invalid vector: %v, want ErrAuth", tc.TcID, err)
			}
			n++
		}
	}
	if n < 150 {
		t.Fatalf("only %d AES-GMAC vectors with 96-bit IVs", n)
	}
}

// TestWycheproofHMAC checks HMAC-SHA1-96 and HMAC-SHA2 with ICVs truncated to
// half the hash (RFC 4868), for the vectors whose key has the length these
// transforms take. Where the vector's tag is longer than the ICV, an invalid
// vector is expected to fail only if its truncated tag differs from the true
// one (from Go's crypto/hmac).
func TestWycheproofHMAC(t *testing.T) {
	for _, c := range []struct {
		file, suite string
		h           func() hash.Hash
	}{
		{"hmac_sha1_test.json", "sha1", sha1.New},
		{"hmac_sha256_test.json", "sha256", sha256.New},
		{"hmac_sha384_test.json", "sha384", sha512.New384},
		{"hmac_sha512_test.json", "sha512", sha512.New},
	} {
		t.Run(c.suite, func(t *testing.T) {
			var f struct {
				TestGroups []struct {
					KeySize int `json:"keySize"`
					TagSize int `json:"tagSize"`
					Tests   []struct {
						TcID   int    `json:"tcId"`
						Key    string `json:"key"`
						Msg    string `json:"msg"`
						Tag    string `json:"tag"`
						Result string `json:"result"`
					} `json:"tests"`
				} `json:"testGroups"`
			}
			wycheproof(t, c.file, &f)
			s, err := ParseAH(c.suite)
			if err != nil {
				t.Fatal(err)
			}
			icvLen := s.ICVLen()
			exact, n := 0, 0
			for _, g := range f.TestGroups {
				if g.KeySize != s.KeyLen()*8 || g.TagSize < icvLen*8 {
					continue
				}
				for _, tc := range g.Tests {
					key, msg, tag := unhex(t, tc.Key), unhex(t, tc.Msg), unhex(t, tc.Tag)
					if tc.Result == "acceptable" || len(tag) < icvLen {
						continue
					}
					m, err := s.NewAH(key)
					if err != nil {
						t.Fatal(err)
					}
					valid := tc.Result == "valid"
					if !valid && len(tag) > icvLen {
						mac := hmac.New(c.h, key)
						mac.Write(msg)
						valid = bytes.Equal(mac.Sum(nil)[:icvLen], tag[:icvLen])
					}
					if tc.Result == "valid" {
						got := make([]byte, icvLen)
						m.Sum(got, msg, 0, false)
						if !bytes.Equal(got, tag[:icvLen]) {
							t.Errorf("tc%d: Sum\n got %x\nwant %x", tc.TcID, got, tag[:icvLen])
						}
					}
					if m.Verify(tag[:icvLen], msg, 0, false) != valid {
						t.Errorf("tc%d (%s): Verify = %v, want %v", tc.TcID, tc.Result, !valid, valid)
					}
					if g.TagSize == icvLen*8 {
						exact++
					}
					n++
				}
			}
			if n < 80 {
				t.Fatalf("only %d vectors", n)
			}
			t.Logf("%d vectors, %d with the exact ICV length", n, exact)
		})
	}
}
