package ikewire

import (
	"bytes"
	"crypto/rand"
	mrand "math/rand/v2"
	"testing"

	"github.com/goipsec/goipsec/iana"
)

func fragFixture(t *testing.T) (SKCipher, *Message, []Payload) {
	t.Helper()
	c, err := NewSKCipher(iana.EncrAESCBC, iana.IntegHMACSHA2_256, make([]byte, 32), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	h := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1}}
	inner := []Payload{
		&IDi{Identification{IDType: ID_FQDN, Data: []byte("west")}},
		&Cert{Encoding: CertX509Signature, Data: bytes.Repeat([]byte{0x42}, 3000)},
		&Auth{Method: AuthDigitalSignature, Data: bytes.Repeat([]byte{0x17}, 300)},
		&SA{Proposals: []Proposal{{Num: 1, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4},
			Transforms: []Transform{{Type: TransformENCR, ID: 20, Attributes: []Attribute{{Type: AttrKeyLength, Value: 256}}}}}}},
	}
	return c, h, inner
}

// TestFragmentReassemble splits an IKE_AUTH message into SKF fragments of at
// most 576 bytes (RFC 7383, Section 2.5.1) and reassembles them in a random
// order with duplicates.
func TestFragmentReassemble(t *testing.T) {
	c, h, inner := fragFixture(t)
	const maxLen = 576
	frags, err := Fragment(h, inner, c, rand.Reader, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	if len(frags) < 6 {
		t.Fatalf("%d fragments", len(frags))
	}
	var ms []*Message
	for i, f := range frags {
		if len(f) > maxLen {
			t.Errorf("fragment %d: %d bytes", i+1, len(f))
		}
		m, err := Parse(f)
		if err != nil {
			t.Fatal(err)
		}
		skf := m.Payloads[0].(*SKF)
		wantNext := PayloadNone
		if i == 0 {
			wantNext = PayloadIDi
		}
		if len(m.Payloads) != 1 || skf.Number != uint16(i+1) || skf.Total != uint16(len(frags)) ||
			skf.NextPayload != wantNext || m.MessageID != 1 || m.Exchange != IKE_AUTH {
			t.Errorf("fragment %d: %+v", i+1, skf)
		}
		ms = append(ms, m)
	}
	order := append(mrand.Perm(len(ms)), 0, len(ms)-1)
	mrand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var r Reassembler
	var got []Payload
	for n, i := range order {
		inner, done, err := r.Add(ms[i], c)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			if got != nil || n < len(ms)-1 {
				t.Fatalf("done twice or early (after %d)", n+1)
			}
			got = inner
			r.Reset() // later duplicates start a new collection
		}
	}
	if !equalPayloads(got, inner) {
		t.Errorf("reassembled payloads differ: %v", types(got))
	}

	// A message that fits is not fragmented.
	small, err := Fragment(h, inner[:1], c, rand.Reader, maxLen)
	if err != nil || len(small) != 1 {
		t.Fatalf("small message: %d, %v", len(small), err)
	}
	if m, _ := Parse(small[0]); m == nil || m.Payloads[0].PayloadType() != PayloadSK {
		t.Error("small message not sent in an SK payload")
	}
	if _, err := Fragment(h, inner, c, rand.Reader, 80); err == nil {
		t.Error("Fragment with room for no content succeeded")
	}
	if _, err := Fragment(&Message{Payloads: []Payload{&VendorID{}}}, inner, c, rand.Reader, maxLen); err == nil {
		t.Error("Fragment with unprotected payloads succeeded")
	}
}

// TestReassemblerRejects checks the Reassembler's bounds and its checks on
// fragment integrity, message ID and Total Fragments.
func TestReassemblerRejects(t *testing.T) {
	c, h, inner := fragFixture(t)
	parseAll := func(msgID uint32, maxLen int) []*Message {
		hh := *h
		hh.MessageID = msgID
		frags, err := Fragment(&hh, inner, c, rand.Reader, maxLen)
		if err != nil {
			t.Fatal(err)
		}
		var ms []*Message
		for _, f := range frags {
			m, err := Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, m)
		}
		return ms
	}
	a := parseAll(1, 1000)
	var r Reassembler
	if _, _, err := r.Add(a[0], c); err != nil {
		t.Fatal(err)
	}
	// Another message ID is dropped while one is being collected.
	if _, _, err := r.Add(parseAll(2, 1000)[1], c); outcome(err) != "drop" {
		t.Errorf("other message ID: %v", err)
	}
	// A fragment that fails the integrity check is dropped and not stored.
	bad := bytes.Clone(a[1].Raw)
	bad[len(bad)-1] ^= 1
	mb, _ := Parse(bad)
	if _, _, err := r.Add(mb, c); outcome(err) != "drop" {
		t.Errorf("tampered fragment: %v", err)
	}
	// Fewer Total Fragments than seen before: dropped.
	if _, _, err := r.Add(parseAll(1, 3000)[0], c); outcome(err) != "drop" {
		t.Errorf("smaller total: %v", err)
	}
	// More Total Fragments: collection restarts with the new size.
	b := parseAll(1, 500)
	var done bool
	var got []Payload
	for _, m := range b {
		var err error
		got, done, err = r.Add(m, c)
		if err != nil {
			t.Fatal(err)
		}
	}
	if !done || !equalPayloads(got, inner) {
		t.Error("restart with a larger total did not reassemble")
	}
	// Bounds.
	small := Reassembler{MaxFragments: 3}
	if _, _, err := small.Add(b[0], c); outcome(err) != "drop" {
		t.Errorf("MaxFragments: %v", err)
	}
	short := Reassembler{MaxLen: 1000}
	for _, m := range b {
		if _, _, err := short.Add(m, c); err != nil {
			if outcome(err) != "drop" {
				t.Errorf("MaxLen: %v", err)
			}
			break
		}
	}
	if _, _, err := r.Add(&Message{Payloads: []Payload{&SK{}}}, c); outcome(err) != "INVALID_SYNTAX" {
		t.Errorf("SK to Reassembler: %v", err)
	}
}
