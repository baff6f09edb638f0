package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
)

// ecnCase is a tunnel-mode framing whose outer header the data plane
// writes and reads: raw ESP or AH, with the outer and inner families
// chosen independently.
type ecnCase struct {
	proto          sa.Protocol
	outer6, inner6 bool
}

func (c ecnCase) String() string {
	fam := func(v6 bool) string {
		if v6 {
			return "6"
		}
		return "4"
	}
	return fmt.Sprintf("%v-inner%s-outer%s", c.proto, fam(c.inner6), fam(c.outer6))
}

// ecnCases are the eight combinations of protocol, outer and inner family.
func ecnCases() []ecnCase {
	var out []ecnCase
	for _, proto := range []sa.Protocol{sa.ESP, sa.AH} {
		for _, outer6 := range []bool{false, true} {
			for _, inner6 := range []bool{false, true} {
				out = append(out, ecnCase{proto, outer6, inner6})
			}
		}
	}
	return out
}

// newECNPair returns a tunnel-mode pair for c, its SAs installed unless
// noSA, with onWrite on both TUN twins.
func newECNPair(t testing.TB, c ecnCase, noSA bool, onWrite func([]byte)) *pair {
	t.Helper()
	return newECNPairEncap(t, c, sad.EncapNone, noSA, onWrite)
}

// newECNPairEncap is newECNPair with the SAs' encapsulation encap.
func newECNPairEncap(t testing.TB, c ecnCase, encap sad.Encap, noSA bool, onWrite func([]byte)) *pair {
	t.Helper()
	p := newPair(t, scenario{proto: c.proto, encap: encap, v6: c.outer6, noSA: true, onWrite: onWrite})
	if c.inner6 != c.outer6 {
		a, b := "10.1.0.1", "10.2.0.1"
		pa, pb := "10.1.0.0/16", "10.2.0.0/16"
		if c.inner6 {
			a, b = "2001:db8:a::1", "2001:db8:b::1"
			pa, pb = "2001:db8:a::/48", "2001:db8:b::/48"
		}
		p.a.inner, p.a.prefix = netip.MustParseAddr(a), netip.MustParsePrefix(pa)
		p.b.inner, p.b.prefix = netip.MustParseAddr(b), netip.MustParsePrefix(pb)
		p.setSPD(t, p.a, p.b)
		p.setSPD(t, p.b, p.a)
	}
	if !noSA {
		p.installSAs(t, p.a, p.b, 0x1000, 0x2000)
		p.installSAs(t, p.b, p.a, 0x2000, 0x1000)
	}
	return p
}

// injector returns a raw endpoint for protocol proto on another outer
// address (IPv6 when v6), from which a test sends packets to B, and that
// address.
func injector(p *pair, proto sa.Protocol, v6 bool) (*conntest.Raw, netip.Addr) {
	src := netip.MustParseAddr("192.0.2.99")
	if v6 {
		src = netip.MustParseAddr("2001:db8::99")
	}
	n := uint8(protoESP)
	if proto == sa.AH {
		n = protoAH
	}
	return p.nw.Raw(src, n, 64, 4096), src
}

// sealWith seals a copy of the IP packet pkt with o and its next sequence
// number, with the engine's whole-packet SealSeq, and returns the packet
// to send.
func sealWith(t testing.TB, o sad.Outbound, pkt []byte) []byte {
	t.Helper()
	buf := make([]byte, headroom+len(pkt)+tailroom)
	copy(buf[headroom:], pkt)
	seq, err := o.NextSeq()
	if err != nil {
		t.Fatal(err)
	}
	es, ee, err := o.SealSeq(buf, headroom, headroom+len(pkt), seq)
	if err != nil {
		t.Fatal(err)
	}
	return buf[es:ee]
}

// setInnerTOS sets the DSCP and ECN bits of the IP packet p and returns p.
func setInnerTOS(p []byte, tos uint8) []byte {
	packet.SetTOS(p, tos)
	return p
}

// readOne reads one packet from r, or fails after a few seconds.
func readOne(t *testing.T, r *conntest.Raw) []byte {
	t.Helper()
	ch := make(chan []byte, 1)
	go func() {
		bufs, sizes := [][]byte{make([]byte, 1<<16)}, []int{0}
		if n, err := r.Read(bufs, sizes, 0); err == nil && n == 1 {
			ch <- bufs[0][:sizes[0]]
		}
	}()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("nothing sent")
		return nil
	}
}

