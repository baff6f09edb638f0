package ikewire

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"
)

// samplePayloads returns one payload of every type, with the options each
// format has (attributes in both formats, SPIs, selector families).
func samplePayloads() []Payload {
	nonce := bytes.Repeat([]byte{0xab}, 32)
	return []Payload{
		&SA{Proposals: []Proposal{
			{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: 12, Attributes: []Attribute{{Type: AttrKeyLength, Value: 256}}},
				{Type: TransformPRF, ID: 5},
				{Type: TransformINTEG, ID: 12},
				{Type: TransformKE, ID: 31},
				{Type: TransformADDKE1, ID: 36},
			}},
			{Num: 2, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{
				{Type: TransformENCR, ID: 20, Attributes: []Attribute{{Type: AttrKeyLength, Value: 128}, {Type: 99, TLV: true, Data: []byte{9, 9}}}},
				{Type: TransformESN, ID: 0},
			}},
			{Num: 3, Protocol: ProtoIKE, SPI: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Transforms: []Transform{{Type: TransformENCR, ID: 28}}},
		}},
		&KE{Group: 31, Data: bytes.Repeat([]byte{0x55}, 32)},
		&IDi{Identification{IDType: ID_FQDN, Data: []byte("west.example")}},
		&Notify{Protocol: ProtoESP, SPI: []byte{0xde, 0xad, 0xbe, 0xef}, Type: NotifyRekeySA},
		&IDr{Identification{IDType: ID_IPV4_ADDR, Data: []byte{192, 0, 2, 1}}},
		&Cert{Encoding: CertX509Signature, Data: []byte{0x30, 0x03, 0x02, 0x01, 0x01}},
		&CertReq{Encoding: CertX509Signature, Data: bytes.Repeat([]byte{1}, 40)},
		&Auth{Method: AuthDigitalSignature, Data: []byte{1, 2, 3}},
		&Nonce{Data: nonce},
		&Notify{Type: NotifyNATDetectionSourceIP, Data: bytes.Repeat([]byte{7}, 20)},
		&Notify{Type: NotifyIKEv2FragmentationSupported},
		&Delete{Protocol: ProtoESP, SPIs: []uint32{0x01020304, 0xa0b0c0d0}},
		&Delete{Protocol: ProtoIKE},
		&VendorID{Data: []byte("goipsec")},
		&TSi{TrafficSelectors{Selectors: []TrafficSelector{
			{Type: TS_IPV4_ADDR_RANGE, StartPort: 0, EndPort: 65535,
				StartAddress: netip.MustParseAddr("10.0.0.0"), EndAddress: netip.MustParseAddr("10.0.0.255")},
			{Type: TS_IPV6_ADDR_RANGE, IPProtocol: 6, StartPort: 443, EndPort: 443,
				StartAddress: netip.MustParseAddr("2001:db8::"), EndAddress: netip.MustParseAddr("2001:db8::ffff")},
			{Type: 10, Data: []byte("system_u:object_r")},
		}}},
		&TSr{TrafficSelectors{Selectors: []TrafficSelector{
			{Type: TS_IPV4_ADDR_RANGE, IPProtocol: 17, StartPort: 500, EndPort: 500,
				StartAddress: netip.MustParseAddr("192.0.2.1"), EndAddress: netip.MustParseAddr("192.0.2.1")},
		}}},
		&CP{CFGType: CFG_REQUEST, Attributes: []CPAttribute{
			{Type: INTERNAL_IP4_ADDRESS}, {Type: INTERNAL_IP4_DNS, Value: []byte{192, 0, 2, 53}},
		}},
		&EAP{Message: []byte{1, 1, 0, 5, 1}},
		&Unknown{Type: 200, Body: []byte("skip me")},
		&Unknown{Type: 201},
	}
}

