package keys

// Known answers: testdata/kat/kdf_prf.json (SKEYSEED) and
// kdf_prf_plus.json (prf+), both from NIST CAVP SP 800-135 IKEv2 KDF tests
// (and one RFC 4868-derived prf+ vector), through strongSwan's test_vectors
// plugin. The prf+ vectors continue the SKEYSEED vectors (their key is the
// SKEYSEED, their seed Ni | Nr | SPIi | SPIr), which tests NewSKEYSEED and
// Derive end to end. Everything else is recomputed here independently with
// crypto/hmac, following the RFC text.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/internal/testenv"
	"github.com/goipsec/goipsec/transform"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func loadKAT(t testing.TB, name string, v any) {
	t.Helper()
	path := testenv.TestdataFile(t, "kat/"+name)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type prfVectors struct {
	Vectors []struct {
		Name     string `json:"name"`
		PRFID    int    `json:"prf_id"`
		GIR      string `json:"g_ir_hex"`
		NiNr     string `json:"ni_nr_hex"`
		SKEYSEED string `json:"skeyseed_hex"`
		Key      string `json:"key_hex"`
		Seed     string `json:"seed_hex"`
		Out      string `json:"out_hex"`
		OutLen   int    `json:"out_len"`
		SPIi     string `json:"spi_i_hex"`
		SPIr     string `json:"spi_r_hex"`
	}
}

// hmacPRFPlus is prf+ of RFC 7296, Section 2.13, written out with
// crypto/hmac, independently of PRFPlus.
func hmacPRFPlus(h func() hash.Hash, key, seed []byte, n int) []byte {
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(h, key)
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{i})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n]
}