// TestECNEncapsulation checks the outer header of tunnel-mode raw ESP and
// AH as it leaves the data plane, for IPv4 and IPv6 outer and inner
// headers: the inner DSCP and ECN bits copied (RFC 6040, Section 4.1,
// normal mode; RFC 4301, Section 5.1.2.1), a valid IPv4 checksum, and DF
// copied from an inner IPv4 header by AH only (raw ESP leaves the outer
// DF clear).
func TestECNEncapsulation(t *testing.T) {
	for _, c := range ecnCases() {
		t.Run(c.String(), func(t *testing.T) {
			p := newECNPair(t, c, true, nil)
			// B's data plane gives up its raw sockets to a sniffer.
			p.b.dp.Close()
			proto := uint8(protoESP)
			if c.proto == sa.AH {
				proto = protoAH
			}
			sniff := p.nw.Raw(p.b.outer, proto, 1, 64)
			p.installSAs(t, p.a, p.b, 0x1000, 0x2000)
			for _, tos := range []uint8{0, packet.ECNECT1, packet.ECNECT0, packet.ECNCE, 0xb8 | packet.ECNECT0, 0x28 | packet.ECNCE} {
				pkt := setInnerTOS(udpPacket(p.a, p.b, 1, []byte("DSCP and ECN")), tos)
				if !c.inner6 {
					packet.IPv4(pkt).SetFlagsFragOff(packet.IPv4FlagDF, 0)
					packet.IPv4(pkt).UpdateChecksum()
				}
				p.a.tun.In <- pkt
				out := readOne(t, sniff)
				if v := out[0] >> 4; (v == 6) != c.outer6 {
					t.Fatalf("outer version %d", v)
				}
				if got := packet.TOS(out); got != tos {
					t.Errorf("inner TOS %#02x: outer %#02x", tos, got)
				}
				if c.outer6 {
					continue
				}
				h := packet.IPv4(out)
				if !h.IsChecksumValid() {
					t.Errorf("inner TOS %#02x: outer IPv4 checksum invalid: % x", tos, out[:20])
				}
				wantDF := c.proto == sa.AH && !c.inner6
				if df := h.Flags()&packet.IPv4FlagDF != 0; df != wantDF {
					t.Errorf("inner TOS %#02x: outer DF %v, want %v", tos, df, wantDF)
				}
			}
		})
	}
}

// rfc6040Decap is RFC 6040, Figure 4: the inner ECN field after
// decapsulation, [inner][outer], -1 for a drop.
var rfc6040Decap = [4][4]int{
	packet.ECNNotECT: {packet.ECNNotECT, packet.ECNNotECT, packet.ECNNotECT, -1},
	packet.ECNECT1:   {packet.ECNECT1, packet.ECNECT1, packet.ECNECT1, packet.ECNCE},
	packet.ECNECT0:   {packet.ECNECT0, packet.ECNECT1, packet.ECNECT0, packet.ECNCE},
	packet.ECNCE:     {packet.ECNCE, packet.ECNCE, packet.ECNCE, packet.ECNCE},
}

// expectECNDrops checks, once all 16 combinations of inner and outer ECN
// field went to B, that nothing more arrives and that B opened 16-drops
// of them and counted drops as sa.DropECN, globally and on B's inbound SA.
func expectECNDrops(t *testing.T, p *pair, proto sa.Protocol, drops int) {
	t.Helper()
	expectNothing(t, p.b, 20*time.Millisecond)
	st := p.b.dp.Stats()
	if st.Drops["ecn"] != uint64(drops) || st.Opened != uint64(16-drops) {
		t.Fatalf("%d opened, %d ecn drops, want %d and %d; stats %+v", st.Opened, st.Drops["ecn"], 16-drops, drops, st)
	}
	if n := p.b.dp.SAD().Load().Inbound(proto, 0x1000).Stats.Drops[sa.DropECN].Load(); n != uint64(drops) {
		t.Fatalf("SA counts %d ecn drops, want %d", n, drops)
	}
}

