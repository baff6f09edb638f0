package transform

// Known-answer tests. The vectors are in testdata/ at the module root (see
// its README.md and MANIFEST.json): strongSwan's test_vectors plugin, which
// carries RFC 3566, RFC 3602, RFC 3686, RFC 4868, RFC 2202, RFC 7539/7634,
// NIST SP 800-38A and the McGrew-Viega GCM test cases, and ESP packets made
// by the Linux kernel (transcribed from scapy's regression tests).

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"
)

type aeadKAT struct {
	Name          string `json:"name"`
	KeyBits       int    `json:"key_bits"`
	ICVLen        int    `json:"icv_len"`
	Keymat        string `json:"keymat_hex"`
	IV            string `json:"iv_hex"`
	AAD           string `json:"aad_hex"`
	Plaintext     string `json:"plaintext_hex"`
	CiphertextICV string `json:"ciphertext_icv_hex"`
}

// checkAEADKAT seals and opens one AEAD vector through the ESP state of
// suite, with the vector's own AAD.
func checkAEADKAT(t *testing.T, suite string, v aeadKAT) {
	t.Helper()
	e := mustESP(t, suite, unhex(t, v.Keymat)).(*aeadESP)
	iv, aad, pt, want := unhex(t, v.IV), unhex(t, v.AAD), unhex(t, v.Plaintext), unhex(t, v.CiphertextICV)
	if len(want) != len(pt)+e.ICVLen() {
		t.Fatalf("%s: vector ICV length %d, suite ICV length %d", v.Name, len(want)-len(pt), e.ICVLen())
	}
	sc := getScratch()
	defer putScratch(sc)

	b := aeadRegion(iv, pt, e.ICVLen())
	e.seal(sc, b, aad)
	if !bytes.Equal(b[aeadOff:], want) {
		t.Errorf("%s: seal\n got %x\nwant %x", v.Name, b[aeadOff:], want)
	}
	if !bytes.Equal(b[ESPHeaderLen:aeadOff], iv) {
		t.Errorf("%s: seal changed the IV to %x", v.Name, b[ESPHeaderLen:aeadOff])
	}

	b = aeadRegion(iv, want, 0)
	if err := e.open(sc, b, aad); err != nil {
		t.Errorf("%s: open: %v", v.Name, err)
	} else if !bytes.Equal(b[aeadOff:aeadOff+len(pt)], pt) {
		t.Errorf("%s: open\n got %x\nwant %x", v.Name, b[aeadOff:aeadOff+len(pt)], pt)
	}

	b = aeadRegion(iv, want, 0)
	b[len(b)-1] ^= 1
	if err := e.open(sc, b, aad); !errors.Is(err, ErrAuth) {
		t.Errorf("%s: open with a flipped ICV bit: %v, want ErrAuth", v.Name, err)
	}
}

func TestKATAESGCM(t *testing.T) {
	var f struct{ Vectors []aeadKAT }
	loadJSON(t, kat(t, "aes_gcm.json"), &f)
	sizes := map[int]bool{}
	for _, v := range f.Vectors {
		sizes[v.ICVLen] = true
		checkAEADKAT(t, fmt.Sprintf("aes%dgcm%d", v.KeyBits, v.ICVLen), v)
	}
	if len(f.Vectors) < 20 || !sizes[8] || !sizes[12] || !sizes[16] {
		t.Fatalf("aes_gcm.json: %d vectors, ICV sizes %v; want ICV 8, 12 and 16", len(f.Vectors), sizes)
	}
}

func TestKATChaCha20Poly1305(t *testing.T) {
	var f struct{ Vectors []aeadKAT }
	loadJSON(t, kat(t, "chacha20poly1305.json"), &f)
	for _, v := range f.Vectors {
		checkAEADKAT(t, "chacha20poly1305", v)
	}
	if len(f.Vectors) != 4 {
		t.Fatalf("chacha20poly1305.json: %d vectors, want 4", len(f.Vectors))
	}
}

