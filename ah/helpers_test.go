package ah

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
)

// The packets of these tests are built here by hand, byte by byte, from RFC
// 791 and RFC 8200, without the code under test or package packet.

var (
	addrA  = netip.MustParseAddr("192.0.2.1")
	addrB  = netip.MustParseAddr("198.51.100.2")
	addrR1 = netip.MustParseAddr("203.0.113.1")
	addrR2 = netip.MustParseAddr("203.0.113.2")
	addr6A = netip.MustParseAddr("2001:db8::1")
	addr6B = netip.MustParseAddr("2001:db8:1::2")
	in4S   = netip.MustParseAddr("10.1.0.1")
	in4D   = netip.MustParseAddr("10.2.0.1")
	in6S   = netip.MustParseAddr("fd00:1::1")
	in6D   = netip.MustParseAddr("fd00:2::1")
)

const testSPI = 0x0000c0de

// testKey returns a fixed key of n bytes.
func testKey(n int, salt byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(i*7) ^ salt
	}
	return k
}

// suites returns every AH suite with a fixed key.
func suites(t testing.TB) []transform.Suite {
	t.Helper()
	s := transform.AHSuites()
	if len(s) == 0 {
		t.Fatal("transform.AHSuites is empty")
	}
	return s
}

// integ returns the Integrity of suite s keyed with a fixed key.
func integ(t testing.TB, s transform.Suite) transform.Integrity {
	t.Helper()
	i, err := s.NewAH(testKey(s.KeyLen(), 0x5a))
	if err != nil {
		t.Fatalf("%s: NewAH: %v", s.Name, err)
	}
	return i
}

// pair returns the two ends of one SA.
func pair(t testing.TB, c Config) (*Outbound, *Inbound) {
	t.Helper()
	if c.SPI == 0 {
		c.SPI = testSPI
	}
	o, err := NewOutbound(c)
	if err != nil {
		t.Fatalf("NewOutbound: %v", err)
	}
	in, err := NewInbound(c)
	if err != nil {
		t.Fatalf("NewInbound: %v", err)
	}
	return o, in
}

// csum is the Internet checksum of RFC 1071, written out for the tests.
func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// payload returns n bytes of an upper-layer packet (a UDP header and data).
func payload(n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b[0:], 4500)
	binary.BigEndian.PutUint16(b[2:], 53)
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	for i := 8; i < n; i++ {
		b[i] = byte(i * 13)
	}
	return b
}

// ipv4Pkt builds an IPv4 packet (RFC 791, Section 3.1) with TOS 0xb8, ID
// 0x1234, DF, TTL 61 and a valid checksum. opts must be a multiple of 4 long.
func ipv4Pkt(src, dst netip.Addr, proto byte, opts, pl []byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, hl+len(pl))
	b[0] = 0x40 | byte(hl/4)
	b[1] = 0xb8
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	b[6] = 0x40
	b[8] = 61
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	copy(b[hl:], pl)
	binary.BigEndian.PutUint16(b[10:], csum(b[:hl]))
	return b
}

// ipv6Pkt builds an IPv6 packet (RFC 8200, Section 3) with traffic class
// 0xb8, flow label 0x12345 and hop limit 61; ext is the extension headers
// and nh the first next header.
func ipv6Pkt(src, dst netip.Addr, nh byte, ext, pl []byte) []byte {
	b := make([]byte, 40+len(ext)+len(pl))
	binary.BigEndian.PutUint32(b[0:], 6<<28|0xb8<<20|0x12345)
	binary.BigEndian.PutUint16(b[4:], uint16(len(ext)+len(pl)))
	b[6] = nh
	b[7] = 61
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], ext)
	copy(b[40+len(ext):], pl)
	return b
}

// IPv4 options of RFC 4302, Appendix A1, both kinds: 40 bytes.
var v4Options = []byte{
	1,                                // NOP (immutable)
	7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, // Record Route, room for 2 (mutable)
	130, 11, 0xf1, 0x35, 0, 0, 0, 0, 0, 0, 0, // Security (immutable)
	1,            // NOP
	148, 4, 0, 0, // Router Alert (immutable)
	68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, // Time Stamp, room for 2 (mutable)
}

