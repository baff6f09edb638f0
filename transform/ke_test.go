package transform

// Key exchange known answers: testdata/kat/modp.json (generated
// by strongSwan, re-checked with Python), ecp.json (RFC 5114 Appendix A),
// curve25519.json (RFC 7748 Section 6.1, RFC 8031) and ml_kem.json (liboqs
// NIST KATs, reproduced here through the NIST AES-256 CTR_DRBG); Wycheproof
// x25519, ecdh_secp*_ecpoint and mlkem_* vectors; and the invalid peer
// values of RFC 6989.

import (
	"bytes"
	"crypto/aes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/iana"
)

type dhKAT struct {
	Name    string `json:"name"`
	GroupID int    `json:"group_id"`
	PrivI   string `json:"priv_i_hex"`
	PrivR   string `json:"priv_r_hex"`
	PubI    string `json:"pub_i_hex"`
	PubR    string `json:"pub_r_hex"`
	Shared  string `json:"shared_hex"`
}

// newDHFromPrivate makes a Diffie-Hellman key pair from a vector's private key.
func newDHFromPrivate(t *testing.T, id iana.KEID, priv []byte) KEInitiator {
	t.Helper()
	if g := modpGroupFor(id); g != nil {
		k, err := newMODP(g, priv)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := newEC(id, priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDHKAT(t *testing.T) {
	ran := map[iana.KEID]int{}
	for _, file := range []string{"modp.json", "ecp.json", "curve25519.json"} {
		var f struct{ Vectors []dhKAT }
		loadJSON(t, kat(t, file), &f)
		for _, v := range f.Vectors {
			id := iana.KEID(v.GroupID)
			if keSupported(id) != nil {
				continue // groups this package does not implement
			}
			ki := newDHFromPrivate(t, id, unhex(t, v.PrivI))
			kr := newDHFromPrivate(t, id, unhex(t, v.PrivR))
			pubI, pubR, shared := unhex(t, v.PubI), unhex(t, v.PubR), unhex(t, v.Shared)
			if !bytes.Equal(ki.Public(), pubI) || !bytes.Equal(kr.Public(), pubR) {
				t.Errorf("%s: public values\n got %x\n     %x", v.Name, ki.Public(), kr.Public())
			}
			if len(pubI) != KEDataLen(id, true) || len(pubR) != KEDataLen(id, false) {
				t.Errorf("%s: KEDataLen %d, vector %d", v.Name, KEDataLen(id, true), len(pubI))
			}
			for _, c := range []struct {
				k    KEInitiator
				peer []byte
			}{{ki, pubR}, {kr, pubI}} {
				s, err := c.k.Finish(c.peer)
				if err != nil || !bytes.Equal(s, shared) {
					t.Errorf("%s: shared\n got %x, %v\nwant %x", v.Name, s, err, shared)
				}
			}
			ran[id]++
		}
	}
	for _, id := range []iana.KEID{iana.KEMODP2048, iana.KEMODP3072, iana.KEMODP4096, iana.KEECP256, iana.KEECP384, iana.KEECP521, iana.KECurve25519} {
		if ran[id] == 0 {
			t.Errorf("no vector for %s", KEName(id))
		}
	}
}

// TestKERoundTrip runs every implemented method between NewKEInitiator and
// KERespond with fresh randomness.
func TestKERoundTrip(t *testing.T) {
	for _, id := range []iana.KEID{iana.KEMODP2048, iana.KEMODP3072, iana.KEMODP4096, iana.KEECP256, iana.KEECP384, iana.KEECP521, iana.KECurve25519, iana.KEMLKEM768, iana.KEMLKEM1024} {
		t.Run(KEName(id), func(t *testing.T) {
			ki, err := NewKEInitiator(id, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ki.ID() != id || len(ki.Public()) != KEDataLen(id, true) {
				t.Fatalf("ID %d, public %d bytes", ki.ID(), len(ki.Public()))
			}
			ours, s1, err := KERespond(id, ki.Public(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(ours) != KEDataLen(id, false) {
				t.Errorf("responder data %d bytes, want %d", len(ours), KEDataLen(id, false))
			}
			s2, err := ki.Finish(ours)
			if err != nil || !bytes.Equal(s1, s2) {
				t.Fatalf("secrets differ: %x, %x, %v", s1, s2, err)
			}
			// The private key never shows through fmt.
			for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
				if got := fmt.Sprintf(verb, ki); !strings.Contains(got, "<redacted>") || strings.Contains(got, "priv") {
					t.Errorf("%s prints %q", verb, got)
				}
			}
		})
	}
}

// TestKEDeterministic checks that the private key comes from the injected
// random source only.
func TestKEDeterministic(t *testing.T) {
	for _, id := range []iana.KEID{iana.KEMODP2048, iana.KEECP256, iana.KEECP521, iana.KECurve25519, iana.KEMLKEM768} {
		seed := bytes.Repeat([]byte{0x5a}, 256)
		a, err := NewKEInitiator(id, bytes.NewReader(seed))
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewKEInitiator(id, bytes.NewReader(seed))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Public(), b.Public()) {
			t.Errorf("%s: same randomness, different keys", KEName(id))
		}
		if _, err := NewKEInitiator(id, bytes.NewReader(nil)); err == nil || !strings.Contains(err.Error(), "randomness") {
			t.Errorf("%s: empty reader: %v", KEName(id), err)
		}
	}
	// Rejection sampling: a P-256 scalar of all ones is above the order,
	// so the next 32 bytes are used.
	r := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32)), bytes.NewReader(bytes.Repeat([]byte{1}, 32)))
	k, err := NewKEInitiator(iana.KEECP256, r)
	if err != nil {
		t.Fatal(err)
	}
	want := newDHFromPrivate(t, iana.KEECP256, bytes.Repeat([]byte{1}, 32))
	if !bytes.Equal(k.Public(), want.Public()) {
		t.Error("rejection sampling did not use the second scalar")
	}
}

func TestMODPInvalidPeer(t *testing.T) {
	for _, id := range []iana.KEID{iana.KEMODP2048, iana.KEMODP3072, iana.KEMODP4096} {
		g := modpGroupFor(id)
		ki, err := NewKEInitiator(id, nil)
		if err != nil {
			t.Fatal(err)
		}
		pad := func(x *big.Int) []byte { return x.FillBytes(make([]byte, g.size)) }
		p := new(big.Int).Set(g.p)
		for name, y := range map[string][]byte{
			"0":     pad(big.NewInt(0)),
			"1":     pad(big.NewInt(1)),
			"p-1":   pad(new(big.Int).Sub(p, big.NewInt(1))),
			"p":     pad(p),
			"2^n-1": bytes.Repeat([]byte{0xff}, g.size),
			"short": ki.Public()[1:],
			"long":  append([]byte{0}, ki.Public()...),
			"empty": nil,
		} {
			if _, err := ki.Finish(y); !errors.Is(err, ErrInvalidKE) {
				t.Errorf("%s: Finish(%s) = %v, want ErrInvalidKE", KEName(id), name, err)
			}
			if _, _, err := KERespond(id, y, nil); !errors.Is(err, ErrInvalidKE) {
				t.Errorf("%s: KERespond(%s) = %v, want ErrInvalidKE", KEName(id), name, err)
			}
		}
		// 2 and p-2 are in range.
		for _, y := range []*big.Int{big.NewInt(2), new(big.Int).Sub(p, big.NewInt(2))} {
			if _, err := ki.Finish(pad(y)); err != nil {
				t.Errorf("%s: Finish(%v...) = %v", KEName(id), y.Text(16)[:4], err)
			}
		}
	}
}

func TestECPInvalidPeer(t *testing.T) {
	for _, id := range []iana.KEID{iana.KEECP256, iana.KEECP384, iana.KEECP521} {
		ki, err := NewKEInitiator(id, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub := ki.Public()
		offCurve := bytes.Clone(pub)
		offCurve[len(offCurve)-1] ^= 1
		for name, y := range map[string][]byte{
			"off curve":    offCurve,
			"zero":         make([]byte, len(pub)),
			"with 04":      append([]byte{4}, pub...),
			"x only":       pub[:len(pub)/2],
			"compressed":   append([]byte{2 + pub[len(pub)-1]&1}, pub[:len(pub)/2]...),
			"empty":        nil,
			"one too long": append(bytes.Clone(pub), 0),
		} {
			if _, err := ki.Finish(y); !errors.Is(err, ErrInvalidKE) {
				t.Errorf("%s: Finish(%s) = %v, want ErrInvalidKE", KEName(id), name, err)
			}
			if _, _, err := KERespond(id, y, nil); !errors.Is(err, ErrInvalidKE) {
				t.Errorf("%s: KERespond(%s) = %v, want ErrInvalidKE", KEName(id), name, err)
			}
		}
	}
}

// TestWycheproofECDH runs the Wycheproof ecpoint vectors in the IKE
// encoding: uncompressed points become x || y; compressed and otherwise
// malformed encodings cannot be expressed in a KE payload and must fail.
func TestWycheproofECDH(t *testing.T) {
	for file, id := range map[string]iana.KEID{
		"ecdh_secp256r1_ecpoint_test.json": iana.KEECP256,
		"ecdh_secp384r1_ecpoint_test.json": iana.KEECP384,
		"ecdh_secp521r1_ecpoint_test.json": iana.KEECP521,
	} {
		var f struct {
			TestGroups []struct {
				Tests []struct {
					TcID    int      `json:"tcId"`
					Comment string   `json:"comment"`
					Public  string   `json:"public"`
					Private string   `json:"private"`
					Shared  string   `json:"shared"`
					Result  string   `json:"result"`
					Flags   []string `json:"flags"`
				} `json:"tests"`
			} `json:"testGroups"`
		}
		wycheproof(t, file, &f)
		c := ecCurves[id]
		valid, invalid := 0, 0
		for _, g := range f.TestGroups {
			for _, tc := range g.Tests {
				priv := unhex(t, tc.Private)
				// Wycheproof scalars are ASN.1 integers: strip or add
				// leading zeros to the fixed length.
				for len(priv) > c.scalarLen && priv[0] == 0 {
					priv = priv[1:]
				}
				if len(priv) < c.scalarLen {
					priv = append(make([]byte, c.scalarLen-len(priv)), priv...)
				}
				k, err := newEC(id, priv)
				if err != nil {
					t.Fatalf("%s tc %d: private key: %v", file, tc.TcID, err)
				}
				pub := unhex(t, tc.Public)
				var data []byte
				if len(pub) == 1+c.pubLen && pub[0] == 4 {
					data = pub[1:]
				} else {
					data = pub // not an IKE encoding; must be refused
				}
				s, err := k.Finish(data)
				switch tc.Result {
				case "valid":
					if err != nil || !bytes.Equal(s, unhex(t, tc.Shared)) {
						t.Errorf("%s tc %d (%s): %x, %v", file, tc.TcID, tc.Comment, s, err)
					}
					valid++
				case "invalid":
					if !errors.Is(err, ErrInvalidKE) {
						t.Errorf("%s tc %d (%s): accepted", file, tc.TcID, tc.Comment)
					}
					invalid++
				case "acceptable":
					// Compressed points: not valid in a KE payload.
					if slices.Contains(tc.Flags, "CompressedPoint") && err == nil {
						t.Errorf("%s tc %d (%s): compressed point accepted", file, tc.TcID, tc.Comment)
					}
				}
			}
		}
		if valid == 0 || invalid == 0 {
			t.Errorf("%s: %d valid, %d invalid vectors", file, valid, invalid)
		}
	}
}

// TestWycheproofX25519 checks every Wycheproof X25519 vector: the secrets
// match, and every public value that yields the all-zero secret (low-order
// points, RFC 8031 Section 2) is refused.
func TestWycheproofX25519(t *testing.T) {
	var f struct {
		TestGroups []struct {
			Tests []struct {
				TcID    int      `json:"tcId"`
				Comment string   `json:"comment"`
				Public  string   `json:"public"`
				Private string   `json:"private"`
				Shared  string   `json:"shared"`
				Result  string   `json:"result"`
				Flags   []string `json:"flags"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	wycheproof(t, "x25519_test.json", &f)
	zero, ok := 0, 0
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			k, err := newEC(iana.KECurve25519, unhex(t, tc.Private))
			if err != nil {
				t.Fatal(err)
			}
			s, err := k.Finish(unhex(t, tc.Public))
			want := unhex(t, tc.Shared)
			if slices.Contains(tc.Flags, "ZeroSharedSecret") || bytes.Equal(want, make([]byte, 32)) {
				if !errors.Is(err, ErrInvalidKE) {
					t.Errorf("tc %d (%s): low-order point accepted: %x, %v", tc.TcID, tc.Comment, s, err)
				}
				zero++
				continue
			}
			if err != nil || !bytes.Equal(s, want) {
				t.Errorf("tc %d (%s, %s): %x, %v, want %x", tc.TcID, tc.Comment, tc.Result, s, err, want)
			}
			ok++
		}
	}
	if zero == 0 || ok == 0 {
		t.Errorf("%d zero-secret, %d other vectors", zero, ok)
	}
	// Wrong lengths.
	k, _ := NewKEInitiator(iana.KECurve25519, nil)
	for _, n := range []int{0, 31, 33} {
		if _, err := k.Finish(make([]byte, n)); !errors.Is(err, ErrInvalidKE) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
}

// ctrDRBG is the NIST SP 800-90A AES-256 CTR_DRBG without derivation
// function or personalization, as the NIST PQC KAT generator uses it; it is
// here only to turn the 48-byte seeds of ml_kem.json into ML-KEM inputs.
type ctrDRBG struct {
	key [32]byte
	v   [16]byte
}

func newCTRDRBG(seed []byte) *ctrDRBG {
	d := &ctrDRBG{}
	d.update(seed)
	return d
}

func (d *ctrDRBG) block(out []byte) {
	for i := 15; i >= 0; i-- {
		d.v[i]++
		if d.v[i] != 0 {
			break
		}
	}
	c, err := aes.NewCipher(d.key[:])
	if err != nil {
		panic(err)
	}
	c.Encrypt(out, d.v[:])
}

func (d *ctrDRBG) update(provided []byte) {
	var tmp [48]byte
	for i := 0; i < 48; i += 16 {
		d.block(tmp[i : i+16])
	}
	for i := range provided {
		tmp[i] ^= provided[i]
	}
	copy(d.key[:], tmp[:32])
	copy(d.v[:], tmp[32:])
}

func (d *ctrDRBG) generate(n int) []byte {
	out := make([]byte, 0, n+16)
	var b [16]byte
	for len(out) < n {
		d.block(b[:])
		out = append(out, b[:]...)
	}
	d.update(nil)
	return out[:n]
}

// TestMLKEMKAT reproduces the liboqs KATs of ml_kem.json: the initiator's
// key from d || z through NewKEInitiator, the responder's ciphertext through
// derandomized encapsulation (crypto/mlkem/mlkemtest, test only, since
// KERespond draws from crypto/rand), and the initiator's Finish.
func TestMLKEMKAT(t *testing.T) {
	var f struct {
		Vectors []struct {
			Name    string `json:"name"`
			GroupID int    `json:"group_id"`
			Seed    string `json:"drbg_seed_hex"`
			EK      string `json:"ek_hex"`
			CT      string `json:"ct_hex"`
			SS      string `json:"shared_secret_hex"`
		}
	}
	loadJSON(t, kat(t, "ml_kem.json"), &f)
	ran := 0
	for _, v := range f.Vectors {
		id := iana.KEID(v.GroupID)
		if id == iana.KEMLKEM512 {
			if _, err := NewKEInitiator(id, nil); !errors.Is(err, ErrNotImplemented) {
				t.Errorf("%s: %v, want ErrNotImplemented", v.Name, err)
			}
			continue
		}
		drbg := newCTRDRBG(unhex(t, v.Seed))
		ki, err := NewKEInitiator(id, bytes.NewReader(drbg.generate(64)))
		if err != nil {
			t.Fatal(err)
		}
		ek, ct, ss := unhex(t, v.EK), unhex(t, v.CT), unhex(t, v.SS)
		if !bytes.Equal(ki.Public(), ek) {
			t.Errorf("%s: encapsulation key differs", v.Name)
		}
		m := drbg.generate(32)
		var gotSS, gotCT []byte
		switch id {
		case iana.KEMLKEM768:
			k, err := mlkem.NewEncapsulationKey768(ek)
			if err != nil {
				t.Fatal(err)
			}
			if gotSS, gotCT, err = mlkemtest.Encapsulate768(k, m); err != nil {
				t.Fatal(err)
			}
		case iana.KEMLKEM1024:
			k, err := mlkem.NewEncapsulationKey1024(ek)
			if err != nil {
				t.Fatal(err)
			}
			if gotSS, gotCT, err = mlkemtest.Encapsulate1024(k, m); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(gotCT, ct) || !bytes.Equal(gotSS, ss) {
			t.Errorf("%s: the test's DRBG does not reproduce the vector", v.Name)
		}
		s, err := ki.Finish(ct)
		if err != nil || !bytes.Equal(s, ss) {
			t.Errorf("%s: Finish = %x, %v; want %x", v.Name, s, err, ss)
		}
		ran++
	}
	if ran != 8 {
		t.Errorf("%d ML-KEM-768/1024 vectors ran, want 8", ran)
	}
}

// TestWycheproofMLKEM: keys from seeds, decapsulation (including wrong
// ciphertext lengths, which must be refused) and encapsulation keys that
// fail the modulus check (which KERespond must refuse).
func TestWycheproofMLKEM(t *testing.T) {
	for _, p := range []struct {
		id   iana.KEID
		name string
	}{{iana.KEMLKEM768, "768"}, {iana.KEMLKEM1024, "1024"}} {
		var f struct {
			TestGroups []struct {
				Tests []struct {
					TcID   int    `json:"tcId"`
					Seed   string `json:"seed"`
					EK     string `json:"ek"`
					C      string `json:"c"`
					K      string `json:"K"`
					Result string `json:"result"`
				} `json:"tests"`
			} `json:"testGroups"`
		}
		wycheproof(t, "mlkem_"+p.name+"_test.json", &f)
		n := 0
		for _, g := range f.TestGroups {
			for _, tc := range g.Tests {
				if len(tc.Seed) != 128 {
					continue
				}
				ki, err := NewKEInitiator(p.id, bytes.NewReader(unhex(t, tc.Seed)))
				if err != nil {
					t.Fatal(err)
				}
				if tc.EK != "" && !bytes.Equal(ki.Public(), unhex(t, tc.EK)) {
					t.Errorf("mlkem%s tc %d: encapsulation key differs", p.name, tc.TcID)
				}
				s, err := ki.Finish(unhex(t, tc.C))
				switch tc.Result {
				case "valid":
					if err != nil || !bytes.Equal(s, unhex(t, tc.K)) {
						t.Errorf("mlkem%s tc %d: %x, %v", p.name, tc.TcID, s, err)
					}
				case "invalid":
					if err == nil {
						t.Errorf("mlkem%s tc %d: invalid vector accepted", p.name, tc.TcID)
					}
				}
				n++
			}
		}
		var e struct {
			TestGroups []struct {
				Tests []struct {
					TcID   int    `json:"tcId"`
					EK     string `json:"ek"`
					Result string `json:"result"`
				} `json:"tests"`
			} `json:"testGroups"`
		}
		wycheproof(t, "mlkem_"+p.name+"_encaps_test.json", &e)
		bad := 0
		for _, g := range e.TestGroups {
			for _, tc := range g.Tests {
				ct, s, err := KERespond(p.id, unhex(t, tc.EK), nil)
				if tc.Result == "invalid" {
					if !errors.Is(err, ErrInvalidKE) {
						t.Errorf("mlkem%s encaps tc %d: invalid key accepted", p.name, tc.TcID)
					}
					bad++
				} else if err != nil || len(ct) != KEDataLen(p.id, false) || len(s) != 32 {
					t.Errorf("mlkem%s encaps tc %d: %v", p.name, tc.TcID, err)
				}
			}
		}
		if n == 0 || bad == 0 {
			t.Errorf("mlkem%s: %d decaps, %d bad encapsulation keys", p.name, n, bad)
		}
	}
}

func TestParseKE(t *testing.T) {
	for kw, id := range map[string]iana.KEID{
		"modp2048": iana.KEMODP2048, "modp3072": iana.KEMODP3072, "modp4096": iana.KEMODP4096,
		"ecp256": iana.KEECP256, "ecp384": iana.KEECP384, "ECP521": iana.KEECP521,
		"x25519": iana.KECurve25519, "curve25519": iana.KECurve25519,
		"mlkem768": iana.KEMLKEM768, "mlkem1024": iana.KEMLKEM1024, "none": iana.KENone,
	} {
		if got, err := ParseKE(kw); err != nil || got != id {
			t.Errorf("ParseKE(%q) = %d, %v; want %d", kw, got, err, id)
		}
	}
	for kw, want := range map[string]error{
		"modp768": ErrWeak, "modp1024": ErrWeak, "modp1536": ErrWeak, "modp1024s160": ErrWeak,
		"mlkem512": ErrNotImplemented, "modp8192": ErrNotImplemented, "ecp256bp": ErrNotImplemented, "curve448": ErrNotImplemented,
		"ecp257": ErrUnknownSuite, "": ErrUnknownSuite,
	} {
		if _, err := ParseKE(kw); !errors.Is(err, want) {
			t.Errorf("ParseKE(%q) = %v, want %v", kw, err, want)
		}
	}
	if _, err := ParseKE("mlkem512"); err == nil || !strings.Contains(err.Error(), "crypto/mlkem") {
		t.Errorf("mlkem512: %v", err)
	}
	for id, want := range map[iana.KEID]error{2: ErrWeak, iana.KEMLKEM512: ErrNotImplemented, 99: ErrUnknownSuite} {
		if _, err := NewKEInitiator(id, nil); !errors.Is(err, want) {
			t.Errorf("NewKEInitiator(%d) = %v, want %v", id, err, want)
		}
		if _, _, err := KERespond(id, nil, nil); !errors.Is(err, want) {
			t.Errorf("KERespond(%d) = %v, want %v", id, err, want)
		}
	}
	if _, err := NewKEInitiator(iana.KENone, nil); err == nil {
		t.Error("NewKEInitiator(NONE) accepted")
	}
}

// FuzzKERespond feeds arbitrary peer data to every method: it must return
// an error or a secret, never panic.
func FuzzKERespond(f *testing.F) {
	ids := []iana.KEID{iana.KEMODP2048, iana.KEECP256, iana.KEECP384, iana.KEECP521, iana.KECurve25519, iana.KEMLKEM768, iana.KEMLKEM1024}
	for i, id := range ids {
		k, err := NewKEInitiator(id, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), k.Public())
		f.Add(uint8(i), make([]byte, len(k.Public())))
	}
	fin := make([]KEInitiator, len(ids))
	for i, id := range ids {
		fin[i], _ = NewKEInitiator(id, nil)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		i := int(which) % len(ids)
		if ours, s, err := KERespond(ids[i], data, nil); err == nil && (len(ours) != KEDataLen(ids[i], false) || len(s) == 0) {
			t.Fatalf("%s: %d-byte answer, %d-byte secret", KEName(ids[i]), len(ours), len(s))
		}
		if s, err := fin[i].Finish(data); err == nil && len(s) == 0 {
			t.Fatalf("%s: empty secret", KEName(ids[i]))
		}
	})
}