// TestRFC7634AppendixA seals and opens the ESP packet of RFC 7634, Appendix
// A (chacha20poly1305_3) through the public ESP interface: SPI 0x01020304,
// sequence number 5, IV 0x1011121314151617. Without ESN only the header
// bytes enter the AAD, and Seal uses its seq argument as the IV, so passing
// the IV as seq reproduces the packet exactly.
func TestRFC7634AppendixA(t *testing.T) {
	var f struct{ Vectors []aeadKAT }
	loadJSON(t, kat(t, "chacha20poly1305.json"), &f)
	var v aeadKAT
	for _, x := range f.Vectors {
		if x.Name == "chacha20poly1305_3" {
			v = x
		}
	}
	if v.Name == "" {
		t.Fatal("chacha20poly1305_3 not found")
	}
	hdr, iv, pt, ct := unhex(t, v.AAD), unhex(t, v.IV), unhex(t, v.Plaintext), unhex(t, v.CiphertextICV)
	if !bytes.Equal(hdr, []byte{1, 2, 3, 4, 0, 0, 0, 5}) {
		t.Fatalf("AAD %x is not SPI 01020304 || seq 5", hdr)
	}
	e := mustESP(t, "chacha20poly1305", unhex(t, v.Keymat))
	b := make([]byte, ESPHeaderLen+e.IVLen()+len(pt)+e.ICVLen())
	copy(b, hdr)
	copy(b[aeadOff:], pt)
	e.Seal(b, binary.BigEndian.Uint64(iv), false)
	want := append(append(append([]byte(nil), hdr...), iv...), ct...)
	if !bytes.Equal(b, want) {
		t.Fatalf("Seal\n got %x\nwant %x", b, want)
	}
	if err := e.Open(b, 5, false); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(b[aeadOff:aeadOff+len(pt)], pt) {
		t.Fatalf("Open\n got %x\nwant %x", b[aeadOff:aeadOff+len(pt)], pt)
	}
	// The same packet with ESN must not verify (the AAD would be 12 bytes).
	copy(b, want)
	if err := e.Open(b, 5, true); !errors.Is(err, ErrAuth) {
		t.Fatalf("Open with ESN: %v, want ErrAuth", err)
	}
}

func TestKATAESCBC(t *testing.T) {
	var f struct {
		Vectors []struct {
			Name       string `json:"name"`
			Key        string `json:"key_hex"`
			IV         string `json:"iv_hex"`
			Plaintext  string `json:"plaintext_hex"`
			Ciphertext string `json:"ciphertext_hex"`
		}
	}
	loadJSON(t, kat(t, "aes_cbc.json"), &f)
	for _, v := range f.Vectors {
		block, err := aes.NewCipher(unhex(t, v.Key))
		if err != nil {
			t.Fatal(err)
		}
		iv, pt, ct := unhex(t, v.IV), unhex(t, v.Plaintext), unhex(t, v.Ciphertext)
		b := bytes.Clone(pt)
		cbcEncrypt(block, iv, b)
		if !bytes.Equal(b, ct) {
			t.Errorf("%s: encrypt\n got %x\nwant %x", v.Name, b, ct)
		}
		cbcDecrypt(block, iv, b)
		if !bytes.Equal(b, pt) {
			t.Errorf("%s: decrypt\n got %x\nwant %x", v.Name, b, pt)
		}
	}
	if len(f.Vectors) != 6 {
		t.Fatalf("aes_cbc.json: %d vectors, want 6", len(f.Vectors))
	}
}

func TestKATAESCTR(t *testing.T) {
	var f struct {
		Vectors []struct {
			Name       string `json:"name"`
			Keymat     string `json:"keymat_hex"`
			IV         string `json:"iv_hex"`
			Plaintext  string `json:"plaintext_hex"`
			Ciphertext string `json:"ciphertext_hex"`
		}
	}
	loadJSON(t, kat(t, "aes_ctr.json"), &f)
	sc := getScratch()
	defer putScratch(sc)
	for _, v := range f.Vectors {
		km := unhex(t, v.Keymat)
		block, err := aes.NewCipher(km[:len(km)-4])
		if err != nil {
			t.Fatal(err)
		}
		nonce := [4]byte(km[len(km)-4:])
		iv, pt, ct := unhex(t, v.IV), unhex(t, v.Plaintext), unhex(t, v.Ciphertext)
		b := bytes.Clone(pt)
		ctrXOR(block, sc, &nonce, iv, b)
		if !bytes.Equal(b, ct) {
			t.Errorf("%s: encrypt\n got %x\nwant %x", v.Name, b, ct)
		}
		ctrXOR(block, sc, &nonce, iv, b)
		if !bytes.Equal(b, pt) {
			t.Errorf("%s: decrypt\n got %x\nwant %x", v.Name, b, pt)
		}
	}
	if len(f.Vectors) != 9 {
		t.Fatalf("aes_ctr.json: %d vectors, want 9", len(f.Vectors))
	}
}

type macKAT struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Transform   string `json:"transform"`
	Key         string `json:"key_hex"`
	Data        string `json:"data_hex"`
	ICV         string `json:"icv_hex"`
	Out         string `json:"out_hex"`
	TruncatedTo int    `json:"truncated_to"`
}

