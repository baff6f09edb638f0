package transform

import (
	"errors"
	"testing"
)

// fuzzSuites are the ESP suites FuzzOpen feeds: one of each code path.
var fuzzSuites = []string{
	"aes128gcm16", "aes256gcm12", "aes128gcm8", "chacha20poly1305", "aes128gmac",
	"aes128-sha256", "aes256ctr-aesxcbc", "null-sha1",
}

// FuzzOpen feeds arbitrary bytes to Open: the first byte picks the suite,
// the second whether ESN is on, the rest is the ESP region. Open must not
// panic, and forged input must fail the ICV check.
func FuzzOpen(f *testing.F) {
	esps := make([]ESP, len(fuzzSuites))
	for i, name := range fuzzSuites {
		s, err := ParseESP(name)
		if err != nil {
			f.Fatal(err)
		}
		if esps[i], err = s.NewESP(testKey(s.KeyLen(), byte(i))); err != nil {
			f.Fatal(err)
		}
	}
	for i, e := range esps {
		b, _ := newPacket(e, 0x100, 3, 40)
		e.Seal(b, 3, i%2 == 1)
		f.Add(append([]byte{byte(i), byte(i % 2)}, b...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		e := esps[int(data[0])%len(esps)]
		esn := data[1]&1 == 1
		b := data[2:]
		err := e.Open(b, uint64(data[1])<<32|3, esn)
		if err != nil && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Open returned %v", err)
		}
	})
}
