package transform

// Proposal parsing against the strongSwan syntax.

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/iana"
)

func algCBC(bits int) EncrAlg   { return EncrAlg{iana.EncrAESCBC, bits} }
func algGCM16(bits int) EncrAlg { return EncrAlg{iana.EncrAESGCM16, bits} }

var algChaCha = EncrAlg{iana.EncrChaCha20Poly1305, 256}

func TestParseIKEProposal(t *testing.T) {
	tests := []struct {
		in   string
		want IKEProposal
		str  string // canonical String(), "" = in
	}{
		{"aes256gcm16-prfsha256-x25519", IKEProposal{Encr: []EncrAlg{algGCM16(256)}, PRF: []iana.PRFID{iana.PRFHMACSHA2_256}, KE: []iana.KEID{iana.KECurve25519}}, ""},
		{"aes128gcm16-prfsha384-ecp384", IKEProposal{Encr: []EncrAlg{algGCM16(128)}, PRF: []iana.PRFID{iana.PRFHMACSHA2_384}, KE: []iana.KEID{iana.KEECP384}}, ""},
		{"chacha20poly1305-prfsha512-curve25519", IKEProposal{Encr: []EncrAlg{algChaCha}, PRF: []iana.PRFID{iana.PRFHMACSHA2_512}, KE: []iana.KEID{iana.KECurve25519}}, "chacha20poly1305-prfsha512-x25519"},
		{"aes256-sha256-modp2048", IKEProposal{Encr: []EncrAlg{algCBC(256)}, Integ: []iana.IntegID{iana.IntegHMACSHA2_256}, PRF: []iana.PRFID{iana.PRFHMACSHA2_256}, KE: []iana.KEID{iana.KEMODP2048}}, "aes256-sha256-prfsha256-modp2048"},
		{"aes128-aes256-sha256-sha384-modp2048-ecp256", IKEProposal{
			Encr: []EncrAlg{algCBC(128), algCBC(256)}, Integ: []iana.IntegID{iana.IntegHMACSHA2_256, iana.IntegHMACSHA2_384},
			PRF: []iana.PRFID{iana.PRFHMACSHA2_256, iana.PRFHMACSHA2_384}, KE: []iana.KEID{iana.KEMODP2048, iana.KEECP256}}, "aes128-aes256-sha256-sha384-prfsha256-prfsha384-modp2048-ecp256"},
		{"x25519-ke1_mlkem768-aes256gcm16-prfsha384", IKEProposal{Encr: []EncrAlg{algGCM16(256)}, PRF: []iana.PRFID{iana.PRFHMACSHA2_384}, KE: []iana.KEID{iana.KECurve25519},
			AddKE: [7][]iana.KEID{{iana.KEMLKEM768}}}, "aes256gcm16-prfsha384-x25519-ke1_mlkem768"},
		{"aes256gcm16-prfsha256-ecp256-ke1_mlkem768-ke1_mlkem1024-ke2_mlkem1024-ke2_none", IKEProposal{Encr: []EncrAlg{algGCM16(256)}, PRF: []iana.PRFID{iana.PRFHMACSHA2_256}, KE: []iana.KEID{iana.KEECP256},
			AddKE: [7][]iana.KEID{{iana.KEMLKEM768, iana.KEMLKEM1024}, {iana.KEMLKEM1024, iana.KENone}}}, ""},
		// An explicit PRF overrides the one derived from the integrity algorithm.
		{"aes128-sha1-prfsha256-ecp256", IKEProposal{Encr: []EncrAlg{algCBC(128)}, Integ: []iana.IntegID{iana.IntegHMACSHA1_96}, PRF: []iana.PRFID{iana.PRFHMACSHA2_256}, KE: []iana.KEID{iana.KEECP256}}, ""},
		// SHA-1 as PRF only when configured.
		{"aes128-sha1-modp2048", IKEProposal{Encr: []EncrAlg{algCBC(128)}, Integ: []iana.IntegID{iana.IntegHMACSHA1_96}, PRF: []iana.PRFID{iana.PRFHMACSHA1}, KE: []iana.KEID{iana.KEMODP2048}}, "aes128-sha1-prfsha1-modp2048"},
		{"AES128-AESXCBC-ECP521", IKEProposal{Encr: []EncrAlg{algCBC(128)}, Integ: []iana.IntegID{iana.IntegAESXCBC96}, PRF: []iana.PRFID{iana.PRFAES128XCBC}, KE: []iana.KEID{iana.KEECP521}}, "aes128-aesxcbc-prfaesxcbc-ecp521"},
	}
	for _, tc := range tests {
		got, err := ParseIKEProposal(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
		str := tc.str
		if str == "" {
			str = tc.in
		}
		if got.String() != str {
			t.Errorf("%s: String %q, want %q", tc.in, got.String(), str)
		}
		// String round-trips.
		again, err := ParseIKEProposal(got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s: reparse of %q = %+v, %v", tc.in, got.String(), again, err)
		}
	}
}

func TestParseIKEProposalErrors(t *testing.T) {
	tests := []struct {
		in   string
		is   error  // nil: any error
		text string // in the message
	}{
		{"aes128-sha256-modp1024", ErrWeak, "MODP-1024"},
		{"aes128-sha256-modp768", ErrWeak, "MUST NOT"},
		{"aes128-sha256-modp1536", ErrWeak, "group 5"},
		{"3des-sha256-modp2048", ErrWeak, "3DES"},
		{"aes128-md5-modp2048", ErrWeak, "MD5"},
		{"aes128-sha256-prfmd5-modp2048", ErrWeak, "MD5"},
		{"aes128-sha256-ke1_modp1024-ecp256", ErrWeak, "MODP-1024"},
		{"aes128ccm16-prfsha256-ecp256", ErrNotImplemented, "AES-CCM"},
		{"aes128gmac-prfsha256-ecp256", ErrNotImplemented, "GMAC"},
		{"aes128ctr-sha256-ecp256", ErrNotImplemented, "AES-CTR"},
		{"aes128-sha256-mlkem512", ErrNotImplemented, "ML-KEM-512"},
		{"aes128-sha256-x448", ErrNotImplemented, "Curve448"},
		{"aes128-sha256-prfaescmac-ecp256", ErrNotImplemented, "CMAC"},
		{"aes128-sha256-foo", ErrUnknownSuite, `"foo"`},
		{"aes256gcm16-x25519", nil, "no PRF"},
		{"aes256-x25519", nil, "needs an integrity algorithm"},
		{"aes256gcm16-sha256-x25519", nil, "takes no integrity"},
		{"aes256gcm16-aes256-sha256-x25519", nil, "mixes"},
		{"sha256-prfsha256-x25519", nil, "no encryption"},
		{"aes256-sha256", nil, "no key exchange"},
		{"aes256-sha256-none", nil, "cannot be none"},
		{"null-sha256-x25519", nil, "ESP only"},
		{"aes256-sha256-x25519-esn", nil, "ESP and AH"},
		{"", nil, "empty"},
		{"aes256--sha256", nil, "empty keyword"},
		{"aes256-sha256-ke8_mlkem768", ErrUnknownSuite, "ke8_"},
		{"aes256-sha256-x25519-ke1_foo", ErrUnknownSuite, "foo"},
	}
	for _, tc := range tests {
		_, err := ParseIKEProposal(tc.in)
		switch {
		case err == nil:
			t.Errorf("%q: no error", tc.in)
		case tc.is != nil && !errors.Is(err, tc.is):
			t.Errorf("%q: %v, want %v", tc.in, err, tc.is)
		case !strings.Contains(err.Error(), tc.text):
			t.Errorf("%q: %v, want it to mention %s", tc.in, err, tc.text)
		case !strings.HasPrefix(err.Error(), "transform: "):
			t.Errorf("%q: %v does not start with the package name", tc.in, err)
		}
	}
}

func TestParseESPProposal(t *testing.T) {
	tests := []struct {
		in     string
		want   ESPProposal
		suites []string
	}{
		{"aes256gcm16", ESPProposal{Encr: []EncrAlg{algGCM16(256)}, ESN: []bool{false}}, []string{"aes256gcm16"}},
		{"aes256gcm16-x25519", ESPProposal{Encr: []EncrAlg{algGCM16(256)}, KE: []iana.KEID{iana.KECurve25519}, ESN: []bool{false}}, []string{"aes256gcm16"}},
		{"aes128-sha256-esn", ESPProposal{Encr: []EncrAlg{algCBC(128)}, Integ: []iana.IntegID{iana.IntegHMACSHA2_256}, ESN: []bool{true}}, []string{"aes128-sha256"}},
		{"aes128-sha256-noesn", ESPProposal{Encr: []EncrAlg{algCBC(128)}, Integ: []iana.IntegID{iana.IntegHMACSHA2_256}, ESN: []bool{false}}, []string{"aes128-sha256"}},
		{"aes128gcm16-esn-noesn", ESPProposal{Encr: []EncrAlg{algGCM16(128)}, ESN: []bool{true, false}}, []string{"aes128gcm16"}},
		{"aes128-aes256-sha256-sha384", ESPProposal{Encr: []EncrAlg{algCBC(128), algCBC(256)}, Integ: []iana.IntegID{iana.IntegHMACSHA2_256, iana.IntegHMACSHA2_384}, ESN: []bool{false}},
			[]string{"aes128-sha256", "aes128-sha384", "aes256-sha256", "aes256-sha384"}},
		{"aes256gcm16-x25519-ke1_mlkem768", ESPProposal{Encr: []EncrAlg{algGCM16(256)}, KE: []iana.KEID{iana.KECurve25519}, AddKE: [7][]iana.KEID{{iana.KEMLKEM768}}, ESN: []bool{false}}, []string{"aes256gcm16"}},
		{"aes128gcm128", ESPProposal{Encr: []EncrAlg{algGCM16(128)}, ESN: []bool{false}}, []string{"aes128gcm16"}}, // ParseESP's alias
		{"null-sha256", ESPProposal{Encr: []EncrAlg{{iana.EncrNull, 0}}, Integ: []iana.IntegID{iana.IntegHMACSHA2_256}, ESN: []bool{false}}, []string{"null-sha256"}},
		{"aes128gmac-chacha20poly1305", ESPProposal{Encr: []EncrAlg{{iana.EncrNullAuthAESGMAC, 128}, algChaCha}, ESN: []bool{false}}, []string{"aes128gmac", "chacha20poly1305"}},
		{"aes128ctr-aesxcbc-modp3072", ESPProposal{Encr: []EncrAlg{{iana.EncrAESCTR, 128}}, Integ: []iana.IntegID{iana.IntegAESXCBC96}, KE: []iana.KEID{iana.KEMODP3072}, ESN: []bool{false}}, []string{"aes128ctr-aesxcbc"}},
	}
	for _, tc := range tests {
		got, err := ParseESPProposal(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
		var names []string
		for _, s := range got.Suites() {
			names = append(names, s.Name)
			if _, err := ParseESP(s.Name); err != nil {
				t.Errorf("%s: suite %q does not parse: %v", tc.in, s.Name, err)
			}
		}
		if !reflect.DeepEqual(names, tc.suites) {
			t.Errorf("%s: suites %q, want %q", tc.in, names, tc.suites)
		}
		again, err := ParseESPProposal(got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s: reparse of %q = %+v, %v", tc.in, got.String(), again, err)
		}
	}

	for in, text := range map[string]string{
		"aes128":                     "without integrity",
		"aes128gcm16-sha256":         "takes no integrity",
		"aes128gcm16-aes128-sha256":  "mixes",
		"sha256":                     "no encryption",
		"aes128gcm16-prfsha256":      "PRF",
		"aes128gcm16-modp1024":       "MODP-1024",
		"aes128gcm16-foo":            `"foo"`,
		"aes128ccm16":                "AES-CCM",
		"3des-sha1":                  "3DES",
		"aes128-md5":                 "MD5",
		"aes128gcm16-ke1_mlkem512":   "ML-KEM-512",
		"aes128gcm16-x25519-ke9_foo": "ke9_foo",
	} {
		if _, err := ParseESPProposal(in); err == nil || !strings.Contains(err.Error(), text) {
			t.Errorf("ParseESPProposal(%q) = %v, want an error mentioning %s", in, err, text)
		}
	}
}

func TestParseAHProposal(t *testing.T) {
	p, err := ParseAHProposal("sha256-sha512-ecp256-esn")
	if err != nil {
		t.Fatal(err)
	}
	want := ESPProposal{Integ: []iana.IntegID{iana.IntegHMACSHA2_256, iana.IntegHMACSHA2_512}, KE: []iana.KEID{iana.KEECP256}, ESN: []bool{true}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v, want %+v", p, want)
	}
	if s := p.Suites(); len(s) != 2 || s[0].Name != "sha256" || s[1].Kind != KindIntegrity {
		t.Errorf("suites %v", s)
	}
	for _, in := range []string{"aes128-sha256", "esn", "aes128gcm16"} {
		if _, err := ParseAHProposal(in); err == nil {
			t.Errorf("ParseAHProposal(%q) accepted", in)
		}
	}
}

func TestDefaultProposals(t *testing.T) {
	ike := DefaultIKEProposals()
	if len(ike) != 2 {
		t.Fatalf("%d IKE proposals", len(ike))
	}
	for _, p := range ike {
		// RFC 8247: no SHA-1 PRF, no weak groups.
		for _, id := range p.PRF {
			if id == iana.PRFHMACSHA1 {
				t.Errorf("%s offers PRF_HMAC_SHA1", p)
			}
		}
		for _, id := range p.KE {
			if g := modpGroupFor(id); id < iana.KEMODP2048 || (g != nil && g.size < 384) {
				t.Errorf("%s offers key exchange %s", p, KEName(id))
			}
		}
		if len(p.KE) == 0 || p.KE[0] != iana.KECurve25519 {
			t.Errorf("%s: first key exchange is not x25519", p)
		}
	}
	if got := ike[0].String(); got != defaultIKEAEAD {
		t.Errorf("default IKE proposal %q", got)
	}
	if got := ike[1].String(); got != "aes256-aes128-sha256-sha384-sha512-prfsha256-prfsha384-prfsha512-x25519-ecp256-modp3072" {
		t.Errorf("default IKE proposal %q", got)
	}
	esp := DefaultESPProposals()
	var names []string
	for _, p := range esp {
		for _, s := range p.Suites() {
			names = append(names, s.Name)
		}
		if len(p.KE) != 0 || !reflect.DeepEqual(p.ESN, []bool{false}) {
			t.Errorf("%s: KE %v ESN %v", p, p.KE, p.ESN)
		}
	}
	if want := []string{"aes256gcm16", "aes128gcm16", "chacha20poly1305", "aes256-sha256", "aes128-sha256"}; !reflect.DeepEqual(names, want) {
		t.Errorf("default ESP suites %q, want %q", names, want)
	}
	// Fresh slices on every call.
	ike[0].Encr[0] = EncrAlg{}
	if DefaultIKEProposals()[0].Encr[0] == (EncrAlg{}) {
		t.Error("DefaultIKEProposals shares its slices")
	}
}

func FuzzParseProposal(f *testing.F) {
	for _, s := range []string{"aes256gcm16-prfsha256-x25519", "aes128-sha256-esn", "aes256-sha256-modp2048-ke1_mlkem768", "aes128gcm16-esn-noesn-ke7_none", "null-sha256", "sha256"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParseIKEProposal(s); err == nil {
			if again, err := ParseIKEProposal(p.String()); err != nil || !reflect.DeepEqual(again, p) {
				t.Fatalf("IKE %q: reparse of %q: %+v, %v", s, p.String(), again, err)
			}
		}
		if p, err := ParseESPProposal(s); err == nil {
			if again, err := ParseESPProposal(p.String()); err != nil || !reflect.DeepEqual(again, p) {
				t.Fatalf("ESP %q: reparse of %q: %+v, %v", s, p.String(), again, err)
			}
			if len(p.Suites()) == 0 {
				t.Fatalf("ESP %q: no suites", s)
			}
		}
		_, _ = ParseAHProposal(s)
	})
}

// TestParseESPProposalAddKENeedsPFS: a Child proposal's additional key
// exchanges follow a first one (RFC 9370, Section 2.2.4), so keN_ without a
// PFS method is refused; the rule was config's alone before.
func TestParseESPProposalAddKENeedsPFS(t *testing.T) {
	for _, s := range []string{"aes256gcm16-ke1_mlkem768", "aes128-sha256-ke2_ecp256-esn"} {
		if _, err := ParseESPProposal(s); err == nil || !strings.Contains(err.Error(), "need a key exchange method for PFS") {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseAHProposal("sha256-ke1_mlkem768"); err == nil {
		t.Error("AH sha256-ke1_mlkem768 accepted")
	}
	if _, err := ParseESPProposal("aes256gcm16-x25519-ke1_mlkem768"); err != nil {
		t.Error(err)
	}
	if _, err := ParseESPProposal("aes256gcm16-x25519-ke1_none"); err != nil {
		t.Error(err)
	}
}
