package packet

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"

	"github.com/goipsec/goipsec/sa"
)

// TestChecksumRFC1071 uses the numerical example of RFC 1071, Section 3:
// the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2, so the checksum is 220d.
func TestChecksumRFC1071(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(b, 0); got != 0x220d {
		t.Fatalf("Checksum = %#04x, want 0x220d", got)
	}
	// Byte order independence (RFC 1071, Section 2 (B)): the checksum of
	// the data followed by its checksum is zero.
	if got := Checksum(append(b, 0x22, 0x0d), 0); got != 0 {
		t.Fatalf("Checksum over data and checksum = %#04x, want 0", got)
	}
}

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 2100)
	for i := range 5000 {
		n := r.IntN(len(buf) - 8)
		if i < 300 {
			n = i // every short length
		}
		off := r.IntN(8) // unaligned starts
		b := buf[off : off+n]
		switch i % 3 {
		case 0:
			for j := range b {
				b[j] = byte(r.Uint32())
			}
		case 1:
			for j := range b {
				b[j] = 0xff // carries everywhere
			}
		case 2:
			for j := range b {
				b[j] = 0
			}
		}
		initial := r.Uint32()
		if i%5 == 0 {
			initial = 0xffffffff
		}
		if got, want := Checksum(b, initial), refChecksum(b, initial); got != want {
			t.Fatalf("len %d initial %#x: Checksum = %#04x, reference %#04x", n, initial, got, want)
		}
	}
}

// TestIPv4ChecksumsOfInnerPackets checks the header checksums of the IPv4
// packets that the Linux kernel and tcpdump's captures carry inside ESP; the
// source files state that they are valid.
func TestIPv4ChecksumsOfInnerPackets(t *testing.T) {
	for _, p := range loadInnerPackets(t) {
		h := IPv4(p.pkt)
		if !h.IsChecksumValid() {
			t.Errorf("%s: IsChecksumValid = false", p.name)
		}
		if got, want := h.ComputeChecksum(), binary.BigEndian.Uint16(p.pkt[10:]); got != want {
			t.Errorf("%s: ComputeChecksum = %#04x, header has %#04x", p.name, got, want)
		}
		if p.proto == 1 {
			// ICMP checksums cover the message only (RFC 792).
			if c := Checksum(p.pkt[h.HeaderLen():], 0); c != 0 {
				t.Errorf("%s: ICMP checksum does not verify (%#04x)", p.name, c)
			}
		}
	}
}

func TestDecodeInnerPackets(t *testing.T) {
	for _, p := range loadInnerPackets(t) {
		var info Info
		if err := Decode(p.pkt, &info); err != nil {
			t.Errorf("%s: Decode: %v", p.name, err)
			continue
		}
		want := Info{
			Version:  4,
			Src:      netip.MustParseAddr(p.src),
			Dst:      netip.MustParseAddr(p.dst),
			Proto:    p.proto,
			L4Offset: 20,
			TotalLen: p.length,
			Split:    Split{Version: 4, HdrLen: 20, NextHdrOff: 9, TotalLen: p.length},
		}
		if p.icmpType >= 0 {
			want.HasICMP = true
			want.ICMPType = uint8(p.icmpType)
			want.ICMPCode = 0 // echo request and reply have code 0 (RFC 792)
		}
		if info != want {
			t.Errorf("%s: Decode =\n%+v, want\n%+v", p.name, info, want)
		}
	}
}

// udpFrames are the frames of two tcpdump captures whose IPv4 UDP checksums
// were found valid by an independent Python RFC 1071 implementation (the
// others carry zero or, from checksum offload, partial checksums).
var udpFrames = map[string][]int{
	"isakmp4500.pcap":            {3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 18, 20, 21, 23},
	"ikev2_notify_redirect.pcap": {2, 3, 4},
}