// checkIntegrityKAT checks an Integrity against one vector, whole and with
// the last four bytes of the message passed as the ESN high-order bits,
// which must give the same ICV (RFC 4303, Section 2.2.1).
func checkIntegrityKAT(t *testing.T, m Integrity, name string, data, want []byte) {
	t.Helper()
	if m.ICVLen() != len(want) {
		t.Fatalf("%s: ICVLen %d, vector has %d bytes", name, m.ICVLen(), len(want))
	}
	got := make([]byte, m.ICVLen())
	m.Sum(got, data, 0xdeadbeef, false)
	if !bytes.Equal(got, want) {
		t.Errorf("%s: Sum\n got %x\nwant %x", name, got, want)
	}
	if !m.Verify(want, data, 0, false) {
		t.Errorf("%s: Verify refused the vector's ICV", name)
	}
	bad := bytes.Clone(want)
	bad[0] ^= 0x80
	if m.Verify(bad, data, 0, false) {
		t.Errorf("%s: Verify accepted a wrong ICV", name)
	}
	if m.Verify(want[:len(want)-1], data, 0, false) {
		t.Errorf("%s: Verify accepted a short ICV", name)
	}
	if n := len(data); n >= 4 {
		hi := binary.BigEndian.Uint32(data[n-4:])
		clear(got)
		m.Sum(got, data[:n-4], hi, true)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Sum with the last 4 bytes as ESN seqHi\n got %x\nwant %x", name, got, want)
		}
		if !m.Verify(want, data[:n-4], hi, true) {
			t.Errorf("%s: Verify with the last 4 bytes as ESN seqHi failed", name)
		}
	}
}

