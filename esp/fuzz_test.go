package esp

import (
	"bytes"
	"testing"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// fuzzSA is one inbound configuration of FuzzOpen.
type fuzzSA struct {
	suite string
	key   []byte // nil: the test key
	spi   uint32
	mode  sa.Mode
	esn   bool
	encap bool
}

// The Linux reference packets (testdata/fuzz/FuzzOpen) use SPI 0x222 and the
// ASCII key "16bytekey+4bytenonce", so that configurations 0 to 2 and 6 take them
// all the way through decryption.
var linuxGCMKey = []byte("16bytekey+4bytenonce")

var fuzzSAs = []fuzzSA{
	{suite: "aes128gcm16", key: linuxGCMKey, spi: 0x222},
	{suite: "aes128gmac", key: linuxGCMKey, spi: 0x222},
	{suite: "aes128gcm16", key: linuxGCMKey, spi: 0x222, esn: true},
	{suite: "aes256gcm16", spi: testSPI, mode: sa.Transport},
	{suite: "aes128-sha256", spi: testSPI},
	{suite: "chacha20poly1305", spi: testSPI, mode: sa.Transport, esn: true, encap: true},
	{suite: "aes128gmac", key: linuxGCMKey, spi: 0x222, esn: true},
}

func fuzzInbound(t testing.TB, f fuzzSA) (*Inbound, transform.ESP) {
	s := mustSuite(t, f.suite)
	key := f.key
	if key == nil {
		key = testKey(s.KeyLen(), 1)
	}
	in, err := NewInbound(Config{SPI: f.spi, Mode: f.mode, ESN: f.esn, EncapUDP: f.encap, Transform: mustESP(t, s, key)})
	if err != nil {
		t.Fatal(err)
	}
	if f.esn {
		in.Accept(1 << 32) // as the Linux ESN packets need
	}
	return in, mustESP(t, s, key)
}

// FuzzOpen opens arbitrary bytes. cfg&0x0f picks the SA (modulo
// len(fuzzSAs)). Without cfg&0x80, data is the whole received IP packet,
// which exercises parsing up to the ICV check. With cfg&0x80, data is the
// plaintext of an ESP payload (payload, padding, trailer), which the test
// seals by hand so that the ICV verifies, exercising the checks after
// decryption; cfg&0x40 then picks an IPv6 outer header.
func FuzzOpen(f *testing.F) {
	o, _ := newPair(f, "aes128-sha256", Config{})
	f.Add(byte(4), seal(f, o, innerPacket(false, 30)))
	f.Add(byte(0x80), withTrailer(innerPacket(false, 6), 0, 4))
	f.Add(byte(0x83), withTrailer(ipv4Packet(v4a, v4b, 17, nil, make([]byte, 12)), 2, 17))
	f.Add(byte(0xc5), withTrailer(ipv6Packet(v6a, v6b, 6, nil, make([]byte, 20)), 2, 6))

	f.Fuzz(func(t *testing.T, cfg byte, data []byte) {
		fs := fuzzSAs[int(cfg&0x0f)%len(fuzzSAs)]
		in, tr := fuzzInbound(t, fs)
		pkt := data
		if cfg&0x80 != 0 {
			bs := tr.BlockSize()
			plain := data[:len(data)/bs*bs]
			pkt = sealRaw(tr, fs.spi, 1<<32|5, fs.esn, plain)
			if cfg&0x40 != 0 {
				p6 := make([]byte, 20+len(pkt))
				packet.PutIPv6Header(p6, v6a, v6b, 50, len(pkt)-20, 64)
				copy(p6[40:], pkt[20:])
				pkt = p6
			}
		}
		buf := make([]byte, len(pkt)+16)
		copy(buf[8:], pkt)
		ns, ne, err := in.Open(buf, 8, 8+len(pkt))
		if err != nil {
			if _, ok := err.(sa.Drop); !ok {
				t.Fatalf("error %T %v is not an sa.Drop", err, err)
			}
			return
		}
		if ns < 8 || ne < ns || ne > 8+len(pkt) {
			t.Fatalf("result [%d:%d] outside the input [8:%d]", ns, ne, 8+len(pkt))
		}
		out := buf[ns:ne]
		n, _, d := ipLength(out)
		if d != sa.DropNone || n != len(out) {
			t.Fatalf("result is not a whole IP packet: %x", out)
		}
		if fs.mode == sa.Transport && out[0]>>4 == 4 && packet.Checksum(out[:out[0]&15*4], 0) != 0 {
			t.Fatal("bad IPv4 header checksum on the reconstructed packet")
		}
		if bytes.Equal(out, pkt) {
			t.Fatal("Open returned its input")
		}
	})
}