func TestFixTransportChecksumCaptures(t *testing.T) {
	td := testenv.Testdata(t)
	for file, frames := range udpFrames {
		pkts := map[int][]byte{} // the IPv4 packets by frame number
		for _, p := range testenv.ReadCapture(t, filepath.Join(td, "pcap", file)) {
			if p.IP[0]>>4 == 4 {
				pkts[p.Frame] = p.IP
			}
		}
		for _, n := range frames {
			orig, ok := pkts[n]
			if !ok {
				t.Fatalf("%s: frame %d is not IPv4", file, n)
			}
			if !IPv4(orig).IsChecksumValid() {
				t.Errorf("%s frame %d: IPv4 header checksum invalid", file, n)
			}
			pkt := bytes.Clone(orig)
			hl := IPv4(pkt).HeaderLen()
			want := binary.BigEndian.Uint16(pkt[hl+6:])
			pkt[hl+6], pkt[hl+7] = 0x12, 0x34 // wrong, not zero
			if err := FixTransportChecksum(pkt); err != nil {
				t.Fatalf("%s frame %d: %v", file, n, err)
			}
			if got := binary.BigEndian.Uint16(pkt[hl+6:]); got != want {
				t.Errorf("%s frame %d: UDP checksum %#04x, capture has %#04x", file, n, got, want)
			}
			// A NAT rewrote the source: the fixed checksum verifies
			// against the reference over the new pseudo header.
			IPv4(pkt).SetSrc(netip.MustParseAddr("203.0.113.77"))
			IPv4(pkt).UpdateChecksum()
			if err := FixTransportChecksum(pkt); err != nil {
				t.Fatal(err)
			}
			if c := refTransport(pkt, hl, 17); c != 0 {
				t.Errorf("%s frame %d: after NAT, checksum does not verify", file, n)
			}
		}
		// A zero UDP checksum over IPv4 means none and stays zero.
		for n, orig := range pkts {
			hl := IPv4(orig).HeaderLen()
			if orig[9] == 17 && orig[hl+6] == 0 && orig[hl+7] == 0 {
				pkt := bytes.Clone(orig)
				if err := FixTransportChecksum(pkt); err != nil || !bytes.Equal(pkt, orig) {
					t.Errorf("%s frame %d: zero UDP checksum changed (%v)", file, n, err)
				}
			}
		}
	}
}

// refTransport verifies an IPv4 transport checksum with the reference
// implementation and a pseudo header built byte by byte (RFC 768).
func refTransport(pkt []byte, hl int, proto uint8) uint16 {
	l4 := pkt[hl:binary.BigEndian.Uint16(pkt[2:])]
	ph := append(bytes.Clone(pkt[12:20]), 0, proto, byte(len(l4)>>8), byte(len(l4)))
	return refChecksum(append(ph, l4...), 0)
}

// TestFixTransportChecksumSeeds uses the seed packets whose checksums
// testdata/gen_fuzz_seeds.py computed in Python: TCP, UDP and ICMPv6 over
// IPv4 and IPv6, with options and extension headers.
func TestFixTransportChecksumSeeds(t *testing.T) {
	for _, tc := range []struct {
		seed    string
		csumOff int // from the start of the packet
	}{
		{"ipv4-tcp", 20 + 16},
		{"ipv4-tcp-options", 24 + 16},
		{"ipv4-udp", 20 + 6},
		{"ipv6-tcp", 40 + 16},
		{"ipv6-udp", 40 + 6},
		{"ipv6-icmpv6", 40 + 2},
		{"ipv6-dstopts-udp", 48 + 6},
		{"ipv6-ext-chain", 88 + 6}, // with an atomic fragment (RFC 6946)
	} {
		orig := fuzzSeed(t, tc.seed)
		pkt := bytes.Clone(orig)
		pkt[tc.csumOff], pkt[tc.csumOff+1] = 0xde, 0xad
		if err := FixTransportChecksum(pkt); err != nil {
			t.Errorf("%s: %v", tc.seed, err)
			continue
		}
		if !bytes.Equal(pkt, orig) {
			t.Errorf("%s: checksum %x, Python computed %x", tc.seed, pkt[tc.csumOff:tc.csumOff+2], orig[tc.csumOff:tc.csumOff+2])
		}
	}
	// Fragments cannot be fixed; ICMP over IPv4 and ESP are left alone.
	for seed, want := range map[string]error{
		"ipv4-udp-first-fragment": sa.DropUnsupported,
		"ipv4-nonfirst-fragment":  sa.DropUnsupported,
		"ipv4-icmp-scapy":         nil,
		"ipv4-esp":                nil,
		"ipv6-esp":                nil,
		"ipv4-truncated":          sa.DropTruncated,
	} {
		pkt := fuzzSeed(t, seed)
		orig := bytes.Clone(pkt)
		err := FixTransportChecksum(pkt)
		if !errors.Is(err, want) {
			t.Errorf("%s: FixTransportChecksum = %v, want %v", seed, err, want)
		}
		if !bytes.Equal(pkt, orig) {
			t.Errorf("%s: packet changed", seed)
		}
	}
}