func hmacSum(h func() hash.Hash, key []byte, data ...[]byte) []byte {
	m := hmac.New(h, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

func TestSKEYSEEDKAT(t *testing.T) {
	var f prfVectors
	loadKAT(t, "kdf_prf.json", &f)
	for _, v := range f.Vectors {
		ninr := unhex(t, v.NiNr)
		// The split of Ni | Nr is not given; for HMAC PRFs it does not
		// matter.
		s, err := NewSKEYSEED(iana.PRFID(v.PRFID), ninr[:len(ninr)/2], ninr[len(ninr)/2:], unhex(t, v.GIR))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s.b, unhex(t, v.SKEYSEED)) {
			t.Errorf("%s: SKEYSEED\n got %x\nwant %s", v.Name, s.b, v.SKEYSEED)
		}
	}
	if len(f.Vectors) != 6 {
		t.Errorf("%d vectors", len(f.Vectors))
	}
}

func TestPRFPlusKAT(t *testing.T) {
	var f prfVectors
	loadKAT(t, "kdf_prf_plus.json", &f)
	for _, v := range f.Vectors {
		prf := transform.MustPRF(iana.PRFID(v.PRFID))
		got, err := PRFPlus(prf, unhex(t, v.Key), unhex(t, v.Seed), v.OutLen)
		if err != nil || !bytes.Equal(got, unhex(t, v.Out)) {
			t.Errorf("%s: prf+\n got %x, %v\nwant %s", v.Name, got, err, v.Out)
		}
	}
	if len(f.Vectors) != 7 {
		t.Errorf("%d vectors", len(f.Vectors))
	}
}

// TestDeriveCAVP chains the CAVP vectors: SKEYSEED from kdf_prf.json, then
// Derive, whose keys in order must be the prf+ output of kdf_prf_plus.json.
func TestDeriveCAVP(t *testing.T) {
	var sk, pp prfVectors
	loadKAT(t, "kdf_prf.json", &sk)
	loadKAT(t, "kdf_prf_plus.json", &pp)
	n := 0
	for _, p := range pp.Vectors {
		if p.SPIi == "" {
			continue
		}
		for _, s := range sk.Vectors {
			if s.SKEYSEED != p.Key {
				continue
			}
			ninr := unhex(t, s.NiNr)
			if !bytes.Equal(unhex(t, p.NiNr), ninr) {
				t.Fatalf("%s / %s: nonces differ", s.Name, p.Name)
			}
			ni, nr := ninr[:len(ninr)/2], ninr[len(ninr)/2:]
			seed, err := NewSKEYSEED(iana.PRFID(s.PRFID), ni, nr, unhex(t, s.GIR))
			if err != nil {
				t.Fatal(err)
			}
			// AES-256-CBC with HMAC-SHA2-512 makes at least 288 bytes.
			suite := Suite{PRF: iana.PRFID(s.PRFID), Encr: transform.EncrAlg{ID: iana.EncrAESCBC, KeyBits: 256}, Integ: iana.IntegHMACSHA2_512}
			k, err := seed.Derive(suite, ni, nr, unhex(t, p.SPIi), unhex(t, p.SPIr))
			if err != nil {
				t.Fatal(err)
			}
			all := bytes.Join([][]byte{k.d, k.SKai(), k.SKar(), k.SKei(), k.SKer(), k.pi, k.pr}, nil)
			if len(all) < p.OutLen || !bytes.Equal(all[:p.OutLen], unhex(t, p.Out)) {
				t.Errorf("%s: keys do not continue the prf+ vector", p.Name)
			}
			n++
		}
	}
	if n != 6 {
		t.Errorf("%d chained vectors, want 6", n)
	}
}

// testSA derives IKE SA keys from fixed inputs.
func testSA(t *testing.T, suite Suite) (*IKESAKeys, []byte) {
	t.Helper()
	ni, nr := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
	gir := bytes.Repeat([]byte{0x33}, 32)
	s, err := NewSKEYSEED(suite.PRF, ni, nr, gir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Derive(suite, ni, nr, []byte("SPIi5678"), []byte("SPIr5678"))
	if err != nil {
		t.Fatal(err)
	}
	return k, s.b
}

// TestDeriveLayout checks the lengths and order of the seven keys for AEAD
// and cipher suites (RFC 7296, Section 2.14; RFC 5282, Section 7.1; RFC
// 7634, Section 4) against prf+ written out with crypto/hmac.
func TestDeriveLayout(t *testing.T) {
	tests := []struct {
		suite          Suite
		h              func() hash.Hash
		d, a, e, total int
	}{
		{Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrAESGCM16, KeyBits: 256}}, sha256.New, 32, 0, 36, 32*3 + 36*2},
		{Suite{PRF: iana.PRFHMACSHA2_512, Encr: transform.EncrAlg{ID: iana.EncrChaCha20Poly1305, KeyBits: 256}}, sha512.New, 64, 0, 36, 64*3 + 36*2},
		{Suite{PRF: iana.PRFHMACSHA2_384, Encr: transform.EncrAlg{ID: iana.EncrAESGCM16, KeyBits: 128}}, sha512.New384, 48, 0, 20, 48*3 + 20*2},
		{Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrAESCBC, KeyBits: 128}, Integ: iana.IntegHMACSHA2_256}, sha256.New, 32, 32, 16, 32*3 + 32*2 + 16*2},
		{Suite{PRF: iana.PRFHMACSHA2_384, Encr: transform.EncrAlg{ID: iana.EncrAESCBC, KeyBits: 256}, Integ: iana.IntegHMACSHA2_384}, sha512.New384, 48, 48, 32, 48*3 + 48*2 + 32*2},
	}
	for _, tc := range tests {
		k, skeyseed := testSA(t, tc.suite)
		seed := bytes.Join([][]byte{bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32), []byte("SPIi5678SPIr5678")}, nil)
		want := hmacPRFPlus(tc.h, skeyseed, seed, tc.total)
		got := bytes.Join([][]byte{k.d, k.SKai(), k.SKar(), k.SKei(), k.SKer(), k.pi, k.pr}, nil)
		if !bytes.Equal(got, want) {
			t.Errorf("%+v: keys are not prf+ in order", tc.suite)
		}
		if len(k.d) != tc.d || len(k.pi) != tc.d || len(k.pr) != tc.d || len(k.SKai()) != tc.a || len(k.SKar()) != tc.a || len(k.SKei()) != tc.e || len(k.SKer()) != tc.e {
			t.Errorf("%+v: lengths d %d a %d e %d", tc.suite, len(k.d), len(k.SKai()), len(k.SKei()))
		}
		if tc.a == 0 && (k.SKai() != nil && len(k.SKai()) != 0) {
			t.Errorf("%+v: SK_a for an AEAD", tc.suite)
		}
	}
}

