package swantest

import (
	"testing"
)

// A list-sa event body laid out by hand from the VICI element encoding
// (type byte; names with an 8-bit length; values with a 16-bit big-endian
// length), as charon sends it for one IKE SA with one CHILD_SA.
var listSAEvent = []byte("" +
	"\x01\x02c1" + // section c1
	"\x03\x05state\x00\x0bESTABLISHED" +
	"\x03\x09initiator\x00\x03yes" +
	"\x03\x0dinitiator-spi\x00\x10f6ca463d70346b2d" +
	"\x03\x0bremote-port\x00\x044500" +
	"\x01\x09child-sas" +
	"\x01\x04c1-1" +
	"\x03\x04name\x00\x02c1" +
	"\x03\x05state\x00\x09INSTALLED" +
	"\x03\x06spi-in\x00\x0866678ac1" +
	"\x03\x0apackets-in\x00\x013" +
	"\x04\x08local-ts" + "\x05\x00\x0b10.1.0.0/16" + "\x05\x00\x0b10.9.0.1/32" + "\x06" +
	"\x02" + // c1-1
	"\x02" + // child-sas
	"\x02") // c1

func TestParseListSAEvent(t *testing.T) {
	m, err := decodeViciMsg(listSAEvent)
	if err != nil {
		t.Fatal(err)
	}
	sas, err := parseIKESAs(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 {
		t.Fatalf("%d SAs, want 1", len(sas))
	}
	s := sas[0]
	if s.Name != "c1" || s.State != "ESTABLISHED" || !s.Initiator || s.SPIi != 0xf6ca463d70346b2d || s.RemotePort != 4500 {
		t.Errorf("IKE SA %+v", s)
	}
	c := s.Child("c1")
	if c == nil || c.SPIIn != 0x66678ac1 || c.PacketsIn != 3 || len(c.LocalTS) != 2 || c.LocalTS[1] != "10.9.0.1/32" {
		t.Errorf("child %+v", c)
	}
}

func TestDecodeViciMalformed(t *testing.T) {
	for i := range listSAEvent {
		// Every truncation is an error, none panics.
		if _, err := decodeViciMsg(listSAEvent[:i]); err == nil && i > 0 {
			t.Errorf("truncated to %d bytes: no error", i)
		}
	}
	for _, b := range []string{"\x02", "\x09", "\x01\x05ab", "\x04\x01a\x03"} {
		if _, err := decodeViciMsg([]byte(b)); err == nil {
			t.Errorf("%q: no error", b)
		}
	}
}

func FuzzDecodeVici(f *testing.F) {
	f.Add(listSAEvent)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeViciMsg(b)
		if err == nil {
			parseIKESAs(m)
		}
	})
}