func TestIPv4View(t *testing.T) {
	pkt, _ := hex.DecodeString("450000548a7340003f019c080ac800010a6400010800fb04015f0001")
	h := IPv4(pkt)
	if h.Version() != 4 || h.IHL() != 5 || h.HeaderLen() != 20 || h.TOS() != 0 ||
		h.TotalLength() != 84 || h.ID() != 0x8a73 || h.Flags() != IPv4FlagDF ||
		h.FragOff() != 0 || h.TTL() != 63 || h.Protocol() != 1 || h.Checksum() != 0x9c08 ||
		h.Src() != netip.MustParseAddr("10.200.0.1") || h.Dst() != netip.MustParseAddr("10.100.0.1") ||
		len(h.Options()) != 0 {
		t.Fatalf("accessors disagree with the header %x", pkt[:20])
	}
	h.SetFlagsFragOff(IPv4FlagMF, 185)
	if h.Flags() != IPv4FlagMF || h.FragOff() != 185 {
		t.Fatalf("SetFlagsFragOff: flags %d off %d", h.Flags(), h.FragOff())
	}
}

// TestPutIPv4Header rebuilds headers the Linux kernel wrote (from
// esp/scapy-linux-reference.json) byte for byte, checksum included.
func TestPutIPv4Header(t *testing.T) {
	for _, tc := range []struct {
		hdr      string
		src, dst string
		id       uint16
		ttl      uint8
		df       bool
	}{
		{"450000548a7340003f019c080ac800010a640001", "10.200.0.1", "10.100.0.1", 0x8a73, 63, true},
		{"45000054bc5300004001a9590a7d00010a7d0002", "10.125.0.1", "10.125.0.2", 0xbc53, 64, false},
	} {
		want, _ := hex.DecodeString(tc.hdr)
		b := make([]byte, 24)
		for i := range b {
			b[i] = 0xee // PutIPv4Header must write every byte
		}
		PutIPv4Header(b, netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst), 1, 84, tc.ttl, tc.id)
		if tc.df {
			IPv4(b).SetFlagsFragOff(IPv4FlagDF, 0)
			IPv4(b).UpdateChecksum()
		}
		if !bytes.Equal(b[:20], want) {
			t.Errorf("PutIPv4Header = %x, want %x", b[:20], want)
		}
		if b[20] != 0xee {
			t.Error("PutIPv4Header wrote past 20 bytes")
		}
	}
}