func TestDeriveErrors(t *testing.T) {
	s, err := NewSKEYSEED(iana.PRFHMACSHA2_256, make([]byte, 16), make([]byte, 16), []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	spi := make([]byte, 8)
	gcm := transform.EncrAlg{ID: iana.EncrAESGCM16, KeyBits: 128}
	cbc := transform.EncrAlg{ID: iana.EncrAESCBC, KeyBits: 128}
	for name, c := range map[string]struct {
		s     SKEYSEED
		suite Suite
		spi   []byte
	}{
		"zero SKEYSEED": {SKEYSEED{}, Suite{PRF: iana.PRFHMACSHA2_256, Encr: gcm}, spi},
		"AEAD + integ":  {s, Suite{PRF: iana.PRFHMACSHA2_256, Encr: gcm, Integ: iana.IntegHMACSHA2_256}, spi},
		"CBC no integ":  {s, Suite{PRF: iana.PRFHMACSHA2_256, Encr: cbc}, spi},
		"unknown PRF":   {s, Suite{PRF: 99, Encr: gcm}, spi},
		"NULL":          {s, Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrNull}, Integ: iana.IntegHMACSHA2_256}, spi},
		"short SPI":     {s, Suite{PRF: iana.PRFHMACSHA2_256, Encr: gcm}, spi[:4]},
		"unknown integ": {s, Suite{PRF: iana.PRFHMACSHA2_256, Encr: cbc, Integ: 99}, spi},
	} {
		if _, err := c.s.Derive(c.suite, nil, nil, c.spi, spi); err == nil || !strings.HasPrefix(err.Error(), "keys: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewSKEYSEED(iana.PRFHMACSHA2_256, nil, nil, nil); err == nil {
		t.Error("empty g^ir accepted")
	}
	if _, err := NewSKEYSEED(iana.PRFAES128XCBC, make([]byte, 4), make([]byte, 16), []byte{1}); err == nil {
		t.Error("short nonce accepted for AES-XCBC")
	}
}

// TestSKEYSEEDXCBC: with AES-XCBC-PRF-128 only the first 64 bits of each
// nonce form the key (RFC 7296, Section 2.14), and prf+ still takes all of
// them.
func TestSKEYSEEDXCBC(t *testing.T) {
	prf := transform.MustPRF(iana.PRFAES128XCBC)
	ni, nr, gir := bytes.Repeat([]byte{1, 2, 3}, 11), bytes.Repeat([]byte{4, 5}, 16), bytes.Repeat([]byte{9}, 256)
	s, err := NewSKEYSEED(iana.PRFAES128XCBC, ni, nr, gir)
	if err != nil {
		t.Fatal(err)
	}
	want := prf.Sum(append(bytes.Clone(ni[:8]), nr[:8]...), gir)
	if !bytes.Equal(s.b, want) {
		t.Errorf("SKEYSEED %x, want %x", s.b, want)
	}
	suite := Suite{PRF: iana.PRFAES128XCBC, Encr: transform.EncrAlg{ID: iana.EncrAESCBC, KeyBits: 128}, Integ: iana.IntegAESXCBC96}
	k, err := s.Derive(suite, ni, nr, make([]byte, 8), make([]byte, 8))
	if err != nil {
		t.Fatal(err)
	}
	km, _ := PRFPlus(prf, s.b, bytes.Join([][]byte{ni, nr, make([]byte, 16)}, nil), 16*3+16*2+16*2)
	if !bytes.Equal(k.d, km[:16]) || !bytes.Equal(k.pr, km[len(km)-16:]) {
		t.Error("XCBC keys are not prf+ of all of Ni | Nr")
	}
}

func TestPRFPlusLimit(t *testing.T) {
	prf := transform.MustPRF(iana.PRFHMACSHA2_256)
	if b, err := PRFPlus(prf, []byte("k"), []byte("s"), 255*32); err != nil || len(b) != 255*32 {
		t.Errorf("255 iterations: %d bytes, %v", len(b), err)
	}
	if _, err := PRFPlus(prf, []byte("k"), []byte("s"), 255*32+1); err == nil {
		t.Error("256 iterations accepted")
	}
	if _, err := PRFPlus(prf, []byte("k"), []byte("s"), -1); err == nil {
		t.Error("negative length accepted")
	}
	if _, err := PRFPlus(transform.PRF{}, nil, nil, 1); err == nil {
		t.Error("zero PRF accepted")
	}
	if b, err := PRFPlus(prf, []byte("k"), []byte("s"), 0); err != nil || len(b) != 0 {
		t.Errorf("0 bytes: %x, %v", b, err)
	}
	// A prefix of a longer output.
	a, _ := PRFPlus(prf, []byte("k"), []byte("s"), 40)
	b, _ := PRFPlus(prf, []byte("k"), []byte("s"), 100)
	if !bytes.Equal(a, b[:40]) || !bytes.Equal(b, hmacPRFPlus(sha256.New, []byte("k"), []byte("s"), 100)) {
		t.Error("prf+ output differs from the reference")
	}
}

