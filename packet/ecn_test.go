package packet

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/internal/benchtest"
	"github.com/goipsec/goipsec/sa"
)

// ecnName names an ECN codepoint for test names.
var ecnName = [4]string{ECNNotECT: "NotECT", ECNECT1: "ECT1", ECNECT0: "ECT0", ECNCE: "CE"}

// decapECNWant is RFC 6040, Section 4.2, Figure 4 (normal mode): the inner
// ECN field after decapsulation, indexed [inner][outer], or -1 for a drop.
var decapECNWant = [4][4]int{
	//           outer: Not-ECT  ECT(1)  ECT(0)  CE
	ECNNotECT: {ECNNotECT, ECNNotECT, ECNNotECT, -1},
	ECNECT1:   {ECNECT1, ECNECT1, ECNECT1, ECNCE},
	ECNECT0:   {ECNECT0, ECNECT1, ECNECT0, ECNCE},
	ECNCE:     {ECNCE, ECNCE, ECNCE, ECNCE},
}

// TestDecapECN checks every row of RFC 6040, Section 4.2's table (Figure
// 4) on IPv4 and IPv6 inner packets: the ECN field that results, the drop
// of CE over Not-ECT (sa.DropECN, packet unchanged), the inner DSCP kept
// and the outer DSCP not copied (RFC 4301, Section 5.1.2.1), a valid IPv4
// header checksum, and no other byte changed.
func TestDecapECN(t *testing.T) {
	const innerDSCP, outerDSCP = 0x2e << 2, 0x0a << 2 // EF inside, AF11 outside
	a4, b4 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	for _, v6 := range []bool{false, true} {
		for in := range uint8(4) {
			for out := range uint8(4) {
				name := "ipv4"
				if v6 {
					name = "ipv6"
				}
				t.Run(name+"-inner"+ecnName[in]+"-outer"+ecnName[out], func(t *testing.T) {
					p := make([]byte, 60)
					if v6 {
						PutIPv6Header(p, a6, b6, 17, len(p)-IPv6HeaderLen, 64)
						IPv6(p).SetFlowLabel(0xabcde)
					} else {
						PutIPv4Header(p, a4, b4, 17, len(p), 64, 0x1234)
						IPv4(p).SetFlagsFragOff(IPv4FlagDF, 0)
						IPv4(p).UpdateChecksum()
					}
					for i := IPv6HeaderLen; i < len(p); i++ {
						p[i] = byte(i)
					}
					SetTOS(p, innerDSCP|in)
					orig := bytes.Clone(p)
					err := DecapECN(outerDSCP|out, p)
					want := decapECNWant[in][out]
					if want < 0 {
						if err != sa.DropECN || !bytes.Equal(p, orig) {
							t.Fatalf("err %v, packet changed %v; want %v and no change", err, !bytes.Equal(p, orig), sa.DropECN)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if got := TOS(p); got != innerDSCP|uint8(want) {
						t.Fatalf("inner TOS %#02x, want %#02x", got, innerDSCP|want)
					}
					if !v6 && !IPv4(p).IsChecksumValid() {
						t.Fatalf("IPv4 checksum invalid: % x", p[:20])
					}
					SetTOS(p, innerDSCP|in)
					if !v6 {
						IPv4(p).UpdateChecksum()
					}
					if !bytes.Equal(p, orig) {
						t.Fatalf("bytes other than the ECN field changed:\n got % x\nwant % x", p, orig)
					}
				})
			}
		}
	}
	// Too short to hold its header: left alone.
	short := []byte{0x45, 0x02, 0, 10}
	if err := DecapECN(ECNCE, short); err != nil || short[1] != 0x02 {
		t.Fatalf("short packet: %v % x", err, short)
	}
}

// TestUpdateChecksum compares RFC 1624's incremental update with a full
// recomputation over random IPv4 headers and random new TOS bytes,
// including headers whose checksum is 0x0000 or 0xffff.
func TestUpdateChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	h := make(IPv4, IPv4MinHeaderLen)
	for i := range 100000 {
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		h[0] = 0x45
		if i%3 == 0 {
			// Steer the header to the checksum extremes.
			h.SetChecksum(0)
			c := h.ComputeChecksum()
			h[14] ^= byte(c >> 8)
			h[15] ^= byte(c)
		}
		h.UpdateChecksum()
		old := uint16(h[0])<<8 | uint16(h[1])
		tos := byte(r.Uint32())
		h[1] = tos
		got := updateChecksum(h.Checksum(), old, uint16(h[0])<<8|uint16(tos))
		if want := h.ComputeChecksum(); got != want {
			t.Fatalf("header % x: incremental %#04x, recomputed %#04x", h, got, want)
		}
	}
}

// TestPutOuterHeader checks the outer header of the ESP tunnel path:
// DSCP and ECN as given (the inner header's, RFC 6040, Section 4.1), DF
// clear, a valid IPv4 checksum, the lengths and fields of PutIPHeader.
func TestPutOuterHeader(t *testing.T) {
	for _, tc := range []struct {
		src, dst string
	}{{"192.0.2.1", "198.51.100.2"}, {"2001:db8::1", "2001:db8::2"}} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		for _, tos := range []uint8{0, ECNECT0, ECNECT1, ECNCE, 0xb8 | ECNECT0, 0xff} {
			b := make([]byte, 80)
			want := make([]byte, 80)
			n := PutOuterHeader(b, src, dst, 50, 40, 9, 0x4242, tos)
			if m := PutIPHeader(want, src, dst, 50, 40, 9, 0x4242); m != n {
				t.Fatalf("length %d, want %d", n, m)
			}
			if got := TOS(b); got != tos {
				t.Fatalf("%s tos %#02x: header has %#02x", tc.src, tos, got)
			}
			SetTOS(want, tos)
			if !bytes.Equal(b, want) {
				t.Fatalf("%s tos %#02x:\n got % x\nwant % x", tc.src, tos, b[:n], want[:n])
			}
			if src.Is4() && (!IPv4(b).IsChecksumValid() || IPv4(b).Flags() != 0) {
				t.Fatalf("%s tos %#02x: checksum or flags wrong: % x", tc.src, tos, b[:n])
			}
		}
	}
}

