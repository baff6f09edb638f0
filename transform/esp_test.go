package transform

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/goipsec/goipsec/iana"
)

func TestParseESP(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Suite
	}{
		{"aes128gcm16", Suite{Name: "aes128gcm16", Kind: KindAEAD, Encr: iana.EncrAESGCM16, EncrKeyBits: 128}},
		{"AES256GCM128", Suite{Name: "aes256gcm16", Kind: KindAEAD, Encr: iana.EncrAESGCM16, EncrKeyBits: 256}},
		{"aes192gcm96", Suite{Name: "aes192gcm12", Kind: KindAEAD, Encr: iana.EncrAESGCM12, EncrKeyBits: 192}},
		{"aes128gcm64", Suite{Name: "aes128gcm8", Kind: KindAEAD, Encr: iana.EncrAESGCM8, EncrKeyBits: 128}},
		{" ChaCha20Poly1305 ", Suite{Name: "chacha20poly1305", Kind: KindAEAD, Encr: iana.EncrChaCha20Poly1305, EncrKeyBits: 256}},
		{"aes256gmac", Suite{Name: "aes256gmac", Kind: KindGMAC, Encr: iana.EncrNullAuthAESGMAC, EncrKeyBits: 256}},
		{"aes128-sha256", Suite{Name: "aes128-sha256", Kind: KindCipher, Encr: iana.EncrAESCBC, EncrKeyBits: 128, Integ: iana.IntegHMACSHA2_256}},
		{"aes-sha", Suite{Name: "aes128-sha1", Kind: KindCipher, Encr: iana.EncrAESCBC, EncrKeyBits: 128, Integ: iana.IntegHMACSHA1_96}},
		{"sha2_512-aes256", Suite{Name: "aes256-sha512", Kind: KindCipher, Encr: iana.EncrAESCBC, EncrKeyBits: 256, Integ: iana.IntegHMACSHA2_512}},
		{"aes192ctr-aesxcbc", Suite{Name: "aes192ctr-aesxcbc", Kind: KindCipher, Encr: iana.EncrAESCTR, EncrKeyBits: 192, Integ: iana.IntegAESXCBC96}},
		{"null-sha384", Suite{Name: "null-sha384", Kind: KindCipher, Encr: iana.EncrNull, Integ: iana.IntegHMACSHA2_384}},
	} {
		got, err := ParseESP(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseESP(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct {
		in, msg string
		is      error
	}{
		{"aes128", "encryption without integrity is not allowed", nil},
		{"aes256ctr", "encryption without integrity is not allowed", nil},
		{"null", "encryption without integrity is not allowed", nil},
		{"aes128gcm16-sha256", "takes no integrity algorithm", nil},
		{"aes128gmac-sha1", "takes no integrity algorithm", nil},
		{"sha256", "no encryption algorithm", nil},
		{"aes128-aes256-sha1", "", ErrUnknownSuite},
		{"aes128-sha1-sha256", "", ErrUnknownSuite},
		{"aes128-sha256-sha1", "", ErrUnknownSuite},
		{"aes128-md5", "", ErrUnknownSuite},
		{"3des-sha1", "", ErrUnknownSuite},
		{"aes128ccm16", "", ErrUnknownSuite},
		{"", "", ErrUnknownSuite},
		{"aes128-", "", ErrUnknownSuite},
		{"aes128-sha1-", "", ErrUnknownSuite},
		{"aes128-aes256", "two encryption algorithms", nil},
		{"sha1-sha256", "two integrity algorithms", nil},
	} {
		_, err := ParseESP(c.in)
		if err == nil || !strings.Contains(err.Error(), c.msg) || (c.is != nil && !errors.Is(err, c.is)) || !strings.HasPrefix(err.Error(), "transform: ") {
			t.Errorf("ParseESP(%q) error %v; want one containing %q (wrapping %v)", c.in, err, c.msg, c.is)
		}
	}
}

func TestParseAH(t *testing.T) {
	for in, want := range map[string]Suite{
		"sha1":     {Name: "sha1", Kind: KindIntegrity, Integ: iana.IntegHMACSHA1_96},
		"SHA256":   {Name: "sha256", Kind: KindIntegrity, Integ: iana.IntegHMACSHA2_256},
		"sha2_384": {Name: "sha384", Kind: KindIntegrity, Integ: iana.IntegHMACSHA2_384},
		"sha512":   {Name: "sha512", Kind: KindIntegrity, Integ: iana.IntegHMACSHA2_512},
		"aesxcbc":  {Name: "aesxcbc", Kind: KindIntegrity, Integ: iana.IntegAESXCBC96},
	} {
		if got, err := ParseAH(in); err != nil || got != want {
			t.Errorf("ParseAH(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"aes128gmac", "aes192gmac", "aes256gmac"} {
		_, err := ParseAH(in)
		if !errors.Is(err, ErrNotImplemented) || !strings.Contains(err.Error(), "not implemented for AH") {
			t.Errorf("ParseAH(%q) error %v; want ErrNotImplemented, not implemented for AH", in, err)
		}
	}
	for _, in := range []string{"md5", "sha256-sha1", "", "aes128cmac"} {
		if _, err := ParseAH(in); !errors.Is(err, ErrUnknownSuite) {
			t.Errorf("ParseAH(%q) error %v; want ErrUnknownSuite", in, err)
		}
	}
	if _, err := ParseAH("aes128gcm16"); err == nil || !strings.Contains(err.Error(), "AH has no encryption") {
		t.Errorf("ParseAH(aes128gcm16) error %v", err)
	}
}

func TestSuitesParse(t *testing.T) {
	esp := ESPSuites()
	if len(esp) != 13+7*5 {
		t.Errorf("%d ESP suites, want %d", len(esp), 13+7*5)
	}
	seen := map[string]bool{}
	for _, s := range esp {
		if seen[s.Name] {
			t.Errorf("duplicate suite %s", s.Name)
		}
		seen[s.Name] = true
		if got, err := ParseESP(s.Name); err != nil || got != s {
			t.Errorf("ParseESP(%q) = %+v, %v; want %+v", s.Name, got, err, s)
		}
		if s.String() != s.Name {
			t.Errorf("String() = %q", s.String())
		}
	}
	ah := AHSuites()
	if len(ah) != 5 {
		t.Errorf("%d AH suites, want 5", len(ah))
	}
	for _, s := range ah {
		if got, err := ParseAH(s.Name); err != nil || got != s {
			t.Errorf("ParseAH(%q) = %+v, %v; want %+v", s.Name, got, err, s)
		}
	}
}

// TestKeyLen checks KEYMAT lengths against RFC 4106 Section 8.1, RFC 4543
// Section 8, RFC 7634 Section 2, RFC 3686 Section 5.1, RFC 3602 Section 5,
// RFC 2404 Section 3, RFC 4868 Section 2.1.1 and RFC 3566 Section 4, and the
// ICV, IV and block sizes of each transform.
func TestKeyLen(t *testing.T) {
	for _, c := range []struct {
		name            string
		key, iv, icv, b int
	}{
		{"aes128gcm16", 20, 8, 16, 4},
		{"aes192gcm12", 28, 8, 12, 4},
		{"aes256gcm8", 36, 8, 8, 4},
		{"chacha20poly1305", 36, 8, 16, 4},
		{"aes128gmac", 20, 8, 16, 4},
		{"aes256gmac", 36, 8, 16, 4},
		{"aes128-sha1", 16 + 20, 16, 12, 16},
		{"aes192-sha256", 24 + 32, 16, 16, 16},
		{"aes256-sha384", 32 + 48, 16, 24, 16},
		{"aes256-sha512", 32 + 64, 16, 32, 16},
		{"aes128-aesxcbc", 16 + 16, 16, 12, 16},
		{"aes128ctr-sha256", 20 + 32, 8, 16, 4},
		{"aes256ctr-aesxcbc", 36 + 16, 8, 12, 4},
		{"null-sha1", 20, 0, 12, 4},
		{"null-sha512", 64, 0, 32, 4},
	} {
		s, err := ParseESP(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if s.KeyLen() != c.key || s.IVLen() != c.iv || s.ICVLen() != c.icv || s.BlockSize() != c.b {
			t.Errorf("%s: KeyLen %d IVLen %d ICVLen %d BlockSize %d; want %d %d %d %d",
				c.name, s.KeyLen(), s.IVLen(), s.ICVLen(), s.BlockSize(), c.key, c.iv, c.icv, c.b)
		}
		e, err := s.NewESP(make([]byte, c.key))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if e.IVLen() != c.iv || e.ICVLen() != c.icv || e.BlockSize() != c.b {
			t.Errorf("%s: ESP IVLen %d ICVLen %d BlockSize %d", c.name, e.IVLen(), e.ICVLen(), e.BlockSize())
		}
		if _, err := s.NewESP(make([]byte, c.key-1)); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("needs a %d-byte key", c.key)) {
			t.Errorf("%s: NewESP with a short key: %v", c.name, err)
		}
		if _, err := s.NewAH(make([]byte, c.key)); err == nil {
			t.Errorf("%s: NewAH accepted an ESP suite", c.name)
		}
	}
	for name, key := range map[string]int{"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64, "aesxcbc": 16} {
		s, _ := ParseAH(name)
		if s.KeyLen() != key {
			t.Errorf("AH %s: KeyLen %d, want %d", name, s.KeyLen(), key)
		}
		if _, err := s.NewAH(make([]byte, key+1)); err == nil {
			t.Errorf("AH %s: NewAH accepted a long key", name)
		}
		if _, err := s.NewESP(make([]byte, key)); err == nil {
			t.Errorf("AH %s: NewESP accepted an AH suite", name)
		}
	}
	if _, err := (Suite{}).NewESP(nil); err == nil {
		t.Error("the zero Suite made an ESP")
	}
}

// newPacket returns an ESP region with header spi || uint32(seq) and a
// payload of n bytes (rounded up to the block size) of a pattern.
func newPacket(e ESP, spi uint32, seq uint64, n int) (b, payload []byte) {
	if bs := e.BlockSize(); n%bs != 0 {
		n += bs - n%bs
	}
	b = make([]byte, ESPHeaderLen+e.IVLen()+n+e.ICVLen())
	binary.BigEndian.PutUint32(b, spi)
	binary.BigEndian.PutUint32(b[4:], uint32(seq))
	payload = b[ESPHeaderLen+e.IVLen() : len(b)-e.ICVLen()]
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	return b, bytes.Clone(payload)
}

func allESP(t testing.TB) []ESP {
	var out []ESP
	for i, s := range ESPSuites() {
		e, err := s.NewESP(testKey(s.KeyLen(), byte(i)))
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		out = append(out, e)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	suites := ESPSuites()
	for i, e := range allESP(t) {
		for _, esn := range []bool{false, true} {
			for _, n := range []int{0, 4, 16, 100, 1400, 9000} {
				seq := uint64(7)<<32 | uint64(n+1)
				b, want := newPacket(e, 0x01020304, seq, n)
				e.Seal(b, seq, esn)
				p := b[ESPHeaderLen+e.IVLen() : len(b)-e.ICVLen()]
				enc := suites[i].Kind != KindGMAC && suites[i].Encr != iana.EncrNull
				if enc && len(p) >= 16 && bytes.Equal(p, want) {
					t.Errorf("%s: Seal left the payload in the clear", suites[i].Name)
				}
				if !enc && !bytes.Equal(p, want) {
					t.Errorf("%s: Seal changed a payload it must not encrypt", suites[i].Name)
				}
				if err := e.Open(b, seq, esn); err != nil {
					t.Fatalf("%s esn=%v n=%d: Open: %v", suites[i].Name, esn, n, err)
				}
				if !bytes.Equal(p, want) {
					t.Fatalf("%s esn=%v n=%d: round trip changed the payload", suites[i].Name, esn, n)
				}
			}
		}
	}
}

// TestFlips flips each bit position class of every byte of sealed packets:
// header, IV, payload and ICV are all authenticated.
func TestFlips(t *testing.T) {
	suites := ESPSuites()
	untouched := map[Kind]bool{KindCipher: true, KindGMAC: true}
	for i, e := range allESP(t) {
		for _, esn := range []bool{false, true} {
			seq := uint64(3)<<32 | 9
			sealed, _ := newPacket(e, 0xcafe0001, seq, 36)
			e.Seal(sealed, seq, esn)
			b := make([]byte, len(sealed))
			for pos := range sealed {
				for _, bit := range []byte{0x01, 0x80} {
					copy(b, sealed)
					b[pos] ^= bit
					if err := e.Open(b, seq, esn); !errors.Is(err, ErrAuth) {
						t.Errorf("%s esn=%v: byte %d ^ %#x: Open = %v, want ErrAuth", suites[i].Name, esn, pos, bit, err)
					}
					// Cipher suites check the ICV before decrypting, and
					// AES-GCM-8 decrypts into scratch space: neither may
					// leave unverified plaintext in b.
					if untouched[suites[i].Kind] || suites[i].Encr == iana.EncrAESGCM8 {
						b[pos] ^= bit
						if !bytes.Equal(b, sealed) {
							t.Errorf("%s esn=%v: byte %d ^ %#x: failed Open changed b", suites[i].Name, esn, pos, bit)
						}
					}
				}
			}
			copy(b, sealed)
			if err := e.Open(b, seq, esn); err != nil {
				t.Errorf("%s esn=%v: Open of the unmodified packet: %v", suites[i].Name, esn, err)
			}
		}
	}
}

// TestESNHighBits: with ESN the high 32 bits of the sequence number are
// authenticated though not sent (RFC 4303, Section 2.2.1); without ESN they
// play no part.
func TestESNHighBits(t *testing.T) {
	suites := ESPSuites()
	for i, e := range allESP(t) {
		seq := uint64(5)<<32 | 77
		sealed, _ := newPacket(e, 1, seq, 64)
		e.Seal(sealed, seq, true)
		for _, wrong := range []uint64{uint64(4)<<32 | 77, uint64(6)<<32 | 77, 77} {
			b := bytes.Clone(sealed)
			if err := e.Open(b, wrong, true); !errors.Is(err, ErrAuth) {
				t.Errorf("%s: Open with seq %#x instead of %#x: %v, want ErrAuth", suites[i].Name, wrong, seq, err)
			}
		}
		if err := e.Open(bytes.Clone(sealed), seq, false); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: a packet sealed with ESN opened without ESN", suites[i].Name)
		}
		sealed, _ = newPacket(e, 1, seq, 64)
		e.Seal(sealed, seq, false)
		if err := e.Open(sealed, 77, false); err != nil {
			t.Errorf("%s: without ESN the high bits must not matter: %v", suites[i].Name, err)
		}
	}
}

// TestShort: Open never panics on short or odd-length input.
func TestShort(t *testing.T) {
	suites := ESPSuites()
	for i, e := range allESP(t) {
		min := ESPHeaderLen + e.IVLen() + e.ICVLen()
		for n := 0; n < min+40; n++ {
			b := make([]byte, n)
			err := e.Open(b, 1, n%2 == 0)
			switch {
			case n < min && !errors.Is(err, ErrTruncated):
				t.Errorf("%s: Open of %d bytes: %v, want ErrTruncated", suites[i].Name, n, err)
			case n >= min && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed):
				t.Errorf("%s: Open of %d zero bytes: %v, want ErrAuth or ErrMalformed", suites[i].Name, n, err)
			}
		}
		if err := e.Open(make([]byte, MaxPacketLen+1), 1, false); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Open of %d bytes: %v, want ErrMalformed", suites[i].Name, MaxPacketLen+1, err)
		}
	}
}

// TestGCM8IsTruncatedGCM16: the 8-byte ICV is the leftmost half of the
// 16-byte one under the same key and IV (RFC 4106, Section 6), at lengths
// around the AES block size.
func TestGCM8IsTruncatedGCM16(t *testing.T) {
	for _, bits := range []int{128, 192, 256} {
		key := testKey(bits/8+4, 0x5a)
		e8 := mustESP(t, fmt.Sprintf("aes%dgcm8", bits), key)
		e16 := mustESP(t, fmt.Sprintf("aes%dgcm16", bits), key)
		for n := 0; n <= 68; n += 4 {
			b8, _ := newPacket(e8, 9, 1000, n)
			b16, _ := newPacket(e16, 9, 1000, n)
			e8.Seal(b8, 1000, true)
			e16.Seal(b16, 1000, true)
			if !bytes.Equal(b8, b16[:len(b16)-8]) {
				t.Fatalf("aes%d n=%d: gcm8 %x, gcm16 %x", bits, n, b8, b16)
			}
		}
	}
}

// TestCBCIV: IVs differ between packets and between SAs with the same key.
func TestCBCIV(t *testing.T) {
	s, _ := ParseESP("aes128-sha256")
	key := testKey(s.KeyLen(), 1)
	e1, _ := s.NewESP(key)
	e2, _ := s.NewESP(key)
	seen := map[string]bool{}
	for _, e := range []ESP{e1, e2} {
		for seq := uint64(1); seq <= 100; seq++ {
			b, _ := newPacket(e, 1, seq, 32)
			e.Seal(b, seq, false)
			iv := string(b[8:24])
			if seen[iv] {
				t.Fatalf("IV %x repeated", iv)
			}
			seen[iv] = true
		}
	}
}

// TestConcurrent seals and opens on one ESP state from many goroutines; run
// with -race.
func TestConcurrent(t *testing.T) {
	suites := ESPSuites()
	for i, e := range allESP(t) {
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for k := range 20 {
					seq := uint64(g*1000 + k + 1)
					b, want := newPacket(e, 1, seq, 200+g*16)
					e.Seal(b, seq, k%2 == 0)
					if err := e.Open(b, seq, k%2 == 0); err != nil || !bytes.Equal(b[ESPHeaderLen+e.IVLen():len(b)-e.ICVLen()], want) {
						t.Errorf("%s: concurrent round trip: %v", suites[i].Name, err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	suites := ESPSuites()
	for i, e := range allESP(t) {
		for _, esn := range []bool{false, true} {
			const seq = uint64(1)<<32 | 5
			b, _ := newPacket(e, 1, seq, 1400)
			sealed := make([]byte, len(b))
			e.Seal(b, seq, esn)
			copy(sealed, b)
			if err := e.Open(b, seq, esn); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(200, func() { e.Seal(b, seq, esn) }); n != 0 {
				t.Errorf("%s esn=%v: Seal allocates %v times", suites[i].Name, esn, n)
			}
			if n := testing.AllocsPerRun(200, func() {
				copy(b, sealed)
				if e.Open(b, seq, esn) != nil {
					panic("Open failed")
				}
			}); n != 0 {
				t.Errorf("%s esn=%v: Open allocates %v times", suites[i].Name, esn, n)
			}
		}
	}
	for _, s := range AHSuites() {
		m, err := s.NewAH(testKey(s.KeyLen(), 3))
		if err != nil {
			t.Fatal(err)
		}
		msg, icv := make([]byte, 1400), make([]byte, m.ICVLen())
		if n := testing.AllocsPerRun(200, func() {
			m.Sum(icv, msg, 1, true)
			if !m.Verify(icv, msg, 1, true) {
				panic("Verify failed")
			}
		}); n != 0 {
			t.Errorf("AH %s: Sum and Verify allocate %v times", s.Name, n)
		}
	}
}

// TestWarm checks that every ESP suite's transform implements Warmer, that
// Warm allocates nothing (the data plane calls it per packet) and that it
// leaves the transform working.
func TestWarm(t *testing.T) {
	for i, e := range allESP(t) {
		name := ESPSuites()[i].Name
		w, ok := e.(Warmer)
		if !ok {
			t.Errorf("%s: %T does not implement Warmer", name, e)
			continue
		}
		if !raceEnabled {
			if n := testing.AllocsPerRun(100, func() { w.Warm(0); w.Warm(1); w.Warm(2) }); n != 0 {
				t.Errorf("%s: Warm: %v allocations, want 0", name, n)
			}
		}
		b, payload := newPacket(e, 1, 7, 100)
		e.Seal(b, 7, false)
		if err := e.Open(b, 7, false); err != nil || !bytes.Equal(b[ESPHeaderLen+e.IVLen():len(b)-e.ICVLen()], payload) {
			t.Errorf("%s: round trip after Warm: %v", name, err)
		}
	}
}