// TestChildKeys splits KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr) into the two
// directions (RFC 7296, Section 2.17) for suites of known lengths.
func TestChildKeys(t *testing.T) {
	k, _ := testSA(t, Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrAESGCM16, KeyBits: 256}})
	ni, nr := []byte("child nonce Ni.................."), []byte("child nonce Nr..................")
	gir := bytes.Repeat([]byte{0x44}, 32)
	mlkem := bytes.Repeat([]byte{0x55}, 32)
	for _, tc := range []struct {
		suite   string
		ah      bool
		keyLen  int
		secrets [][]byte
	}{
		{"aes256gcm16", false, 36, nil},                       // RFC 4106, Section 8.1
		{"aes128gcm16", false, 20, [][]byte{gir}},             // with PFS
		{"chacha20poly1305", false, 36, [][]byte{gir, mlkem}}, // RFC 9370, Section 2.2.4
		{"aes128-sha256", false, 16 + 32, nil},                // cipher key, then integrity key
		{"aes256-sha512", false, 32 + 64, [][]byte{gir}},
		{"aes128ctr-sha384", false, 20 + 48, nil}, // RFC 3686, Section 5.1
		{"sha256", true, 32, nil},                 // AH
	} {
		var s transform.Suite
		var err error
		if tc.ah {
			s, err = transform.ParseAH(tc.suite)
		} else {
			s, err = transform.ParseESP(tc.suite)
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := k.Child(s, ni, nr, tc.secrets...)
		if err != nil {
			t.Fatal(err)
		}
		// RFC 9370, Section 2.2.4: SK(0) | Ni | Nr | SK(1) | ... | SK(n).
		var parts [][]byte
		if len(tc.secrets) > 0 {
			parts = append(parts, tc.secrets[0])
		}
		parts = append(parts, ni, nr)
		if len(tc.secrets) > 1 {
			parts = append(parts, tc.secrets[1:]...)
		}
		seed := bytes.Join(parts, nil)
		want := hmacPRFPlus(sha256.New, k.d, seed, 2*tc.keyLen)
		if !bytes.Equal(c.InitiatorToResponder(), want[:tc.keyLen]) || !bytes.Equal(c.ResponderToInitiator(), want[tc.keyLen:]) {
			t.Errorf("%s: KEYMAT split wrong", tc.suite)
		}
		if !bytes.Equal(c.Outbound(true), c.InitiatorToResponder()) || !bytes.Equal(c.Inbound(false), c.InitiatorToResponder()) ||
			!bytes.Equal(c.Outbound(false), c.ResponderToInitiator()) || !bytes.Equal(c.Inbound(true), c.ResponderToInitiator()) {
			t.Errorf("%s: Outbound/Inbound", tc.suite)
		}
		if c.Suite().Name != s.Name {
			t.Errorf("Suite %q", c.Suite().Name)
		}
		// The halves key the data plane directly.
		if tc.ah {
			if _, err := s.NewAH(c.Inbound(true)); err != nil {
				t.Errorf("%s: NewAH: %v", tc.suite, err)
			}
		} else if _, err := s.NewESP(c.Outbound(true)); err != nil {
			t.Errorf("%s: NewESP: %v", tc.suite, err)
		}
	}
	if _, err := k.Child(transform.Suite{}, ni, nr); err == nil {
		t.Error("zero suite accepted")
	}
	s, _ := transform.ParseESP("aes128gcm16")
	if _, err := k.Child(s, ni, nr, nil); err == nil {
		t.Error("empty secret accepted")
	}
}