// TestECNZeroAllocs checks that DecapECN and PutOuterHeader allocate
// nothing, the drop included.
func TestECNZeroAllocs(t *testing.T) {
	p := make([]byte, 40)
	PutIPv4Header(p, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 17, len(p), 64, 1)
	src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	var sink error
	n := testing.AllocsPerRun(100, func() {
		SetTOS(p, ECNECT0)
		sink = DecapECN(ECNCE, p)
		SetTOS(p, ECNNotECT)
		sink = DecapECN(ECNCE, p)
		PutOuterHeader(p, src, dst, 50, 20, 64, 1, ECNECT0)
	})
	if n != 0 || sink != sa.DropECN {
		t.Fatalf("%v allocations, last error %v", n, sink)
	}
}

// BenchmarkECNOldNew measures what the ECN work adds per packet, the old
// path interleaved with the new one (internal/benchtest.OldNew): the outer
// header of raw ESP without and with the inner DSCP and ECN (TOS, then
// PutOuterHeader instead of PutIPHeader), and decapsulation's DecapECN with
// a Not-ECT outer header (the common case: nothing to do) and with CE over
// an ECT(0) inner packet (the rewrite; both sides reset the inner TOS).
func BenchmarkECNOldNew(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		fam := "ipv4"
		src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
		inner := make([]byte, 1400)
		PutIPv4Header(inner, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 17, len(inner), 64, 1)
		if v6 {
			fam = "ipv6"
			src, dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
			PutIPv6Header(inner, netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:b::1"), 17, len(inner)-IPv6HeaderLen, 64)
		}
		SetTOS(inner, 0xb8|ECNECT0)
		hdr := make([]byte, IPv6HeaderLen)
		b.Run("encap-"+fam, func(b *testing.B) {
			benchtest.OldNew(b, 64, 0, nil,
				func(i int) error { PutIPHeader(hdr, src, dst, 50, len(inner)+40, 64, uint16(i)); return nil },
				func(i int) error {
					PutOuterHeader(hdr, src, dst, 50, len(inner)+40, 64, uint16(i), TOS(inner))
					return nil
				})
		})
		b.Run("decap-notect-"+fam, func(b *testing.B) {
			benchtest.OldNew(b, 64, 0, nil,
				func(int) error { return nil },
				func(int) error { return DecapECN(TOS(hdr)&^ECNMask, inner) })
		})
		b.Run("decap-ce-"+fam, func(b *testing.B) {
			benchtest.OldNew(b, 64, 0, nil,
				func(int) error { SetTOS(inner, 0xb8|ECNECT0); return nil },
				func(int) error { SetTOS(inner, 0xb8|ECNECT0); return DecapECN(ECNCE, inner) })
		})
	}
}

