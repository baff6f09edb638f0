package esp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// Addresses from the documentation ranges (RFC 5737, RFC 3849).
var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("198.51.100.2")
	v4c = netip.MustParseAddr("10.1.0.7")
	v4d = netip.MustParseAddr("10.2.0.9")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
	v6c = netip.MustParseAddr("2001:db8:1::7")
	v6d = netip.MustParseAddr("2001:db8:2::9")
)

const (
	testHead = 128 // headroom of test buffers
	testTail = 512 // tailroom of test buffers
	testSPI  = 0x1234abcd
)

// testKey returns a deterministic key of n bytes; tag varies it.
func testKey(n int, tag byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(i*7) + tag
	}
	return k
}

func mustSuite(t testing.TB, name string) transform.Suite {
	t.Helper()
	s, err := transform.ParseESP(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustESP(t testing.TB, s transform.Suite, key []byte) transform.ESP {
	t.Helper()
	tr, err := s.NewESP(key)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// newPair returns the two ends of one SA of suite name, keyed with the same
// test key. c supplies everything but the transform; a zero SPI becomes
// testSPI.
func newPair(t testing.TB, name string, c Config) (*Outbound, *Inbound) {
	t.Helper()
	s := mustSuite(t, name)
	key := testKey(s.KeyLen(), 1)
	if c.SPI == 0 {
		c.SPI = testSPI
	}
	if c.Mode == sa.Tunnel && !c.Local.IsValid() {
		c.Local, c.Remote = v4a, v4b
	}
	co, ci := c, c
	co.Transform = mustESP(t, s, key)
	ci.Transform = mustESP(t, s, key)
	o, err := NewOutbound(co)
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewInbound(ci)
	if err != nil {
		t.Fatal(err)
	}
	return o, in
}

// ipv4Packet builds an IPv4 packet with a valid header checksum.
func ipv4Packet(src, dst netip.Addr, proto uint8, opts, payload []byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, hl+len(payload))
	b[0] = 4<<4 | byte(hl/4)
	b[1] = 0x28 // DSCP AF11, not ECT
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x4242)
	b[6] = 0x40 // DF
	b[8] = 61
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	binary.BigEndian.PutUint16(b[10:], packet.Checksum(b[:hl], 0))
	copy(b[hl:], payload)
	return b
}

// ipv6Packet builds an IPv6 packet; ext holds extension headers whose chain
// starts with nh.
func ipv6Packet(src, dst netip.Addr, nh uint8, ext, payload []byte) []byte {
	b := make([]byte, 40+len(ext)+len(payload))
	binary.BigEndian.PutUint32(b, 6<<28|0x0a<<20|0x12345)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	b[6] = nh
	b[7] = 33
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], ext)
	copy(b[40+len(ext):], payload)
	return b
}

// icmpEcho returns an ICMP (or ICMPv6) echo request with n data bytes.
func icmpEcho(typ byte, n int) []byte {
	b := make([]byte, 8+n)
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], 0x0101)
	binary.BigEndian.PutUint16(b[6:], uint16(n))
	for i := range n {
		b[8+i] = byte(i)
	}
	binary.BigEndian.PutUint16(b[2:], packet.Checksum(b, 0))
	return b
}

// innerPacket returns a whole IP packet of family v6 carrying n data bytes.
func innerPacket(v6 bool, n int) []byte {
	if v6 {
		return ipv6Packet(v6c, v6d, 58, nil, icmpEcho(128, n))
	}
	return ipv4Packet(v4c, v4d, 1, nil, icmpEcho(8, n))
}

// place copies pkt into a new buffer with test head and tail room.
func place(pkt []byte) (buf []byte, start, end int) {
	buf = make([]byte, testHead+len(pkt), testHead+len(pkt)+testTail)
	copy(buf[testHead:], pkt)
	return buf, testHead, testHead + len(pkt)
}

// seal seals pkt and returns a copy of the resulting packet.
func seal(t testing.TB, o *Outbound, pkt []byte) []byte {
	t.Helper()
	buf, s, e := place(pkt)
	ns, ne, err := o.Seal(buf, s, e)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return bytes.Clone(buf[:cap(buf)][ns:ne])
}

// open opens a copy of pkt and returns a copy of the result.
func open(in *Inbound, pkt []byte) ([]byte, error) {
	buf := bytes.Clone(pkt)
	ns, ne, err := in.Open(buf, 0, len(buf))
	if err != nil {
		return nil, err
	}
	return bytes.Clone(buf[ns:ne]), nil
}

func wantDrop(t testing.TB, err error, want sa.Drop) {
	t.Helper()
	var d sa.Drop
	if !errors.As(err, &d) || d != want {
		t.Fatalf("error %v, want %v", err, want)
	}
}

// sealRaw builds, by hand, an IPv4 packet 192.0.2.1 -> 198.51.100.2 carrying
// an ESP packet whose plaintext (payload, padding, Pad Length, Next Header)
// is plain, protected with tr. plain must be aligned to tr.BlockSize().
func sealRaw(tr transform.ESP, spi uint32, seq uint64, esn bool, plain []byte) []byte {
	iv, icv := tr.IVLen(), tr.ICVLen()
	pkt := make([]byte, 20+8+iv+len(plain)+icv)
	esp := pkt[20:]
	binary.BigEndian.PutUint32(esp, spi)
	binary.BigEndian.PutUint32(esp[4:], uint32(seq))
	copy(esp[8+iv:], plain)
	tr.Seal(esp, seq, esn)
	packet.PutIPv4Header(pkt, v4a, v4b, 50, len(pkt), 64, 1)
	return pkt
}

// withTrailer returns payload followed by pad monotonic padding bytes,
// the Pad Length and Next Header (RFC 4303, Sections 2.4 to 2.6).
func withTrailer(payload []byte, pad int, nh byte) []byte {
	b := bytes.Clone(payload)
	for i := 1; i <= pad; i++ {
		b = append(b, byte(i))
	}
	return append(b, byte(pad), nh)
}

func netipLoopback() netip.Addr { return netip.MustParseAddr("127.0.0.1") }

func netipFrom(s string) netip.Addr { return netip.MustParseAddr(s) }