// TestPayloadRoundTrip marshals a message with every payload type and
// parses it back, and checks each payload alone in a message as well.
func TestPayloadRoundTrip(t *testing.T) {
	all := samplePayloads()
	cases := [][]Payload{all, nil}
	for _, p := range all {
		cases = append(cases, []Payload{p})
	}
	cases = append(cases,
		[]Payload{&Notify{Type: NotifyCookie, Data: []byte{1}}, &SK{NextPayload: PayloadIDi, Body: []byte{1, 2, 3}}},
		[]Payload{&SKF{NextPayload: PayloadIDi, Number: 1, Total: 2, Body: []byte{1, 2, 3}}},
		[]Payload{&SKF{Number: 2, Total: 2}},
	)
	for _, ps := range cases {
		m := &Message{Header: Header{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718,
			Exchange: CREATE_CHILD_SA, Flags: FlagInitiator | FlagResponse, MessageID: 7}, Payloads: ps}
		b, err := m.Marshal()
		if err != nil {
			t.Fatalf("%v: %v", types(ps), err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("%v: %v\n%x", types(ps), err, b)
		}
		if got.Length != uint32(len(b)) || !bytes.Equal(got.Raw, b) {
			t.Errorf("%v: Length %d Raw %d, message %d", types(ps), got.Length, len(got.Raw), len(b))
		}
		got.Length, got.NextPayload = 0, 0
		if !equalMessages(got, m) {
			t.Errorf("%v: round trip differs", types(ps))
		}
	}
}

// TestKnownEncoding checks encodings against bytes laid out by hand from
// the RFC 7296 figures.
func TestKnownEncoding(t *testing.T) {
	m := &Message{
		Header: Header{SPIi: 1, Exchange: IKE_SA_INIT, Flags: FlagInitiator},
		Payloads: []Payload{
			&SA{Proposals: []Proposal{{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: 12, Attributes: []Attribute{{Type: AttrKeyLength, Value: 128}}},
				{Type: TransformKE, ID: 19},
			}}}},
			&Notify{Type: NotifyInvalidKEPayload, Data: []byte{0, 19}},
		},
	}
	want := "0000000000000001" + "0000000000000000" + "21" + "20" + "22" + "08" + "00000000" + "00000046" +
		// SA: next N, length 4+28; proposal: last 0, length 28, num 1, IKE, SPI size 0, 2 transforms
		"29000020" + "0000001c" + "01010002" +
		// transform ENCR AES-CBC with key length 128 (AF=1, type 14), then KE 19
		"0300000c" + "0100000c" + "800e0080" + "00000008" + "04000013" +
		// Notify INVALID_KE_PAYLOAD (17) with the group 19
		"0000000a" + "00000011" + "0013"
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(b) != want {
		t.Errorf("got  %x\nwant %s", b, want)
	}
}