// FuzzDecapECN feeds DecapECN arbitrary inner bytes and outer TOS bytes: it
// never panics, changes at most the ECN bits (and an IPv4 checksum, which
// stays valid if it was), never clears a CE mark and drops only CE over
// Not-ECT, leaving the bytes unchanged.
func FuzzDecapECN(f *testing.F) {
	v4 := make([]byte, 28)
	PutIPv4Header(v4, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 17, len(v4), 64, 1)
	v6 := make([]byte, 48)
	PutIPv6Header(v6, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 17, 8, 64)
	for _, tos := range []uint8{0, 1, 2, 3, 0xb9} {
		f.Add(tos, withTOS(v4, 0xb8|tos&3))
		f.Add(tos, withTOS(v6, 0xb8|tos&3))
	}
	f.Add(uint8(3), []byte{0x45})
	f.Fuzz(func(t *testing.T, outer uint8, inner []byte) {
		orig := bytes.Clone(inner)
		err := DecapECN(outer, inner)
		if err != nil {
			if err != sa.DropECN || outer&ECNMask != ECNCE || TOS(orig)&ECNMask != ECNNotECT || !bytes.Equal(inner, orig) {
				t.Fatalf("outer %#02x: %v, packet % x -> % x", outer, err, orig, inner)
			}
			return
		}
		if bytes.Equal(inner, orig) {
			return
		}
		if TOS(orig)&ECNMask == ECNCE || TOS(inner)&^ECNMask != TOS(orig)&^ECNMask {
			t.Fatalf("outer %#02x: TOS %#02x -> %#02x", outer, TOS(orig), TOS(inner))
		}
		v4 := orig[0]>>4 != 6
		if v4 && IPv4(orig).IHL() >= 5 && len(orig) >= IPv4(orig).HeaderLen() && IPv4(orig).IsChecksumValid() && !IPv4(inner).IsChecksumValid() {
			t.Fatalf("checksum no longer valid: % x -> % x", orig, inner)
		}
		// Apart from the ECN bits and the IPv4 checksum (where 0x0000
		// and 0xffff both stand for zero in one's complement), nothing
		// changed.
		got, want := bytes.Clone(inner), bytes.Clone(orig)
		SetTOS(got, TOS(orig))
		if v4 {
			got[10], got[11], want[10], want[11] = 0, 0, 0, 0
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("outer %#02x: bytes beyond the ECN field changed: % x -> % x", outer, orig, inner)
		}
	})
}

// withTOS returns a copy of the IP packet p with DSCP and ECN bits tos.
func withTOS(p []byte, tos uint8) []byte {
	q := bytes.Clone(p)
	SetTOS(q, tos)
	return q
}
