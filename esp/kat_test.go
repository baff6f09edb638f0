package esp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/goipsec/goipsec/internal/testenv"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// linuxRef is one packet of scapy-linux-reference.json.
type linuxRef struct {
	Title     string `json:"title"`
	Algorithm string `json:"xfrm_algorithm"`
	SPI       uint32 `json:"spi"`
	Seq       uint64 `json:"seq"`
	ESN       bool   `json:"esn"`
	ESNHigh   uint64 `json:"esn_high_32"`
	Keymat    string `json:"keymat_hex"`
	Packet    string `json:"esp_packet_hex"`
	ICV       string `json:"icv_hex"`
	Decrypted struct {
		Inner string `json:"inner_packet_hex"`
	} `json:"decrypted"`
}

func loadLinuxRef(t testing.TB) []linuxRef {
	t.Helper()
	var f struct {
		Packets []linuxRef `json:"packets"`
	}
	testenv.ReadJSON(t, testenv.TestdataFile(t, "esp/scapy-linux-reference.json"), &f)
	if len(f.Packets) != 11 {
		t.Fatalf("%d packets, want 11", len(f.Packets))
	}
	return f.Packets
}

// linuxSuite maps an ip xfrm algorithm of the reference file to a suite of
// ours. hmacKey is not nil for the encryption-only packets (digest_null),
// which we open by adding an HMAC-SHA-256-128 ICV computed here with the
// standard library (RFC 4868): the Linux ciphertext is still what is
// checked. skip says why a packet cannot be opened.
func linuxSuite(alg string) (suite string, hmacKey []byte, skip string) {
	switch alg {
	case "aead rfc4106(gcm(aes)) icv 128 bits":
		return "aes128gcm16", nil, ""
	case "aead rfc4543(gcm(aes)) icv 128 bits":
		return "aes128gmac", nil, ""
	case "enc cbc(aes)":
		return "aes128-sha256", bytes.Repeat([]byte{0x5a}, 32), ""
	case "enc rfc3686(ctr(aes))":
		return "aes128ctr-sha256", bytes.Repeat([]byte{0xa5}, 32), ""
	case "enc cbc(des)":
		return "", nil, "DES not implemented (RFC 8221, Section 5: MUST NOT)"
	case "enc cbc(des3_ede)":
		return "", nil, "3DES not implemented (RFC 8221, Section 5: SHOULD NOT)"
	case "enc cbc(blowfish)", "enc cbc(cast5)":
		return "", nil, "Blowfish and CAST not implemented (not in RFC 8221, Section 5)"
	case "aead rfc4309(ccm(aes)) icv 64 bits":
		return "", nil, "AES-CCM (RFC 4309) not implemented"
	}
	return "", nil, "unknown algorithm"
}

// TestLinuxReference opens ESP packets that the Linux kernel generated
// (tunnel mode, SPI 0x222) and compares the result with the inner packets
// in the reference file. The outer IPv4 header is synthetic
// (127.0.0.1 -> 127.0.0.1), as in the source's tests.
func TestLinuxReference(t *testing.T) {
	opened := 0
	for _, ref := range loadLinuxRef(t) {
		t.Run(ref.Title, func(t *testing.T) {
			name, hmacKey, skip := linuxSuite(ref.Algorithm)
			if skip != "" {
				t.Skipf("%s: %s", ref.Algorithm, skip)
			}
			espPkt := testenv.Unhex(t, ref.Packet)
			key := testenv.Unhex(t, ref.Keymat)
			if hmacKey != nil {
				if ref.ICV != "" {
					t.Fatal("encryption-only packet with an ICV")
				}
				m := hmac.New(sha256.New, hmacKey)
				m.Write(espPkt)
				espPkt = m.Sum(espPkt)[:len(espPkt)+16] // RFC 4868, Section 2.3: truncated to 128 bits
				key = append(key, hmacKey...)
			}
			s := mustSuite(t, name)
			in, err := NewInbound(Config{SPI: ref.SPI, Mode: sa.Tunnel, ESN: ref.ESN, Transform: mustESP(t, s, key)})
			if err != nil {
				t.Fatal(err)
			}
			if ref.ESN {
				// A receiver that has reached the packet's high half.
				in.Accept(ref.ESNHigh << 32)
			}
			lo := netipLoopback()
			pkt := make([]byte, 20+len(espPkt))
			packet.PutIPv4Header(pkt, lo, lo, 50, len(pkt), 64, 0)
			copy(pkt[20:], espPkt)
			got, err := open(in, pkt)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if want := testenv.Unhex(t, ref.Decrypted.Inner); !bytes.Equal(got, want) {
				t.Fatalf("inner packet\n%x\nwant\n%x", got, want)
			}
			if ref.ESN {
				if top := in.window.Top(); top != ref.ESNHigh<<32|ref.Seq {
					t.Fatalf("window top %#x", top)
				}
			}
			opened++
		})
	}
	if opened != 6 {
		t.Errorf("opened %d reference packets, want 6 (AES-CBC, AES-CTR, 2 AES-GCM, 2 GMAC)", opened)
	}
}