// TestRekeyAndAddKE checks SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
// with the old PRF (RFC 7296, Section 2.18) and the RFC 9370 update after
// an additional key exchange.
func TestRekeyAndAddKE(t *testing.T) {
	old, _ := testSA(t, Suite{PRF: iana.PRFHMACSHA2_384, Encr: transform.EncrAlg{ID: iana.EncrAESGCM16, KeyBits: 256}})
	ni, nr, gir, pq := []byte("new Ni.........."), []byte("new Nr.........."), []byte("new g^ir"), []byte("ML-KEM secret")
	s, err := old.Rekey(ni, nr, gir, pq)
	if err != nil {
		t.Fatal(err)
	}
	if want := hmacSum(sha512.New384, old.d, gir, ni, nr, pq); !bytes.Equal(s.b, want) {
		t.Error("rekey SKEYSEED is not prf_old(SK_d, SK(0) | Ni | Nr | SK(1)) (RFC 9370, Section 2.2.4)")
	}
	// The new SA may use another PRF.
	newSuite := Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrAESCBC, KeyBits: 128}, Integ: iana.IntegHMACSHA2_256}
	nk, err := s.Derive(newSuite, ni, nr, []byte("newSPIi."), []byte("newSPIr."))
	if err != nil {
		t.Fatal(err)
	}
	want := hmacPRFPlus(sha256.New, s.b, []byte("new Ni..........new Nr..........newSPIi.newSPIr."), 32)
	if !bytes.Equal(nk.d, want) {
		t.Error("new SK_d is not prf+ with the new PRF")
	}
	if _, err := old.Rekey(ni, nr); err == nil {
		t.Error("rekey without a key exchange accepted")
	}

	// RFC 9370, Section 2.2.2.
	k, _ := testSA(t, Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrAESGCM16, KeyBits: 128}})
	k2, err := k.AddKE(pq)
	if err != nil {
		t.Fatal(err)
	}
	ni0, nr0 := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
	seed1 := hmacSum(sha256.New, k.d, pq, ni0, nr0)
	km := hmacPRFPlus(sha256.New, seed1, bytes.Join([][]byte{ni0, nr0, []byte("SPIi5678SPIr5678")}, nil), 3*32+2*20)
	if got := bytes.Join([][]byte{k2.d, k2.SKei(), k2.SKer(), k2.pi, k2.pr}, nil); !bytes.Equal(got, km) {
		t.Error("AddKE keys differ from RFC 9370's formula")
	}
	if k2.Suite() != k.Suite() {
		t.Error("AddKE changed the suite")
	}
	if _, err := k.AddKE(nil); err == nil {
		t.Error("empty secret accepted")
	}
}

// TestAUTH computes MACedID, SignedOctets and the shared-key AUTH of RFC
// 7296, Section 2.15 with crypto/hmac.
func TestAUTH(t *testing.T) {
	k, _ := testSA(t, Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrAESGCM16, KeyBits: 256}})
	idBody := append([]byte{2, 0, 0, 0}, "gw-a.example"...) // ID_FQDN
	macI, macR := k.MACedID(true, idBody), k.MACedID(false, idBody)
	if !bytes.Equal(macI, hmacSum(sha256.New, k.pi, idBody)) || !bytes.Equal(macR, hmacSum(sha256.New, k.pr, idBody)) {
		t.Error("MACedID is not prf(SK_p, RestOfIDPayload)")
	}
	if !bytes.Equal(k.IntAuth(true, []byte("a"), []byte("p")), hmacSum(sha256.New, k.pi, []byte("ap"))) {
		t.Error("IntAuth")
	}
	msg1, nr := []byte("IKE_SA_INIT request bytes"), []byte("Nr data")
	octets := SignedOctets(msg1, nr, macI)
	if want := bytes.Join([][]byte{msg1, nr, macI}, nil); !bytes.Equal(octets, want) {
		t.Error("SignedOctets")
	}
	if got := SignedOctets(msg1, nr, macI, []byte("IntAuth_i"), []byte("IntAuth_r"), []byte{0, 0, 0, 2}); !bytes.Equal(got, append(bytes.Clone(octets), "IntAuth_iIntAuth_r\x00\x00\x00\x02"...)) {
		t.Error("SignedOctets with IntAuth")
	}
	secret := []byte("a shared secret")
	padded := hmacSum(sha256.New, secret, []byte("Key Pad for IKEv2"))
	want := hmacSum(sha256.New, padded, octets)
	if got := PSKAuth(transform.MustPRF(iana.PRFHMACSHA2_256), secret, octets); !bytes.Equal(got, want) {
		t.Errorf("PSKAuth %x, want %x", got, want)
	}
}