func TestIPv6ViewAndPut(t *testing.T) {
	want := fuzzSeed(t, "ipv6-udp")
	b := make([]byte, 40)
	for i := range b {
		b[i] = 0xee
	}
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	PutIPv6Header(b, src, dst, 17, len(want)-40, 64)
	if !bytes.Equal(b, want[:40]) {
		t.Fatalf("PutIPv6Header = %x, want %x", b, want[:40])
	}
	h := IPv6(b)
	if h.Version() != 6 || h.PayloadLength() != uint16(len(want)-40) || h.NextHeader() != 17 ||
		h.HopLimit() != 64 || h.Src() != src || h.Dst() != dst || h.TrafficClass() != 0 || h.FlowLabel() != 0 {
		t.Fatal("IPv6 accessors disagree")
	}
	h.SetTrafficClass(0xb9)
	h.SetFlowLabel(0xabcde)
	if h.Version() != 6 || h.TrafficClass() != 0xb9 || h.FlowLabel() != 0xabcde {
		t.Fatalf("traffic class %#x flow label %#x", h.TrafficClass(), h.FlowLabel())
	}
	if !bytes.Equal(b[:4], []byte{0x6b, 0x9a, 0xbc, 0xde}) {
		t.Fatalf("first word %x", b[:4])
	}
	h.SetHopLimit(1)
	h.SetNextHeader(50)
	h.SetPayloadLength(9)
	if h.HopLimit() != 1 || h.NextHeader() != 50 || h.PayloadLength() != 9 {
		t.Fatal("IPv6 setters")
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	// IPv6 (RFC 8200, Section 8.1): src, dst, 32-bit length, 3 zero bytes,
	// next header; built byte by byte and summed by the reference.
	src, dst := netip.MustParseAddr("2001:db8:ffff::ffff"), netip.MustParseAddr("fe80::1")
	s16, d16 := src.As16(), dst.As16()
	ph := append(append(s16[:], d16[:]...), 0x00, 0x01, 0x23, 0x45, 0, 0, 0, 58)
	if got, want := Checksum(nil, PseudoHeaderSum(src, dst, 58, 0x12345)), refChecksum(ph, 0); got != want {
		t.Fatalf("IPv6 pseudo header: %#04x, reference %#04x", got, want)
	}
	s4, d4 := netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("10.0.0.1")
	ph = []byte{255, 255, 255, 255, 10, 0, 0, 1, 0, 6, 0xff, 0xff}
	if got, want := Checksum(nil, PseudoHeaderSum(s4, d4, 6, 0xffff)), refChecksum(ph, 0); got != want {
		t.Fatalf("IPv4 pseudo header: %#04x, reference %#04x", got, want)
	}
}

// v6 builds an IPv6 packet with the given next header and payload.
func v6(nh uint8, payload ...[]byte) []byte {
	var p []byte
	for _, x := range payload {
		p = append(p, x...)
	}
	b := make([]byte, 40, 40+len(p))
	PutIPv6Header(b, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), nh, len(p), 64)
	return append(b, p...)
}

// ext is an extension header with next header nh and (n8+1)*8 bytes.
func ext(nh uint8, n8 uint8) []byte {
	b := make([]byte, (int(n8)+1)*8)
	b[0], b[1] = nh, n8
	return b
}

