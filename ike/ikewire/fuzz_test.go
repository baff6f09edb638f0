package ikewire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/internal/testenv"
)

// seedMessages returns fuzz seeds from the test data: the first 300
// openiked corpus files, Libreswan's packets and the IKE messages of the
// captures. Copies whose Length field is set to the datagram length are
// added for the corpus files, so that seeds reach the payload parser.
func seedMessages(t testing.TB) [][]byte {
	dir := testenv.Testdata(t)
	var out [][]byte
	for _, b := range openikedCorpus(t, 300) {
		out = append(out, b)
		if len(b) >= HeaderLen && len(b) <= MaxMessageLen {
			fixed := bytes.Clone(b)
			fixed[17] = 0x20
			binary.BigEndian.PutUint32(fixed[24:], uint32(len(b)))
			out = append(out, fixed)
		}
	}
	v2, v1 := libreswanPackets(t)
	for _, p := range append(v2, v1...) {
		out = append(out, testenv.Unhex(t, p.Hex))
	}
	for _, f := range capturesIn(t, filepath.Join(dir, "pcap"), "") {
		for _, fr := range pcapIKE(t, f) {
			out = append(out, fr.Msg)
		}
	}
	return out
}

// FuzzParse checks that Parse never panics, that every error is a
// *ParseError, and that a parsed message re-marshals to bytes that parse
// to an equal message.
func FuzzParse(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := checkRoundTrip(t, b)
		if err == nil {
			if _, err := ParseHeader(b); err != nil {
				t.Fatalf("Parse succeeded but ParseHeader failed: %v", err)
			}
			if !bytes.Equal(m.Raw, b) {
				t.Fatal("Raw differs from the input")
			}
		}
	})
}

// fuzzCiphers are fixed-key ciphers of every implemented kind.
func fuzzCiphers(t testing.TB) []SKCipher {
	k := bytes.Repeat([]byte{0x5a}, 64)
	var cs []SKCipher
	for _, s := range []struct {
		e      iana.EncrID
		i      iana.IntegID
		ek, ak int
	}{
		{iana.EncrChaCha20Poly1305, 0, 36, 0},
		{iana.EncrAESGCM16, 0, 20, 0},
		{iana.EncrAESCBC, iana.IntegHMACSHA1_96, 16, 20},
		{iana.EncrAESCBC, iana.IntegHMACSHA2_256, 32, 32},
	} {
		var ak []byte
		if s.ak > 0 {
			ak = k[:s.ak]
		}
		c, err := NewSKCipher(s.e, s.i, k[:s.ek], ak)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

// sealRaw builds an INFORMATIONAL message whose SK payload encrypts pt
// exactly as given (inner chain, padding and pad length byte), with first
// as the SK payload's Next Payload. It returns nil if pt does not fit c.
func sealRaw(c SKCipher, first PayloadType, pt []byte) []byte {
	if len(pt) == 0 || len(pt)%c.BlockSize() != 0 {
		return nil
	}
	body := make([]byte, c.IVLen()+len(pt)+c.ICVLen())
	copy(body[c.IVLen():], pt)
	m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, MessageID: 3},
		Payloads: []Payload{&SK{NextPayload: first, Body: body}}}
	out, err := m.Marshal()
	if err != nil {
		return nil
	}
	ivOff := len(out) - len(body)
	for i := 0; i < c.IVLen(); i++ {
		out[ivOff+i] = byte(i)
	}
	c.Seal(out, ivOff)
	return out
}

// FuzzOpenSK feeds arbitrary decrypted content to OpenSK (sealed under a
// fixed key, so that it passes the integrity check) and arbitrary messages
// to OpenSK directly: no panics, every error a *ParseError, and inner
// payloads that parse re-seal and re-open to equal payloads.
func FuzzOpenSK(f *testing.F) {
	f.Add([]byte{0, 0, 0, 12, 0, 0, 0x40, 1, 0, 0, 0, 10, 0}, uint8(41), uint8(0))
	f.Add(append(bytes.Repeat([]byte{0}, 15), 15), uint8(0), uint8(2))
	for _, ps := range [][]Payload{samplePayloads()[1:5], samplePayloads()[8:12]} {
		pt, _ := marshalInner(ps)
		pt = append(pt, 0)
		f.Add(pt, uint8(ps[0].PayloadType()), uint8(0))
	}
	cs := fuzzCiphers(f)
	f.Fuzz(func(t *testing.T, pt []byte, first, suite uint8) {
		c := cs[int(suite)%len(cs)]
		// Whole messages from the fuzzer: almost all fail the ICV.
		if m, err := Parse(pt); err == nil && len(m.Payloads) > 0 {
			if _, ok := m.Payloads[len(m.Payloads)-1].(*SK); ok {
				_, err := OpenSK(m, c)
				var pe *ParseError
				if err != nil && !errors.As(err, &pe) {
					t.Fatalf("OpenSK returned %T", err)
				}
			}
		}
		// Arbitrary plaintext behind a valid ICV.
		if bs := c.BlockSize(); len(pt)%bs != 0 {
			pt = pt[:len(pt)/bs*bs]
		}
		msg := sealRaw(c, PayloadType(first), pt)
		if msg == nil {
			return
		}
		m, err := Parse(msg)
		if err != nil {
			t.Fatalf("Parse of a sealed message: %v", err)
		}
		inner, err := OpenSK(m, c)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Notify == 0 {
				t.Fatalf("OpenSK of valid ciphertext: %v", err)
			}
			return
		}
		again, err := SealSK(&Message{Header: m.Header}, inner, c, bytes.NewReader(make([]byte, 16)))
		if err != nil {
			t.Fatalf("SealSK of parsed inner payloads: %v", err)
		}
		m2, err := Parse(again)
		if err != nil {
			t.Fatalf("Parse of the re-sealed message: %v", err)
		}
		inner2, err := OpenSK(m2, c)
		if err != nil || !equalPayloads(inner, inner2) {
			t.Fatalf("re-sealed inner payloads differ: %v", err)
		}
	})
}

// TestWriteFuzzSeeds writes a few dozen small seeds for FuzzParse to
// testdata/fuzz/FuzzParse, chosen from seedMessages to cover each outcome.
// It runs only with IKEWIRE_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("IKEWIRE_WRITE_SEEDS") != "1" {
		t.Skip("set IKEWIRE_WRITE_SEEDS=1 to rewrite testdata/fuzz/FuzzParse")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	perOutcome := map[string]int{}
	n := 0
	for _, b := range seedMessages(t) {
		if len(b) > 700 {
			continue
		}
		_, err := Parse(b)
		o := outcome(err)
		limit := 4
		if o == "ok" {
			limit = 24
		}
		if perOutcome[o] >= limit {
			continue
		}
		perOutcome[o]++
		n++
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", n)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d seeds: %v", n, perOutcome)
}