// chachaVector is one entry of kat/chacha20poly1305.json.
type chachaVector struct {
	Name      string `json:"name"`
	Keymat    string `json:"keymat_hex"`
	Salt      string `json:"salt_hex"`
	IV        string `json:"iv_hex"`
	AAD       string `json:"aad_hex"`
	Plaintext string `json:"plaintext_hex"`
	CTICV     string `json:"ciphertext_icv_hex"`
}

// TestRFC7634AppendixA checks the ESP example of RFC 7634, Appendix A
// (vector chacha20poly1305_3: SPI 0x01020304, sequence number 5).
//
// The RFC's packet carries the IV 0x1011121314151617, not the sequence
// number 5 that our transform uses as IV (RFC 7634, Section 2 allows any
// unique IV; a counter is the usual choice, RFC 4106, Section 3.1). So Seal
// cannot reproduce the RFC's bytes. Instead:
//   - Open of the RFC's packet must verify and yield exactly the RFC's inner
//     packet (the receiver takes the IV from the packet);
//   - Seal of that inner packet with sequence number 5 must give a packet
//     that the standard x/crypto ChaCha20-Poly1305, with nonce = salt || IV
//     and AAD = SPI || seq, opens to exactly the RFC's plaintext (inner
//     packet, padding 01 02, pad length 2, next header 4), and whose IV is
//     the sequence number.
func TestRFC7634AppendixA(t *testing.T) {
	var f struct {
		Vectors []chachaVector `json:"vectors"`
	}
	testenv.ReadJSON(t, testenv.TestdataFile(t, "kat/chacha20poly1305.json"), &f)
	var v *chachaVector
	for i := range f.Vectors {
		if f.Vectors[i].Name == "chacha20poly1305_3" {
			v = &f.Vectors[i]
		}
	}
	if v == nil {
		t.Fatal("vector chacha20poly1305_3 missing")
	}
	const spi, seq = 0x01020304, 5
	aad := testenv.Unhex(t, v.AAD)
	if !bytes.Equal(aad, []byte{1, 2, 3, 4, 0, 0, 0, 5}) {
		t.Fatalf("AAD %x is not SPI 0x01020304 || seq 5", aad)
	}
	keymat, plain := testenv.Unhex(t, v.Keymat), testenv.Unhex(t, v.Plaintext)
	inner := plain[:len(plain)-4]
	if !bytes.Equal(plain[len(plain)-4:], []byte{1, 2, 2, 4}) {
		t.Fatalf("plaintext trailer %x", plain[len(plain)-4:])
	}
	s := mustSuite(t, "chacha20poly1305")
	remote, local := netipFrom("203.0.113.153"), netipFrom("192.0.2.5")

	// Open the RFC's packet.
	in, err := NewInbound(Config{SPI: spi, Transform: mustESP(t, s, keymat)})
	if err != nil {
		t.Fatal(err)
	}
	espPkt := append(append(append([]byte{}, aad...), testenv.Unhex(t, v.IV)...), testenv.Unhex(t, v.CTICV)...)
	pkt := make([]byte, 20+len(espPkt))
	packet.PutIPv4Header(pkt, remote, local, 50, len(pkt), 64, 0)
	copy(pkt[20:], espPkt)
	got, err := open(in, pkt)
	if err != nil {
		t.Fatalf("Open of the RFC 7634 packet: %v", err)
	}
	if !bytes.Equal(got, inner) {
		t.Fatalf("inner\n%x\nwant\n%x", got, inner)
	}

	// Seal the same inner packet with sequence number 5.
	o, err := NewOutbound(Config{SPI: spi, Transform: mustESP(t, s, keymat), Local: local, Remote: remote, StartSeq: seq - 1})
	if err != nil {
		t.Fatal(err)
	}
	sealed := seal(t, o, inner)
	esp := sealed[20:]
	if !bytes.Equal(esp[:8], aad) {
		t.Fatalf("ESP header %x", esp[:8])
	}
	if iv := binary.BigEndian.Uint64(esp[8:]); iv != seq {
		t.Fatalf("IV %#x, want the sequence number", iv)
	}
	aead, err := chacha20poly1305.New(keymat[:32])
	if err != nil {
		t.Fatal(err)
	}
	nonce := append(testenv.Unhex(t, v.Salt), esp[8:16]...)
	pt, err := aead.Open(nil, nonce, esp[16:], esp[:8])
	if err != nil {
		t.Fatalf("x/crypto cannot open our packet: %v", err)
	}
	if !bytes.Equal(pt, plain) {
		t.Fatalf("plaintext\n%x\nwant\n%x", pt, plain)
	}
	// With the RFC's IV, the same AEAD gives the RFC's ciphertext: the
	// vector and x/crypto agree, so the comparison above is meaningful.
	if ct := aead.Seal(nil, testenv.Unhex(t, v.Salt+v.IV), plain, aad); !bytes.Equal(ct, testenv.Unhex(t, v.CTICV)) {
		t.Fatal("x/crypto disagrees with the vector")
	}
}
