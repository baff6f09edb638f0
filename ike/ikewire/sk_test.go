package ikewire

import (
	"bytes"
	"crypto/aes"
	"testing"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/internal/testenv"
)

// TestRFC7634AppendixB opens and re-seals the encrypted INFORMATIONAL
// message of RFC 7634, Appendix B (ChaCha20-Poly1305), from
// ike-rfc7634-appendix-b.json: Open must decrypt it to the Notify
// SET_WINDOW_SIZE 10 and Seal must produce the 69 bytes exactly.
func TestRFC7634AppendixB(t *testing.T) {
	var v struct {
		Inputs struct {
			SPIi   string `json:"spi_i_hex"`
			SPIr   string `json:"spi_r_hex"`
			MsgID  uint32 `json:"message_id"`
			Keymat string `json:"sk_e_keymat_hex"`
			IV     string `json:"iv_hex"`
		} `json:"inputs"`
		Expected  string `json:"expected_message_hex"`
		AAD       string `json:"aad_hex"`
		Plaintext string `json:"plaintext_hex"`
	}
	testenv.ReadJSON(t, testdata(t, "ike-rfc7634-appendix-b.json"), &v)
	want := testenv.Unhex(t, v.Expected)
	c, err := NewSKCipher(iana.EncrChaCha20Poly1305, iana.IntegNone, testenv.Unhex(t, v.Inputs.Keymat), nil)
	if err != nil {
		t.Fatal(err)
	}

	m, err := Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	if m.Exchange != INFORMATIONAL || m.MessageID != v.Inputs.MsgID || m.Flags != 0 {
		t.Errorf("header %+v", m.Header)
	}
	inner, err := OpenSK(m, c)
	if err != nil {
		t.Fatal(err)
	}
	wantInner := []Payload{&Notify{Type: NotifySetWindowSize, Data: []byte{0, 0, 0, 10}}}
	if !equalPayloads(inner, wantInner) {
		t.Errorf("inner payloads %#v", inner[0])
	}
	if !bytes.Equal(m.Raw, want) {
		t.Error("OpenSK modified Raw")
	}

	spii, spir := testenv.Unhex(t, v.Inputs.SPIi), testenv.Unhex(t, v.Inputs.SPIr)
	h := &Message{Header: Header{
		SPIi: be64(spii), SPIr: be64(spir), Exchange: INFORMATIONAL, MessageID: v.Inputs.MsgID,
	}}
	got, err := SealSK(h, wantInner, c, bytes.NewReader(testenv.Unhex(t, v.Inputs.IV)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("SealSK\n got %x\nwant %x", got, want)
	}
	if !bytes.Equal(got[:32], testenv.Unhex(t, v.AAD)) {
		t.Errorf("AAD region %x", got[:32])
	}

	// Any flipped bit makes Open fail with a silent drop.
	for i := range want {
		bad := bytes.Clone(want)
		bad[i] ^= 0x01
		m, err := Parse(bad)
		if err != nil {
			continue // a header or length byte: rejected earlier
		}
		if _, err := OpenSK(m, c); outcome(err) != "drop" {
			t.Errorf("byte %d flipped: OpenSK %v, want drop", i, err)
		}
	}
}

func be64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func equalPayloads(a, b []Payload) bool {
	return equalMessages(&Message{Payloads: a}, &Message{Payloads: b})
}

// TestPI2Frame2 uses ikev2pI2.pcap frame 2 (AES-128-CBC, HMAC-SHA1-96)
// with tcpdump's published keys (pcap/keys.json): the captured ICV is wrong
// and OpenSK must drop the message; with the ICV that keys.json computed
// for SK_ai, it must decrypt to IDi (FQDN "west") and AUTH (RSA, 192 zero
// bytes), ignoring the non-zero padding bytes.
func TestPI2Frame2(t *testing.T) {
	var keys struct {
		Captures map[string]struct {
			IKESA struct {
				SKei string `json:"sk_ei_hex"`
				SKai string `json:"sk_ai_hex"`
			} `json:"ike_sa"`
			Frame2 struct {
				Msg       string `json:"ike_message_hex"`
				Decrypted string `json:"decrypted_hex"`
				ICVIn     string `json:"icv_in_packet_hex"`
				ICVai     string `json:"icv_expected_with_sk_ai_hex"`
			} `json:"frame2"`
		} `json:"captures"`
	}
	testenv.ReadJSON(t, testdata(t, "pcap/keys.json"), &keys)
	k := keys.Captures["ikev2pI2.pcap"]
	block, err := aes.NewCipher(testenv.Unhex(t, k.IKESA.SKei))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCBCHMAC(block, iana.IntegHMACSHA1_96, testenv.Unhex(t, k.IKESA.SKai))
	if err != nil {
		t.Fatal(err)
	}
	msg := testenv.Unhex(t, k.Frame2.Msg)
	if !bytes.HasSuffix(msg, testenv.Unhex(t, k.Frame2.ICVIn)) {
		t.Fatal("keys.json: message does not end in the captured ICV")
	}
	m, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSK(m, c); outcome(err) != "drop" {
		t.Fatalf("OpenSK with the captured (wrong) ICV: %v, want drop", err)
	}

	fixed := append(bytes.Clone(msg[:len(msg)-12]), testenv.Unhex(t, k.Frame2.ICVai)...)
	m, err = Parse(fixed)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := OpenSK(m, c)
	if err != nil {
		t.Fatalf("OpenSK with the corrected ICV: %v", err)
	}
	dec := testenv.Unhex(t, k.Frame2.Decrypted)
	padLen := int(dec[len(dec)-1])
	wantInner, err := parseChain(dec[:len(dec)-1-padLen], PayloadIDi, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Payload{
		&IDi{Identification{IDType: ID_FQDN, Data: []byte("west")}},
		&Auth{Method: AuthRSASig, Data: make([]byte, 192)},
	}
	if !equalPayloads(inner, want) || !equalPayloads(wantInner, want) {
		t.Errorf("inner payloads %v", types(inner))
	}
}

// TestSKSealOpen round-trips inner payloads through every implemented
// cipher, checks the lengths Seal produces and that tampering is caught.
func TestSKSealOpen(t *testing.T) {
	key := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	suites := []struct {
		name       string
		encr       iana.EncrID
		integ      iana.IntegID
		ek, ak     int
		iv, icv, b int
	}{
		{"aes128gcm16", iana.EncrAESGCM16, 0, 20, 0, 8, 16, 1},
		{"aes256gcm16", iana.EncrAESGCM16, 0, 36, 0, 8, 16, 1},
		{"aes256gcm12", iana.EncrAESGCM12, 0, 36, 0, 8, 12, 1},
		{"chacha20poly1305", iana.EncrChaCha20Poly1305, 0, 36, 0, 8, 16, 1},
		{"aes128-sha1", iana.EncrAESCBC, iana.IntegHMACSHA1_96, 16, 20, 16, 12, 16},
		{"aes128-sha256", iana.EncrAESCBC, iana.IntegHMACSHA2_256, 16, 32, 16, 16, 16},
		{"aes192-sha384", iana.EncrAESCBC, iana.IntegHMACSHA2_384, 24, 48, 16, 24, 16},
		{"aes256-sha512", iana.EncrAESCBC, iana.IntegHMACSHA2_512, 32, 64, 16, 32, 16},
	}
	inner := samplePayloads()[1:4]
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			var ak []byte
			if s.ak > 0 {
				ak = key(s.ak)
			}
			c, err := NewSKCipher(s.encr, s.integ, key(s.ek), ak)
			if err != nil {
				t.Fatal(err)
			}
			if c.IVLen() != s.iv || c.ICVLen() != s.icv || c.BlockSize() != s.b {
				t.Fatalf("IV %d ICV %d block %d", c.IVLen(), c.ICVLen(), c.BlockSize())
			}
			for n := 0; n <= len(inner); n++ {
				h := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1}}
				out, err := SealSK(h, inner[:n], c, bytes.NewReader(key(64)))
				if err != nil {
					t.Fatal(err)
				}
				pt, _ := marshalInner(inner[:n])
				enc := len(out) - HeaderLen - genericHeaderLen - s.iv - s.icv
				if enc%s.b != 0 || enc < len(pt)+1 || enc > len(pt)+s.b {
					t.Errorf("encrypted part %d bytes for %d bytes of payloads", enc, len(pt))
				}
				m, err := Parse(out)
				if err != nil {
					t.Fatal(err)
				}
				got, err := OpenSK(m, c)
				if err != nil {
					t.Fatal(err)
				}
				if !equalPayloads(got, inner[:n]) {
					t.Errorf("%d payloads: round trip differs", n)
				}
				out[len(out)-1] ^= 1
				m, _ = Parse(out)
				if _, err := OpenSK(m, c); outcome(err) != "drop" {
					t.Errorf("tampered ICV: %v", err)
				}
			}
		})
	}
	for _, bad := range []struct {
		encr  iana.EncrID
		integ iana.IntegID
		ek    int
		ak    int
	}{
		{iana.EncrAESGCM8, 0, 20, 0},
		{iana.EncrAESCBC, iana.IntegAESXCBC96, 16, 16},
		{iana.EncrAESCBC, iana.IntegHMACSHA2_256, 16, 16},
		{iana.EncrAESGCM16, iana.IntegHMACSHA2_256, 20, 32},
		{iana.EncrChaCha20Poly1305, 0, 32, 0},
		{iana.EncrAESCTR, iana.IntegHMACSHA2_256, 16, 32},
	} {
		if _, err := NewSKCipher(bad.encr, bad.integ, key(bad.ek), key(bad.ak)); err == nil {
			t.Errorf("NewSKCipher(%d, %d) succeeded", bad.encr, bad.integ)
		}
	}
}
