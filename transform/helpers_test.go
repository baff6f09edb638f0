package transform

import (
	"io/fs"

	wp "github.com/c2sp/wycheproof"

	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"
)

// unhex decodes a lower-case hex string from test data.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// loadJSON reads a file and decodes it into v.
func loadJSON(t testing.TB, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// kat returns the path of a file of the known-answer vectors in testdata/kat
// at the module root.
func kat(t testing.TB, name string) string {
	t.Helper()
	return testenv.TestdataFile(t, "kat/"+name)
}

// wycheproof loads a Wycheproof test vector file from the module's embedded
// file system (github.com/c2sp/wycheproof, a test dependency in go.mod).
func wycheproof(t testing.TB, name string, v any) {
	t.Helper()
	raw, err := fs.ReadFile(wp.TestVectors, name)
	if err != nil {
		t.Fatalf("wycheproof %s: %v", name, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("wycheproof %s: %v", name, err)
	}
}

// mustESP parses an ESP suite and keys it.
func mustESP(t testing.TB, name string, key []byte) ESP {
	t.Helper()
	s, err := ParseESP(name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.NewESP(key)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testKey returns n key bytes that differ per tag.
func testKey(n int, tag byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(i*29) ^ tag
	}
	return k
}

// aeadRegion builds an ESP region for an AEAD test vector: an 8-byte header
// that the AAD does not cover (the vector brings its own AAD), the 8-byte
// IV, then data, then room for icvLen bytes.
func aeadRegion(iv, data []byte, icvLen int) []byte {
	b := make([]byte, aeadOff+len(data)+icvLen)
	copy(b[ESPHeaderLen:], iv)
	copy(b[aeadOff:], data)
	return b
}