// TestRedacted: no key prints, whatever the verb or logger.
func TestRedacted(t *testing.T) {
	k, skeyseed := testSA(t, Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrAESCBC, KeyBits: 128}, Integ: iana.IntegHMACSHA2_256})
	s, _ := transform.ParseESP("aes128gcm16")
	c, err := k.Child(s, []byte("ni"), []byte("nr"))
	if err != nil {
		t.Fatal(err)
	}
	ss := SKEYSEED{b: skeyseed}
	secrets := [][]byte{skeyseed, k.d, k.SKai(), k.SKei(), k.pi, c.InitiatorToResponder()}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	for _, v := range []any{ss, &ss, k, *k, c, *c} {
		log.Info("keys", "v", v)
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			out := fmt.Sprintf(verb, v)
			for _, sec := range secrets {
				if strings.Contains(out, fmt.Sprintf("%x", sec[:8])) || strings.Contains(out, fmt.Sprint(sec[:4])[1:8]) {
					t.Errorf("%T with %s prints key material: %s", v, verb, out)
				}
			}
			if !strings.Contains(out, "redacted") {
				t.Errorf("%T with %s: %s", v, verb, out)
			}
		}
	}
	for _, sec := range secrets {
		if strings.Contains(logBuf.String(), fmt.Sprintf("%x", sec[:8])) {
			t.Errorf("slog prints key material: %s", logBuf.String())
		}
	}
	k.Destroy()
	c.Destroy()
	if !bytes.Equal(k.d, make([]byte, len(k.d))) || !bytes.Equal(c.InitiatorToResponder(), make([]byte, 20)) {
		t.Error("Destroy left key material")
	}
}

// TestDropAuth: an established IKE SA keeps SK_d, SK_a and SK_e unchanged
// in a buffer of their own, and SK_pi, SK_pr and the nonces are zeroed and
// gone (issue 9: what an idle IKE SA keeps).
func TestDropAuth(t *testing.T) {
	suite := Suite{PRF: iana.PRFHMACSHA2_256, Encr: transform.EncrAlg{ID: iana.EncrAESCBC, KeyBits: 128}, Integ: iana.IntegHMACSHA2_256}
	k, _ := testSA(t, suite)
	want := bytes.Join([][]byte{k.d, k.SKai(), k.SKar(), k.SKei(), k.SKer()}, nil)
	oldPi, oldSeed := k.pi, k.seed
	id := []byte{2, 0, 0, 0, 'x'}
	if k.MACedID(true, id) == nil || k.IntAuth(false, id) == nil {
		t.Fatal("no MACedID or IntAuth before DropAuth")
	}
	k.DropAuth()
	if got := bytes.Join([][]byte{k.d, k.SKai(), k.SKar(), k.SKei(), k.SKer()}, nil); !bytes.Equal(got, want) {
		t.Fatal("DropAuth changed SK_d, SK_a or SK_e")
	}
	if cap(k.d)+cap(k.SKai())+cap(k.SKar())+cap(k.SKei())+cap(k.SKer()) != len(want) {
		t.Error("the kept keys are not cut to their lengths")
	}
	if !bytes.Equal(oldPi, make([]byte, len(oldPi))) || !bytes.Equal(oldSeed, make([]byte, len(oldSeed))) {
		t.Error("SK_pi or the nonces not zeroed")
	}
	if k.pi != nil || k.pr != nil || k.seed != nil {
		t.Error("SK_p or the nonces kept")
	}
	if k.MACedID(true, id) != nil || k.IntAuth(false, id) != nil {
		t.Error("MACedID or IntAuth after DropAuth")
	}
	if _, err := k.AddKE([]byte{1}); err == nil || !strings.HasPrefix(err.Error(), "keys: ") {
		t.Errorf("AddKE after DropAuth: %v", err)
	}
	esp, _ := transform.ParseESP("aes128gcm16")
	if _, err := k.Child(esp, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)); err != nil {
		t.Errorf("Child after DropAuth: %v", err)
	}
	k.DropAuth() // twice is harmless
}