// v6HopByHop is a Hop-by-Hop Options header (RFC 8200, Section 4.3) of 16
// bytes without its next header byte: Router Alert (type 5, immutable data),
// an experimental option 0x3e (RFC 4727; the 0x20 bit says its data may
// change en route), PadN.
func v6HopByHop(nh byte) []byte {
	return []byte{nh, 1, 5, 2, 0, 0, 0x3e, 4, 0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 0, 0}
}

// v6DstOpts is a Destination Options header of 16 bytes with the
// experimental options 0x1e (immutable data) and 0x3e (mutable data, RFC
// 4727) and PadN.
func v6DstOpts(nh byte) []byte {
	return []byte{nh, 1, 0x1e, 2, 0x11, 0x22, 0x3e, 4, 1, 2, 3, 4, 1, 2, 0, 0}
}

// v6Routing is a Type 2 Routing header (RFC 6275, Section 6.4) with
// Segments Left 0: already in the form it has at the receiver.
func v6Routing(nh byte) []byte {
	r := []byte{nh, 2, 2, 0, 0, 0, 0, 0}
	a := netip.MustParseAddr("2001:db8:ffff::9").As16()
	return append(r, a[:]...)
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// variant is one kind of packet to protect.
type variant struct {
	name   string
	mode   sa.Mode
	outer6 bool // tunnel: outer family
	pkt    func() []byte
}

var variants = []variant{
	{"tunnel/4in4", sa.Tunnel, false, func() []byte { return ipv4Pkt(in4S, in4D, 17, nil, payload(100)) }},
	{"tunnel/6in4", sa.Tunnel, false, func() []byte { return ipv6Pkt(in6S, in6D, 17, nil, payload(100)) }},
	{"tunnel/4in6", sa.Tunnel, true, func() []byte { return ipv4Pkt(in4S, in4D, 17, nil, payload(100)) }},
	{"tunnel/6in6", sa.Tunnel, true, func() []byte { return ipv6Pkt(in6S, in6D, 17, nil, payload(100)) }},
	{"transport/4", sa.Transport, false, func() []byte { return ipv4Pkt(addrA, addrB, 17, nil, payload(100)) }},
	{"transport/4opts", sa.Transport, false, func() []byte { return ipv4Pkt(addrA, addrB, 17, v4Options, payload(100)) }},
	{"transport/6", sa.Transport, true, func() []byte { return ipv6Pkt(addr6A, addr6B, 17, nil, payload(100)) }},
	{"transport/6ext", sa.Transport, true, func() []byte {
		// Hop-by-Hop, Destination Options (before Routing), Routing,
		// then AH goes here, then Destination Options for the final
		// destination (RFC 8200, Section 4.1).
		ext := cat(v6HopByHop(60), v6DstOpts(43), v6Routing(60), v6DstOpts(17))
		return ipv6Pkt(addr6A, addr6B, 0, ext, payload(100))
	}},
}

// config returns the Config of variant v.
func (v variant) config(i transform.Integrity, esn bool) Config {
	c := Config{Mode: v.mode, Integrity: i, ESN: esn}
	if v.mode == sa.Tunnel {
		c.Local, c.Remote = addrA, addrB
		if v.outer6 {
			c.Local, c.Remote = addr6A, addr6B
		}
	}
	return c
}

// headroom is more than any Overhead.
const headroom = 128

// place copies p into a new buffer after headroom bytes, with tail spare
// bytes after it, and returns the buffer and the bounds of p.
func place(p []byte, tail int) ([]byte, int, int) {
	buf := make([]byte, headroom+len(p)+tail)
	copy(buf[headroom:], p)
	return buf, headroom, headroom + len(p)
}

// seal protects a copy of p and returns the AH packet.
func seal(t testing.TB, o *Outbound, p []byte) []byte {
	t.Helper()
	buf, s, e := place(p, 0)
	ns, ne, err := o.Seal(buf, s, e)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return append([]byte(nil), buf[ns:ne]...)
}

// open verifies a copy of p and returns the result.
func open(in *Inbound, p []byte) ([]byte, error) {
	buf, s, e := place(p, 0)
	ns, ne, err := in.Open(buf, s, e)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), buf[ns:ne]...), nil
}
