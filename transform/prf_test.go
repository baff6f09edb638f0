package transform

// PRF known answers: RFC 4868 / RFC 4231 (HMAC-SHA2), RFC 2202 (HMAC-SHA1)
// and RFC 3566 / RFC 4434 (AES-XCBC-PRF-128, including its 10- and 18-byte
// keys), from testdata/kat (strongSwan's test_vectors plugin), and
// Wycheproof's HMAC vectors.

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/iana"
)

type prfKAT struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	TransformID any    `json:"transform_id"`
	Key         string `json:"key_hex"`
	Data        string `json:"data_hex"`
	Out         string `json:"out_hex"`
}

func TestPRFKAT(t *testing.T) {
	n := 0
	for _, file := range []string{"sha2_hmac.json", "sha1_hmac.json", "aes_xcbc.json"} {
		var f struct{ Vectors []prfKAT }
		loadJSON(t, kat(t, file), &f)
		for _, v := range f.Vectors {
			if v.Kind != "prf" {
				continue
			}
			id, err := strconv.Atoi(fmt.Sprint(v.TransformID))
			if err != nil {
				t.Fatalf("%s: transform_id %q", v.Name, v.TransformID)
			}
			prf, err := NewPRF(iana.PRFID(id))
			if err != nil {
				t.Fatalf("%s: %v", v.Name, err)
			}
			key, data, want := unhex(t, v.Key), unhex(t, v.Data), unhex(t, v.Out)
			if got := prf.Sum(key, data); !bytes.Equal(got, want) {
				t.Errorf("%s: Sum\n got %x\nwant %x", v.Name, got, want)
			}
			// The same input split in pieces.
			if len(data) > 3 {
				if got := prf.Sum(key, data[:1], nil, data[1:3], data[3:]); !bytes.Equal(got, want) {
					t.Errorf("%s: Sum of pieces\n got %x\nwant %x", v.Name, got, want)
				}
			}
			if prf.Size() != len(want) {
				t.Errorf("%s: Size %d, output %d", v.Name, prf.Size(), len(want))
			}
			n++
		}
	}
	if n < 20 {
		t.Errorf("only %d PRF vectors ran", n)
	}
}

// TestPRFWycheproofHMAC runs the untruncated, valid Wycheproof HMAC vectors
// through the HMAC PRFs.
func TestPRFWycheproofHMAC(t *testing.T) {
	for file, id := range map[string]iana.PRFID{
		"hmac_sha1_test.json":   iana.PRFHMACSHA1,
		"hmac_sha256_test.json": iana.PRFHMACSHA2_256,
		"hmac_sha384_test.json": iana.PRFHMACSHA2_384,
		"hmac_sha512_test.json": iana.PRFHMACSHA2_512,
	} {
		var f struct {
			TestGroups []struct {
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
		wycheproof(t, file, &f)
		prf := MustPRF(id)
		n := 0
		for _, g := range f.TestGroups {
			if g.TagSize != 8*prf.Size() {
				continue
			}
			for _, tc := range g.Tests {
				got := prf.Sum(unhex(t, tc.Key), unhex(t, tc.Msg))
				if eq := bytes.Equal(got, unhex(t, tc.Tag)); eq != (tc.Result == "valid") {
					t.Errorf("%s tc %d (%s): match %v", file, tc.TcID, tc.Result, eq)
				}
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s: no vectors ran", file)
		}
	}
}

func TestParsePRF(t *testing.T) {
	for kw, id := range map[string]iana.PRFID{
		"prfsha256": iana.PRFHMACSHA2_256, "PRFSHA384": iana.PRFHMACSHA2_384,
		"prfsha512": iana.PRFHMACSHA2_512, "prfsha1": iana.PRFHMACSHA1, "prfaesxcbc": iana.PRFAES128XCBC,
	} {
		p, err := ParsePRF(kw)
		if err != nil || p.ID() != id {
			t.Errorf("ParsePRF(%q) = %v, %v; want %d", kw, p.ID(), err, id)
		}
		if p.String() != strings.ToLower(kw) {
			t.Errorf("String = %q, want %q", p.String(), strings.ToLower(kw))
		}
	}
	for kw, want := range map[string]error{"prfmd5": ErrWeak, "prfaescmac": ErrNotImplemented, "prfsha3": ErrUnknownSuite, "sha256": ErrUnknownSuite} {
		if _, err := ParsePRF(kw); !errors.Is(err, want) {
			t.Errorf("ParsePRF(%q) = %v, want %v", kw, err, want)
		}
	}
	if _, err := NewPRF(99); !errors.Is(err, ErrUnknownSuite) {
		t.Errorf("NewPRF(99) = %v", err)
	}
	if sizes := [...]int{MustPRF(iana.PRFHMACSHA2_256).Size(), MustPRF(iana.PRFHMACSHA2_384).Size(), MustPRF(iana.PRFHMACSHA2_512).Size(), MustPRF(iana.PRFAES128XCBC).Size(), MustPRF(iana.PRFHMACSHA1).Size()}; sizes != [...]int{32, 48, 64, 16, 20} {
		t.Errorf("sizes %v", sizes)
	}
}

func TestEncrAlg(t *testing.T) {
	tests := []struct {
		e      EncrAlg
		keyLen int
		aead   bool
		attr   bool
		name   string
	}{
		{algGCM16(128), 20, true, true, "aes128gcm16"}, // RFC 5282, Section 7.1
		{algGCM16(256), 36, true, true, "aes256gcm16"},
		{algChaCha, 36, true, false, "chacha20poly1305"}, // RFC 7634, Sections 2 and 4
		{algCBC(128), 16, false, true, "aes128"},
		{algCBC(256), 32, false, true, "aes256"},
		{EncrAlg{iana.EncrAESGCM8, 192}, 28, true, true, "aes192gcm8"},
	}
	for _, tc := range tests {
		if tc.e.KeyLen() != tc.keyLen || tc.e.AEAD() != tc.aead || tc.e.HasKeyLengthAttr() != tc.attr || tc.e.String() != tc.name {
			t.Errorf("%v: KeyLen %d AEAD %v attr %v name %q", tc.e, tc.e.KeyLen(), tc.e.AEAD(), tc.e.HasKeyLengthAttr(), tc.e.String())
		}
	}
	if got := fmt.Sprint(EncrAlg{99, 1}); got != "encr99/1" {
		t.Errorf("unknown String %q", got)
	}
	for id, want := range map[iana.IntegID][2]int{iana.IntegHMACSHA2_256: {32, 16}, iana.IntegHMACSHA2_384: {48, 24}, iana.IntegHMACSHA2_512: {64, 32}, iana.IntegHMACSHA1_96: {20, 12}, iana.IntegAESXCBC96: {16, 12}, iana.IntegNone: {0, 0}} {
		if IntegKeyLen(id) != want[0] || IntegICVLen(id) != want[1] {
			t.Errorf("integ %d: key %d icv %d", id, IntegKeyLen(id), IntegICVLen(id))
		}
	}
	if _, err := SuiteFor(algCBC(128), 99); !errors.Is(err, ErrUnknownSuite) {
		t.Errorf("SuiteFor unknown integ: %v", err)
	}
	if s, err := AHSuiteFor(iana.IntegHMACSHA2_256); err != nil || s.Name != "sha256" {
		t.Errorf("AHSuiteFor = %v, %v", s, err)
	}
}