func TestKATHMAC(t *testing.T) {
	ah := map[string]string{
		"AUTH_HMAC_SHA1_96":      "sha1",
		"AUTH_HMAC_SHA2_256_128": "sha256",
		"AUTH_HMAC_SHA2_384_192": "sha384",
		"AUTH_HMAC_SHA2_512_256": "sha512",
	}
	n := map[string]int{}
	for _, file := range []string{"sha1_hmac.json", "sha2_hmac.json"} {
		var f struct{ Vectors []macKAT }
		loadJSON(t, kat(t, file), &f)
		for _, v := range f.Vectors {
			name, ok := ah[v.Transform]
			if v.Kind != "integrity" || !ok {
				continue // PRF vectors and strongSwan-private truncations
			}
			s, err := ParseAH(name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.NewAH(unhex(t, v.Key))
			if err != nil {
				t.Fatalf("%s: %v", v.Name, err)
			}
			checkIntegrityKAT(t, m, v.Name, unhex(t, v.Data), unhex(t, v.ICV))
			n[name]++
		}
	}
	for _, name := range ah {
		if n[name] == 0 {
			t.Errorf("no integrity vectors for %s", name)
		}
	}
}

func TestKATAESXCBC(t *testing.T) {
	var f struct{ Vectors []macKAT }
	loadJSON(t, kat(t, "aes_xcbc.json"), &f)
	s, err := ParseAH("aesxcbc")
	if err != nil {
		t.Fatal(err)
	}
	var n, nFull int
	for _, v := range f.Vectors {
		key, data := unhex(t, v.Key), unhex(t, v.Data)
		switch {
		case v.Kind == "integrity":
			m, err := s.NewAH(key)
			if err != nil {
				t.Fatalf("%s: %v", v.Name, err)
			}
			checkIntegrityKAT(t, m, v.Name, data, unhex(t, v.ICV))
			n++
		case len(key) == 16:
			// The untruncated MAC of RFC 3566, Section 4.6 (listed as
			// PRF vectors; keys of other lengths are RFC 4434's PRF).
			x, err := newXCBC(key)
			if err != nil {
				t.Fatal(err)
			}
			sc := getScratch()
			got := x.mac(sc, data, 0, false)
			if want := unhex(t, v.Out); !bytes.Equal(got, want) {
				t.Errorf("%s: MAC\n got %x\nwant %x", v.Name, got, want)
			}
			putScratch(sc)
			nFull++
		}
	}
	if n < 5 || nFull < 5 {
		t.Fatalf("aes_xcbc.json: %d integrity and %d full-MAC vectors, want 5 each (RFC 3566, Section 4.6)", n, nFull)
	}
}

// TestLinuxESP opens the ESP packets that the Linux kernel made with
// rfc4106(gcm(aes)) and rfc4543(gcm(aes)), with and without ESN, and seals
// their plaintext again under the same IV to the same bytes. The packets
// with NULL integrity (which this package refuses as suites) check the raw
// AES-CBC and AES-CTR (RFC 3686) code against the kernel.
func TestLinuxESP(t *testing.T) {
	var f struct {
		Packets []struct {
			Title     string `json:"title"`
			Algorithm string `json:"xfrm_algorithm"`
			Seq       uint64 `json:"seq"`
			ESN       bool   `json:"esn"`
			ESNHigh   uint64 `json:"esn_high_32"`
			Keymat    string `json:"keymat_hex"`
			Key       string `json:"key_hex"`
			Nonce     string `json:"nonce_hex"`
			IV        string `json:"iv_hex"`
			Packet    string `json:"esp_packet_hex"`
			Decrypted struct {
				Inner      string `json:"inner_packet_hex"`
				Padding    string `json:"padding_hex"`
				PadLength  byte   `json:"pad_length"`
				NextHeader byte   `json:"next_header"`
			} `json:"decrypted"`
		} `json:"packets"`
	}
	loadJSON(t, testenv.TestdataFile(t, "esp/scapy-linux-reference.json"), &f)
	var n int
	for _, p := range f.Packets {
		pkt := unhex(t, p.Packet)
		plain := append(unhex(t, p.Decrypted.Inner), unhex(t, p.Decrypted.Padding)...)
		plain = append(plain, p.Decrypted.PadLength, p.Decrypted.NextHeader)
		seq := p.ESNHigh<<32 | p.Seq
		var suite string
		switch {
		case strings.HasPrefix(p.Algorithm, "aead rfc4106(gcm(aes)) icv 128"):
			suite = "aes128gcm16"
		case strings.HasPrefix(p.Algorithm, "aead rfc4543(gcm(aes)) icv 128"):
			suite = "aes128gmac"
		case p.Algorithm == "enc cbc(aes)":
			block, _ := aes.NewCipher(unhex(t, p.Key))
			b := bytes.Clone(pkt[ESPHeaderLen+16:])
			cbcDecrypt(block, pkt[ESPHeaderLen:ESPHeaderLen+16], b)
			if !bytes.Equal(b, plain) {
				t.Errorf("%s: AES-CBC decryption\n got %x\nwant %x", p.Title, b, plain)
			}
			n++
			continue
		case p.Algorithm == "enc rfc3686(ctr(aes))":
			block, _ := aes.NewCipher(unhex(t, p.Key))
			sc := getScratch()
			b := bytes.Clone(pkt[aeadOff:])
			ctrXOR(block, sc, (*[4]byte)(unhex(t, p.Nonce)), pkt[ESPHeaderLen:aeadOff], b)
			putScratch(sc)
			if !bytes.Equal(b, plain) {
				t.Errorf("%s: AES-CTR decryption\n got %x\nwant %x", p.Title, b, plain)
			}
			n++
			continue
		default:
			continue // DES, 3DES, Blowfish, CAST, CCM: not implemented
		}
		e := mustESP(t, suite, unhex(t, p.Keymat))
		b := bytes.Clone(pkt)
		if err := e.Open(b, seq, p.ESN); err != nil {
			t.Errorf("%s: Open: %v", p.Title, err)
			continue
		}
		if got := b[aeadOff : len(b)-e.ICVLen()]; !bytes.Equal(got, plain) {
			t.Errorf("%s: Open\n got %x\nwant %x", p.Title, got, plain)
		}
		if err := e.Open(bytes.Clone(pkt), seq, !p.ESN); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: Open with ESN %v: %v, want ErrAuth", p.Title, !p.ESN, err)
		}
		// Seal the plaintext again under the kernel's IV.
		b = bytes.Clone(pkt)
		copy(b[aeadOff:], plain)
		clear(b[len(b)-e.ICVLen():])
		sc := getScratch()
		switch e := e.(type) {
		case *aeadESP:
			e.seal(sc, b, sc.espAAD(b, seq, p.ESN))
		case *gmacESP:
			if p.ESN {
				big := bigPool.Get().(*bigScratch)
				e.seal(sc, b, gmacESNAAD(big, b, seq))
				bigPool.Put(big)
			} else {
				e.seal(sc, b, b[:len(b)-gmacICVLen])
			}
		}
		putScratch(sc)
		if !bytes.Equal(b, pkt) {
			t.Errorf("%s: seal under the kernel's IV\n got %x\nwant %x", p.Title, b, pkt)
		}
		n++
	}
	if n != 6 {
		t.Fatalf("checked %d Linux packets, want 6 (GCM, GMAC, each with and without ESN; CBC; CTR)", n)
	}
}