// TestParseErrors feeds malformed messages and checks the notify each maps
// to (RFC 7296, Section 2.21).
func TestParseErrors(t *testing.T) {
	valid, err := (&Message{Header: Header{SPIi: 1, Exchange: IKE_SA_INIT},
		Payloads: []Payload{&Nonce{Data: make([]byte, 16)}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(nextPayload byte, body string) []byte {
		b := append(bytes.Clone(valid[:HeaderLen]), testenv.Unhex(t, body)...)
		b[16] = nextPayload
		b[24], b[25], b[26], b[27] = 0, 0, byte(len(b)>>8), byte(len(b))
		return b
	}
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	tests := []struct {
		name string
		msg  []byte
		want string
		data []byte
	}{
		{"empty", nil, "drop", nil},
		{"short header", valid[:27], "drop", nil},
		{"datagram longer than Length", append(bytes.Clone(valid), 0), "drop", nil},
		{"datagram shorter than Length", edit(func(b []byte) []byte { b[27]++; return b }), "drop", nil},
		{"IKEv1", edit(func(b []byte) []byte { b[17] = 0x10; return b }), "drop", nil},
		{"major 3", edit(func(b []byte) []byte { b[17] = 0x30; return b }), "INVALID_MAJOR_VERSION", nil},
		{"reserved exchange", edit(func(b []byte) []byte { b[18] = 33; return b }), "drop", nil},
		{"payload length < 4", hdr(40, "00000003"), "INVALID_SYNTAX", nil},
		{"payload beyond message", hdr(40, "00000020"+strings.Repeat("00", 16)), "INVALID_SYNTAX", nil},
		{"truncated generic header", hdr(40, "0000"), "INVALID_SYNTAX", nil},
		{"trailing bytes", hdr(41, "0000000800004001"+"00"), "INVALID_SYNTAX", nil},
		{"short nonce", hdr(40, "00000013"+strings.Repeat("00", 15)), "INVALID_SYNTAX", nil},
		{"long nonce", hdr(40, "00000105"+strings.Repeat("00", 257)), "INVALID_SYNTAX", nil},
		{"critical unknown", hdr(40, "31000014"+strings.Repeat("00", 16)+"00800004"), "UNSUPPORTED_CRITICAL_PAYLOAD", []byte{0x31}},
		{"critical IKEv1 type", hdr(2, "00800004"), "UNSUPPORTED_CRITICAL_PAYLOAD", []byte{2}},
		{"SK not last", hdr(46, "0000000400000004"), "INVALID_SYNTAX", nil},
		{"SKF number 0", hdr(53, "0000000800000001"), "drop", nil},
		{"SKF number > total", hdr(53, "0000000800030002"), "drop", nil},
		{"KE without data", hdr(34, "0000000800130000"), "INVALID_SYNTAX", nil},
		{"Notify SPI beyond payload", hdr(41, "0000000803044001"), "INVALID_SYNTAX", nil},
		{"Delete IKE with SPIs", hdr(42, "0000000801000001"), "INVALID_SYNTAX", nil},
		{"Delete ESP SPI size 8", hdr(42, "0000001003080001"+"0000000000000001"), "INVALID_SYNTAX", nil},
		{"Delete ESP count mismatch", hdr(42, "0000000c03040002"+"00000001"), "INVALID_SYNTAX", nil},
		{"Delete unknown protocol", hdr(42, "0000000807000000"), "INVALID_SYNTAX", nil},
		{"TS count mismatch", hdr(44, "0000001802000000"+"070000100000ffff0a0000000a0000ff"), "INVALID_SYNTAX", nil},
		{"TS zero selectors", hdr(44, "0000000800000000"), "INVALID_SYNTAX", nil},
		{"TS IPv4 bad length", hdr(44, "0000001c01000000"+"070000140000ffff0a0000000a0000ff00000000"), "INVALID_SYNTAX", nil},
		{"TS IPv6 length 16", hdr(44, "0000001801000000"+"080000100000ffff0a0000000a0000ff"), "INVALID_SYNTAX", nil},
		{"SA empty", hdr(33, "00000004"), "INVALID_SYNTAX", nil},
		{"SA last substruc 2 on last proposal", hdr(33, "0000000c"+"02000008"+"01010000"), "INVALID_SYNTAX", nil},
		{"SA last substruc 0 with more", hdr(33, "00000014"+"00000008"+"01010000"+"00000008"+"02010000"), "INVALID_SYNTAX", nil},
		{"SA num transforms mismatch", hdr(33, "0000000c"+"00000008"+"01010001"), "INVALID_SYNTAX", nil},
		{"SA transform last 3 on last", hdr(33, "00000014"+"00000010"+"01010001"+"03000008"+"01000014"), "INVALID_SYNTAX", nil},
		{"SA ESP SPI size 0", hdr(33, "0000000c"+"00000008"+"01030000"), "INVALID_SYNTAX", nil},
		{"SA IKE SPI size 4", hdr(33, "00000010"+"0000000c"+"01010400"+"00000001"), "INVALID_SYNTAX", nil},
		{"SA truncated TLV attribute", hdr(33, "00000018"+"00000014"+"01010001"+"0000000c"+"01000014"+"000e0010"), "INVALID_SYNTAX", nil},
		{"CP truncated attribute", hdr(47, "0000000b"+"01000000"+"000100"), "INVALID_SYNTAX", nil},
		{"SK inside", nil, "", nil},
	}
	for _, tt := range tests {
		if tt.want == "" {
			continue
		}
		_, err := Parse(tt.msg)
		if got := outcome(err); got != tt.want {
			t.Errorf("%s: got %s (%v), want %s", tt.name, got, err, tt.want)
			continue
		}
		if pe, ok := err.(*ParseError); ok && !bytes.Equal(pe.Data, tt.data) {
			t.Errorf("%s: notify data %x, want %x", tt.name, pe.Data, tt.data)
		}
	}

	// ParseHeader returns the header fields with INVALID_MAJOR_VERSION so
	// that a response can be addressed.
	b := bytes.Clone(valid)
	b[17] = 0x31
	h, err := ParseHeader(b)
	if outcome(err) != "INVALID_MAJOR_VERSION" || h.SPIi != 1 || h.Exchange != IKE_SA_INIT {
		t.Errorf("ParseHeader: %+v %v", h, err)
	}
	// Reserved flag bits and the minor version are ignored on receive.
	b = bytes.Clone(valid)
	b[17], b[19] = 0x2f, 0xc7
	m, err := Parse(b)
	if err != nil || m.Flags != 0 {
		t.Errorf("reserved bits: %v %v", m, err)
	}
}

// TestMarshalErrors checks that Marshal refuses what it cannot encode.
func TestMarshalErrors(t *testing.T) {
	for _, p := range [][]Payload{
		{&Nonce{Data: make([]byte, 15)}},
		{&SA{}},
		{&Delete{Protocol: ProtoIKE, SPIs: []uint32{1}}},
		{&Delete{Protocol: ProtoESP}},
		{&TSi{}},
		{&TSi{TrafficSelectors{Selectors: []TrafficSelector{{Type: TS_IPV4_ADDR_RANGE,
			StartAddress: netip.MustParseAddr("::1"), EndAddress: netip.MustParseAddr("::1")}}}}},
		{&SK{}, &Nonce{Data: make([]byte, 16)}},
		{&Unknown{Type: PayloadNonce}},
		{nil},
		{&VendorID{Data: make([]byte, 70000)}},
	} {
		if _, err := (&Message{Payloads: p}).Marshal(); err == nil {
			t.Errorf("Marshal(%T) succeeded", p[0])
		}
	}
}