// frag is a fragment header (RFC 8200, Section 4.5).
func frag(nh uint8, off uint16, m bool) []byte {
	b := []byte{nh, 0, 0, 0, 0, 0, 0xab, 0xcd}
	v := off << 3
	if m {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	return b
}

var udp8 = []byte{0x01, 0xf4, 0x11, 0x94, 0, 8, 0, 0} // 500 -> 4500

func TestDecodeIPv6(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		want Info // Version, Src, Dst, TotalLen and those of Split filled below
	}{
		{"udp", v6(17, udp8), Info{Proto: 17, L4Offset: 40, HasPorts: true, SrcPort: 500, DstPort: 4500, Split: Split{HdrLen: 40, NextHdrOff: 6}}},
		{"chain", v6(0, ext(60, 0), ext(43, 0), ext(44, 1), frag(60, 0, false), ext(17, 0), udp8),
			Info{Proto: 17, L4Offset: 88, HasPorts: true, SrcPort: 500, DstPort: 4500, Split: Split{HdrLen: 80, NextHdrOff: 72, Fragment: true}}},
		{"first fragment", v6(44, frag(17, 0, true), udp8),
			Info{Proto: 17, L4Offset: 48, HasPorts: true, SrcPort: 500, DstPort: 4500, IsFragment: true, FirstFragment: true, Split: Split{HdrLen: 48, NextHdrOff: 40, Fragment: true}}},
		{"first fragment short", v6(44, frag(6, 0, true), udp8),
			Info{Proto: 6, L4Offset: 48, IsFragment: true, FirstFragment: true, Split: Split{HdrLen: 48, NextHdrOff: 40, Fragment: true}}},
		{"non-first fragment", v6(44, frag(17, 3, false), udp8),
			Info{Proto: 17, L4Offset: 48, IsFragment: true, Split: Split{HdrLen: 48, NextHdrOff: 40, Fragment: true}}},
		{"non-first fragment to routing", v6(44, frag(43, 1, true), []byte{0xff}),
			Info{Proto: 43, L4Offset: 48, IsFragment: true, Split: Split{HdrLen: 48, NextHdrOff: 40, Fragment: true}}},
		{"esp", v6(50, make([]byte, 16)), Info{Proto: 50, L4Offset: 40, Split: Split{HdrLen: 40, NextHdrOff: 6}}},
		{"ah after dstopts", v6(60, ext(51, 0), make([]byte, 16)), Info{Proto: 51, L4Offset: 48, Split: Split{HdrLen: 40, NextHdrOff: 6}}},
		{"no next header", v6(59), Info{Proto: 59, L4Offset: 40, Split: Split{HdrLen: 40, NextHdrOff: 6}}},
		{"icmpv6", v6(58, []byte{135, 0, 0, 0}), Info{Proto: 58, L4Offset: 40, HasICMP: true, ICMPType: 135, Split: Split{HdrLen: 40, NextHdrOff: 6}}},
		{"icmpv4 in ipv6", v6(1, []byte{8, 0, 0, 0}), Info{Proto: 1, L4Offset: 40, Split: Split{HdrLen: 40, NextHdrOff: 6}}},
	} {
		tc.want.Version = 6
		tc.want.Src = netip.MustParseAddr("2001:db8::1")
		tc.want.Dst = netip.MustParseAddr("2001:db8::2")
		tc.want.TotalLen = len(tc.pkt)
		tc.want.Split.Version, tc.want.Split.TotalLen = 6, len(tc.pkt)
		var info Info
		if err := Decode(append(tc.pkt, 0, 0, 0), &info); err != nil { // trailing bytes allowed
			t.Errorf("%s: %v", tc.name, err)
		} else if info != tc.want {
			t.Errorf("%s: Decode =\n%+v, want\n%+v", tc.name, info, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	v4 := func(mod func([]byte)) []byte {
		b := fuzzSeed(t, "ipv4-tcp")
		mod(b)
		return b
	}
	jumbo := v6(0, ext(17, 0))
	jumbo[4], jumbo[5] = 0, 0
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, sa.DropTruncated},
		{"version 5", []byte{0x50, 0, 0, 0}, sa.DropMalformed},
		{"version 0", make([]byte, 60), sa.DropMalformed},
		{"ipv4 short", v4(func([]byte) {})[:19], sa.DropTruncated},
		{"ihl 4", v4(func(b []byte) { b[0] = 0x44 }), sa.DropMalformed},
		{"ihl past end", v4(func(b []byte) { b[0] = 0x4f }), sa.DropTruncated},
		{"total below header", v4(func(b []byte) { b[2], b[3] = 0, 19 }), sa.DropMalformed},
		{"total past end", v4(func(b []byte) { b[3]++ }), sa.DropTruncated},
		{"tcp header cut", fuzzSeed(t, "ipv4-short-tcp"), sa.DropTruncated},
		{"ipv4 truncated seed", fuzzSeed(t, "ipv4-truncated"), sa.DropTruncated},
		{"ipv6 short", v6(59)[:39], sa.DropTruncated},
		{"ipv6 payload past end", v6(17, udp8)[:47], sa.DropTruncated},
		{"ipv6 udp cut", v6(17, udp8[:7]), sa.DropTruncated},
		{"ipv6 ext cut", v6(43, ext(17, 3))[:60], sa.DropTruncated},
		{"ipv6 ext length past payload", v6(60, ext(17, 0)[:4]), sa.DropTruncated},
		{"ipv6 ext length byte missing", v6(60, []byte{17}), sa.DropTruncated},
		{"ipv6 fragment cut", v6(44, []byte{17, 0, 0, 0}), sa.DropTruncated},
		{"hop-by-hop not first", v6(60, ext(0, 0), ext(17, 0), udp8), sa.DropMalformed},
		{"jumbogram", jumbo, sa.DropUnsupported},
	} {
		var info Info
		if err := Decode(tc.pkt, &info); err != tc.want {
			t.Errorf("%s: Decode = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A first fragment too short for its TCP header is accepted without ports.
	b := v4(func(b []byte) { b[6] = 0x20 }) // MF
	b = b[:30]
	b[2], b[3] = 0, 30
	var info Info
	if err := Decode(b, &info); err != nil || info.HasPorts || !info.IsFragment || !info.FirstFragment {
		t.Errorf("short first fragment: %v %+v", err, info)
	}
}

func TestDecodeIPv4Fragments(t *testing.T) {
	var info Info
	if err := Decode(fuzzSeed(t, "ipv4-udp-first-fragment"), &info); err != nil ||
		!info.IsFragment || !info.FirstFragment || !info.HasPorts || info.SrcPort != 53 {
		t.Errorf("first fragment: %v %+v", err, info)
	}
	if err := Decode(fuzzSeed(t, "ipv4-nonfirst-fragment"), &info); err != nil ||
		!info.IsFragment || info.FirstFragment || info.HasPorts || info.Proto != 17 {
		t.Errorf("non-first fragment: %v %+v", err, info)
	}
	if err := Decode(fuzzSeed(t, "ipv4-trailing"), &info); err != nil || info.TotalLen != 28 {
		t.Errorf("trailing bytes: %v %+v", err, info)
	}
}

func TestTransportSplit(t *testing.T) {
	for _, tc := range []struct {
		name          string
		pkt           []byte
		hdrLen, nhOff int
		err           error
	}{
		{"ipv4", fuzzSeed(t, "ipv4-tcp"), 20, 9, nil},
		{"ipv4 options", fuzzSeed(t, "ipv4-tcp-options"), 24, 9, nil},
		{"ipv6 udp", v6(17, udp8), 40, 6, nil},
		{"ipv6 existing esp", v6(50, make([]byte, 16)), 40, 6, nil},
		{"ipv6 hop-by-hop", v6(0, ext(17, 0), udp8), 48, 40, nil},
		// Final-destination options go after ESP (RFC 4303, Section 3.1.1).
		{"ipv6 dstopts", v6(60, ext(17, 0), udp8), 40, 6, nil},
		{"ipv6 hop-by-hop dstopts", v6(0, ext(60, 0), ext(17, 0), udp8), 48, 40, nil},
		// Hop-by-hop, options for the routing header's destinations, routing,
		// fragment stay before ESP; the final-destination options go after.
		{"ipv6 chain", v6(0, ext(60, 0), ext(43, 0), ext(44, 1), frag(60, 0, false), ext(17, 0), udp8), 80, 72, nil},
		{"ipv6 routing dstopts", v6(43, ext(60, 0), ext(6, 0), udp8), 48, 40, nil},
		{"ipv6 routing ah", v6(43, ext(51, 0), make([]byte, 16)), 48, 40, nil},
		{"empty", nil, 0, 0, sa.DropTruncated},
		{"version 7", []byte{0x70}, 0, 0, sa.DropMalformed},
		{"ipv4 cut", fuzzSeed(t, "ipv4-tcp")[:10], 0, 0, sa.DropTruncated},
		{"ipv6 payload past end", v6(17, udp8)[:47], 0, 0, sa.DropTruncated},
		{"ipv6 ext cut", v6(43, ext(17, 3))[:60], 0, 0, sa.DropTruncated},
		{"ipv6 dstopts cut", v6(60), 0, 0, sa.DropTruncated},
		{"hop-by-hop not first", v6(43, ext(0, 0), ext(17, 0)), 0, 0, sa.DropMalformed},
	} {
		hl, nho, err := TransportSplit(tc.pkt)
		if hl != tc.hdrLen || nho != tc.nhOff || err != tc.err {
			t.Errorf("%s: TransportSplit = %d, %d, %v; want %d, %d, %v", tc.name, hl, nho, err, tc.hdrLen, tc.nhOff, tc.err)
		}
	}
}

func TestAllocs(t *testing.T) {
	v4 := fuzzSeed(t, "ipv4-tcp")
	chain := v6(0, ext(60, 0), ext(43, 0), ext(44, 1), frag(60, 0, false), ext(17, 0), udp8)
	binary.BigEndian.PutUint16(chain[len(chain)-4:], 8)
	var info Info
	n := testing.AllocsPerRun(100, func() {
		if Decode(v4, &info) != nil || Decode(chain, &info) != nil {
			panic("decode")
		}
		if _, _, err := TransportSplit(chain); err != nil {
			panic(err)
		}
		if FixTransportChecksum(v4) != nil || FixTransportChecksum(chain) != nil {
			panic("fix")
		}
		_ = Checksum(v4, 0) + IPv4(v4).ComputeChecksum()
		_ = PseudoHeaderSum(info.Src, info.Dst, 17, 8)
		_, _ = IPv6(chain).Src(), IPv4(v4).Dst()
	})
	if n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Checksum(buf, 0)
	}
}

func BenchmarkDecode(b *testing.B) {
	b.Run("ipv4-tcp", func(b *testing.B) {
		pkt := []byte("\x45\x00\x00\x28\x00\x00\x00\x00\x40\x06\x00\x00\xc0\x00\x02\x01\xc6\x33\x64\x02" +
			"\x30\x39\x01\xbb\x00\x00\x00\x01\x00\x00\x00\x00\x50\x02\xff\xff\x00\x00\x00\x00")
		var info Info
		for b.Loop() {
			_ = Decode(pkt, &info)
		}
	})
	b.Run("ipv6-chain", func(b *testing.B) {
		pkt := v6(0, ext(60, 0), ext(43, 0), ext(44, 1), frag(60, 0, false), ext(17, 0), udp8)
		var info Info
		for b.Loop() {
			_ = Decode(pkt, &info)
		}
	})
}

// TestSplitTransport checks SplitTransport's fragment report and that the
// one IPv6 walker (IPv6Ext) stops, crosses and fails as TransportSplit and
// Decode expect: a Fragment header, atomic or not, is reported; hop-by-hop
// options after the first header and unknown headers are not crossed.
func TestSplitTransport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pkt      []byte
		hdrLen   int
		fragment bool
	}{
		{"ipv4", fuzzSeed(t, "ipv4-tcp"), 20, false},
		{"ipv4 fragment", fuzzSeed(t, "ipv4-nonfirst-fragment"), 20, true},
		{"ipv6 udp", v6(17, udp8), 40, false},
		{"ipv6 atomic fragment", v6(44, frag(17, 0, false), udp8), 48, true},
		{"ipv6 chain", v6(0, ext(60, 0), ext(43, 0), ext(44, 1), frag(60, 0, false), ext(17, 0), udp8), 80, true},
	} {
		var sp Split
		if err := SplitTransport(tc.pkt, &sp); err != nil || sp.HdrLen != tc.hdrLen || sp.Fragment != tc.fragment {
			t.Errorf("%s: SplitTransport = %+v, %v; want HdrLen %d, Fragment %v", tc.name, sp, err, tc.hdrLen, tc.fragment)
		}
	}
	w := WalkIPv6(v6(43, ext(0, 0), ext(17, 0)))
	if _, err := w.Skip(); err != nil || w.NextHeader != 0 || w.NextHeaderOff != 40 || w.Off != 48 {
		t.Fatalf("routing: %v %+v", err, w)
	}
	if _, err := w.Skip(); err != sa.DropMalformed {
		t.Errorf("hop-by-hop not first: %v, want %v", err, sa.DropMalformed)
	}
	w = WalkIPv6(v6(17, udp8))
	if w.IsExt() {
		t.Error("UDP reads as an extension header")
	}
	if _, err := w.Skip(); err != sa.DropMalformed {
		t.Errorf("Skip over UDP: %v", err)
	}
}

// TestFixChecksum checks that FixChecksum on the upper-layer part of a
// packet, given its addresses, leaves the bytes FixTransportChecksum leaves
// on the whole packet, across destination options headers (which travel
// after ESP, RFC 4303, Section 3.1.1) and for IPv4.
func TestFixChecksum(t *testing.T) {
	udp := []byte{0x01, 0xf4, 0x11, 0x94, 0, 12, 0xde, 0xad, 1, 2, 3, 4}
	for _, tc := range []struct {
		name string
		pkt  []byte
		hl   int
		nh   uint8
	}{
		{"ipv6 udp", v6(17, udp), 40, 17},
		{"ipv6 dstopts udp", v6(60, ext(17, 0), udp), 40, 60},
		{"ipv6 two dstopts udp", v6(60, ext(60, 0), ext(17, 1), udp), 40, 60},
	} {
		whole := bytes.Clone(tc.pkt)
		if err := FixTransportChecksum(whole); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		part := bytes.Clone(tc.pkt)
		h := IPv6(part)
		if err := FixChecksum(part[tc.hl:], tc.nh, h.Src(), h.Dst()); err != nil {
			t.Fatalf("%s: FixChecksum: %v", tc.name, err)
		}
		if !bytes.Equal(part, whole) {
			t.Errorf("%s: FixChecksum\n%x, FixTransportChecksum\n%x", tc.name, part, whole)
		}
	}
	v4 := fuzzSeed(t, "ipv4-tcp")
	whole, part := bytes.Clone(v4), bytes.Clone(v4)
	if err := FixTransportChecksum(whole); err != nil {
		t.Fatal(err)
	}
	if err := FixChecksum(part[20:], 6, IPv4(part).Src(), IPv4(part).Dst()); err != nil || !bytes.Equal(part, whole) {
		t.Errorf("ipv4 tcp: %v\n%x, want\n%x", err, part, whole)
	}
	if err := FixChecksum(v6(60, ext(17, 3))[40:], 60, netip.IPv6Loopback(), netip.IPv6Loopback()); err != sa.DropTruncated {
		t.Errorf("no upper-layer header after the options: %v, want %v", err, sa.DropTruncated)
	}
}

// TestPutTunnelHeader checks the outer header that the tunnel-mode AH path
// puts in front of the inner packet, with room for AH between them:
// IPv4 or IPv6 by the outer addresses, the protocol given, DSCP and ECN
// copied from the inner header and DF from an inner IPv4 one (RFC 4301,
// Section 5.1.2.1), lengths that count the room and the inner packet, a
// correct IPv4 checksum, the split that describes it, and -1 without room
// or past 65535 bytes.
func TestPutTunnelHeader(t *testing.T) {
	const gap = 24
	a4, b4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	inner4 := make([]byte, 28)
	PutIPv4Header(inner4, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 17, len(inner4), 64, 7)
	IPv4(inner4).SetTOS(0xb9)
	IPv4(inner4).SetFlagsFragOff(IPv4FlagDF, 0)
	inner6 := make([]byte, 48)
	PutIPv6Header(inner6, a6, b6, 17, 8, 64)
	IPv6(inner6).SetTrafficClass(0x2e)
	for _, tc := range []struct {
		name          string
		inner         []byte
		src, dst      netip.Addr
		tos           uint8
		df            bool
		hdrLen, nhOff int
	}{
		{"4in4", inner4, a4, b4, 0xb9, true, 20, 9},
		{"6in4", inner6, a4, b4, 0x2e, false, 20, 9},
		{"4in6", inner4, a6, b6, 0xb9, false, 40, 6},
		{"6in6", inner6, a6, b6, 0x2e, false, 40, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, 64+len(tc.inner))
			copy(buf[64:], tc.inner)
			var sp Split
			ns := PutTunnelHeader(buf, 64, len(buf), gap, tc.src, tc.dst, 51, 9, 0x1234, &sp)
			if ns != 64-gap-tc.hdrLen {
				t.Fatalf("start %d, want %d", ns, 64-gap-tc.hdrLen)
			}
			want := Split{Version: 4, HdrLen: tc.hdrLen, NextHdrOff: tc.nhOff, TotalLen: len(buf) - ns}
			if tc.src.Is6() {
				want.Version = 6
			}
			if sp != want {
				t.Fatalf("split %+v, want %+v", sp, want)
			}
			var info Info
			if err := Decode(buf[ns:], &info); err != nil || info.Src != tc.src || info.Dst != tc.dst ||
				info.Proto != 51 || info.TotalLen != len(buf)-ns {
				t.Fatalf("Decode: %v %+v", err, info)
			}
			if tc.src.Is4() {
				h := IPv4(buf[ns:])
				if h.TOS() != tc.tos || (h.Flags()&IPv4FlagDF != 0) != tc.df || !h.IsChecksumValid() || h.TTL() != 9 || h.ID() != 0x1234 {
					t.Fatalf("outer IPv4 header % x", buf[ns:ns+tc.hdrLen])
				}
			} else if h := IPv6(buf[ns:]); h.TrafficClass() != tc.tos || h.HopLimit() != 9 {
				t.Fatalf("outer IPv6 header % x", buf[ns:ns+tc.hdrLen])
			}
			if PutTunnelHeader(buf, tc.hdrLen+gap-1, len(buf), gap, tc.src, tc.dst, 51, 9, 0, &sp) != -1 {
				t.Fatal("no -1 without room")
			}
			big := make([]byte, 64+0x10000)
			copy(big[64:], tc.inner)
			if PutTunnelHeader(big, 64, len(big), gap, tc.src, tc.dst, 51, 9, 0, &sp) != -1 {
				t.Fatal("no -1 past 65535 bytes")
			}
		})
	}
}