// TestECNDecapsulation sends tunnel-mode raw ESP and AH packets sealed with
// A's SA, with every combination of inner and outer ECN field and an outer
// DSCP that differs from the inner one, to B's data plane, for IPv4 and
// IPv6 outer and inner headers, and checks the packet B writes to its TUN
// device against RFC 6040, Section 4.2's table: outer CE over ECT(0) or
// ECT(1) makes the inner CE, outer ECT(1) over ECT(0) makes it ECT(1),
// anything else leaves the inner packet unchanged (the outer DSCP is not
// copied, RFC 4301, Section 5.1.2.1), and CE over Not-ECT is dropped and
// counted as sa.DropECN, globally and on the SA.
func TestECNDecapsulation(t *testing.T) {
	for _, c := range ecnCases() {
		t.Run(c.String(), func(t *testing.T) {
			p := newECNPair(t, c, false, nil)
			raw, _ := injector(p, c.proto, c.outer6)
			o := p.a.dp.SAD().Load().Outbound(ref).SA
			checkECNDecap(t, p, c.proto, func(pkt []byte, outer uint8) {
				// The outer ECN field as a router on the way left it
				// (AH's ICV does not cover it: RFC 4302, Section
				// 3.3.3.1).
				sealed := setInnerTOS(sealWith(t, o, pkt), outer)
				if err := raw.Write([][]byte{sealed}); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// checkECNDecap sends B, through deliver, a packet from A's side for each
// combination of inner and outer ECN field, with an outer DSCP unlike the
// inner one: deliver seals pkt (without changing it) with A's SA and
// hands it to B with the outer TOS outer. It checks what B's TUN gets
// against RFC 6040, Figure 4 (rfc6040Decap), and the drops.
func checkECNDecap(t *testing.T, p *pair, proto sa.Protocol, deliver func(pkt []byte, outer uint8)) {
	t.Helper()
	const innerDSCP, outerDSCP = 0x2e << 2, 0x0a << 2
	drops := 0
	for in := range uint8(4) {
		for out := range uint8(4) {
			pkt := setInnerTOS(udpPacket(p.a, p.b, uint16(in*4+out+1), []byte("ECN across the tunnel")), innerDSCP|in)
			deliver(pkt, outerDSCP|out)
			if rfc6040Decap[in][out] < 0 {
				drops++
				continue
			}
			expect(t, p.b, setInnerTOS(pkt, innerDSCP|uint8(rfc6040Decap[in][out])))
		}
	}
	expectECNDrops(t, p, proto, drops)
}

// TestZeroAllocsECN checks that decapsulation that rewrites the inner ECN
// field (outer CE over an inner ECT(0)) allocates nothing, for tunnel-mode
// raw ESP and AH over IPv4 and IPv6: the packets are sealed beforehand,
// and the measured trip is raw receive, opening, the ECN rewrite, replay
// window, selector check and TUN write.
func TestZeroAllocsECN(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const warm, runs = 100, 1000
	for _, c := range []ecnCase{{sa.ESP, false, false}, {sa.ESP, true, true}, {sa.AH, false, false}, {sa.AH, true, true}} {
		t.Run(c.String(), func(t *testing.T) {
			got := make(chan uint8, 1)
			p := newECNPair(t, c, false, func(b []byte) { got <- packet.TOS(b) })
			raw, _ := injector(p, c.proto, c.outer6)
			o := p.a.dp.SAD().Load().Outbound(ref).SA
			pkt := setInnerTOS(udpPacket(p.a, p.b, 1, make([]byte, 1200)), packet.ECNECT0)
			sealed := make([][][]byte, warm+runs+1)
			for i := range sealed {
				sealed[i] = [][]byte{setInnerTOS(sealWith(t, o, pkt), packet.ECNCE)}
			}
			next := 0
			var tos uint8
			roundTrip := func() {
				raw.Write(sealed[next])
				next++
				tos = <-got // a lost packet hangs the test until its timeout
			}
			for range warm {
				roundTrip()
			}
			if tos != packet.ECNCE {
				t.Fatalf("delivered TOS %#02x, want CE", tos)
			}
			if n := testing.AllocsPerRun(runs, roundTrip); n != 0 {
				t.Errorf("%v allocations per packet, want 0", n)
			}
			if tos != packet.ECNCE {
				t.Fatalf("delivered TOS %#02x, want CE", tos)
			}
		})
	}
}

// TestEngineWrappersECN checks the engines' whole-packet wrappers, which
// callers that hold whole IP packets use instead of the data plane: for
// tunnel-mode ESP and AH, IPv4 and IPv6 inside IPv4 and IPv6, with every
// inner and outer ECN codepoint, SealSeq copies the inner DSCP and ECN into
// the outer header (RFC 6040, Section 4.1) and Open combines the outer ECN
// into the inner header as packet.DecapECN does (Section 4.2; its table is
// tested in package packet), dropping CE over Not-ECT with sa.DropECN.
func TestEngineWrappersECN(t *testing.T) {
	for _, c := range ecnCases() {
		t.Run(c.String(), func(t *testing.T) {
			p := newECNPair(t, c, false, nil)
			o := p.a.dp.SAD().Load().Outbound(ref).SA
			in := p.b.dp.SAD().Load().Inbound(c.proto, 0x1000).SA
			for ie := range uint8(4) {
				for oe := range uint8(4) {
					pkt := setInnerTOS(udpPacket(p.a, p.b, 1, []byte("whole packets")), 0xb8|ie)
					q := sealWith(t, o, pkt)
					if got := packet.TOS(q); got != 0xb8|ie {
						t.Fatalf("outer TOS %#02x, inner %#02x", got, 0xb8|ie)
					}
					packet.SetTOS(q, 0x28|oe)
					ns, ne, err := sa.Open(in, q, 0, len(q))
					want := bytes.Clone(pkt)
					if werr := packet.DecapECN(0x28|oe, want); err != werr || err == nil && !bytes.Equal(q[ns:ne], want) {
						t.Fatalf("ECN %d under %d: %v %x, want %v %x", ie, oe, err, q[ns:ne], werr, want)
					}
				}
			}
		})
	}
}

// ecnCasesUDP are the four combinations of outer and inner family of
// tunnel-mode ESP in UDP.
func ecnCasesUDP() []ecnCase {
	var out []ecnCase
	for _, c := range ecnCases() {
		if c.proto == sa.ESP {
			out = append(out, c)
		}
	}
	return out
}

// captureUDP aims a copy of A's outbound SA at a new UDP endpoint of the
// outer family, so that A's sealed datagrams land there (sequence numbers
// continue from the real SA), and returns the endpoint.
func captureUDP(t testing.TB, p *pair, v6 bool) *conntest.UDP {
	t.Helper()
	at := netip.MustParseAddrPort("203.0.113.10:4500")
	if v6 {
		at = netip.MustParseAddrPort("[2001:db8::10]:4500")
	}
	capture := p.nw.UDP(at, 8, 256)
	out := p.a.dp.SAD().Load().Outbound(ref)
	c := sad.OutboundSA{Protocol: out.Protocol, SPI: out.SPI, Ref: out.Ref, Encap: out.Encap, Remote: at, LocalAddr: out.LocalAddr, SA: out.SA}
	if err := p.a.dp.InstallOutbound(&c); err != nil {
		t.Fatal(err)
	}
	return capture
}

// readTOS reads one datagram and its TOS from u, or fails after a few
// seconds.
func readTOS(t testing.TB, u *conntest.UDP) ([]byte, uint8) {
	t.Helper()
	type dg struct {
		b   []byte
		tos uint8
	}
	ch := make(chan dg, 1)
	go func() {
		bufs, sizes, addrs, tos := [][]byte{make([]byte, 1<<16)}, []int{0}, []netip.AddrPort{{}}, []uint8{0}
		if n, err := u.ReadTOS(bufs, sizes, addrs, tos, 0); err == nil && n == 1 {
			ch <- dg{bufs[0][:sizes[0]], tos[0]}
		}
	}()
	select {
	case d := <-ch:
		return d.b, d.tos
	case <-time.After(5 * time.Second):
		t.Fatal("nothing sent")
		return nil, 0
	}
}

// TestECNEncapsulationUDP checks the TOS that tunnel-mode ESP in UDP hands
// to the socket, for IPv4 and IPv6 outer and inner headers: the inner
// DSCP and ECN bits (RFC 6040, Section 4.1, normal mode; RFC 4301,
// Section 5.1.2.1), as for raw ESP (TestECNEncapsulation); and that a
// transport-mode SA leaves it at 0.
func TestECNEncapsulationUDP(t *testing.T) {
	tosValues := []uint8{0, packet.ECNECT1, packet.ECNECT0, packet.ECNCE, 0xb8 | packet.ECNECT0, 0x28 | packet.ECNCE}
	for _, c := range ecnCasesUDP() {
		t.Run(c.String(), func(t *testing.T) {
			p := newECNPairEncap(t, c, sad.EncapUDP, false, nil)
			capture := captureUDP(t, p, c.outer6)
			for _, tos := range tosValues {
				p.a.tun.In <- setInnerTOS(udpPacket(p.a, p.b, 1, []byte("DSCP and ECN in UDP")), tos)
				if _, got := readTOS(t, capture); got != tos {
					t.Errorf("inner TOS %#02x: outer %#02x", tos, got)
				}
			}
		})
	}
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "transport4", true: "transport6"}[v6], func(t *testing.T) {
			p := newPair(t, scenario{proto: sa.ESP, mode: sa.Transport, encap: sad.EncapUDP, v6: v6})
			capture := captureUDP(t, p, v6)
			for _, tos := range tosValues {
				p.a.tun.In <- setInnerTOS(udpPacket(p.a, p.b, 1, []byte("transport mode")), tos)
				if _, got := readTOS(t, capture); got != 0 {
					t.Errorf("transport mode, TOS %#02x: the socket was given %#02x, want 0", tos, got)
				}
			}
		})
	}
}

// TestECNDecapsulationUDP is TestECNDecapsulation for tunnel-mode ESP in
// UDP: A's sealed datagrams are delivered to B with every outer ECN field
// (and an outer DSCP unlike the inner one), as IP_TOS or IPV6_TCLASS would
// report them, and B's TUN gets RFC 6040, Section 4.2's result; CE over
// Not-ECT is dropped and counted as sa.DropECN.
func TestECNDecapsulationUDP(t *testing.T) {
	for _, c := range ecnCasesUDP() {
		t.Run(c.String(), func(t *testing.T) {
			p := newECNPairEncap(t, c, sad.EncapUDP, false, nil)
			capture := captureUDP(t, p, c.outer6)
			from := netip.AddrPortFrom(p.a.outer, 4500)
			checkECNDecap(t, p, sa.ESP, func(pkt []byte, outer uint8) {
				p.a.tun.In <- append([]byte(nil), pkt...)
				sealed, _ := readTOS(t, capture)
				// The outer ECN field as a router on the way left it.
				p.b.udp.InjectTOS(sealed, from, outer)
			})
		})
	}
}

// TestECNUDPWithoutTOS runs tunnel-mode ESP in UDP over a socket with only
// conn.UDP's methods, as one that cannot set or report a TOS: A's
// datagrams leave with TOS 0, and B, given datagrams whose outer header
// said CE, reads them as Not-ECT (the behaviour before ReadTOS): the inner
// packet arrives unchanged, over ECT(0) and over Not-ECT alike, and
// nothing is dropped as "ecn".
func TestECNUDPWithoutTOS(t *testing.T) {
	p := newPair(t, scenario{proto: sa.ESP, encap: sad.EncapUDP, plainUDP: true})
	capture := captureUDP(t, p, false)
	from := netip.AddrPortFrom(p.a.outer, 4500)
	for i, tos := range []uint8{0xb8 | packet.ECNECT0, 0xb8 | packet.ECNNotECT} {
		pkt := setInnerTOS(udpPacket(p.a, p.b, uint16(i+1), []byte("no TOS on the socket")), tos)
		p.a.tun.In <- append([]byte(nil), pkt...)
		sealed, got := readTOS(t, capture)
		if got != 0 {
			t.Errorf("inner TOS %#02x: the socket was given %#02x, want 0", tos, got)
		}
		p.b.udp.InjectTOS(sealed, from, packet.ECNCE)
		expect(t, p.b, pkt)
	}
	if st := p.b.dp.Stats(); st.Drops["ecn"] != 0 {
		t.Fatalf("ecn drops without a reported TOS: %+v", st)
	}
}
