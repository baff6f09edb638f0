package sad

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

type fakeIn struct{ accepted []uint64 }

func (f *fakeIn) Decrypt(b []byte, s, e int) (int, int, uint64, error) { return s, e, 1, nil }
func (f *fakeIn) Accept(seq uint64) error {
	f.accepted = append(f.accepted, seq)
	return nil
}

type fakeOut struct{}

func (fakeOut) Overhead() (int, int)                                   { return 0, 0 }
func (fakeOut) NextSeq() (uint64, error)                               { return 1, nil }
func (fakeOut) SealSeq(b []byte, s, e int, q uint64) (int, int, error) { return s, e, nil }

func TestInstallLookupRemove(t *testing.T) {
	var db DB
	if db.Load().Inbound(sa.ESP, 1) != nil || db.Load().Outbound(1) != nil {
		t.Fatal("empty database found something")
	}
	in := &InboundSA{Protocol: sa.ESP, SPI: 0x100, SA: &fakeIn{}}
	if err := db.InstallInbound(in); err != nil {
		t.Fatal(err)
	}
	if err := db.InstallInbound(&InboundSA{Protocol: sa.ESP, SPI: 0x100, SA: &fakeIn{}}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate SPI: %v", err)
	}
	// The same SPI under AH is a different SA (RFC 4301, Section 4.1).
	if err := db.InstallInbound(&InboundSA{Protocol: sa.AH, SPI: 0x100, SA: &fakeIn{}}); err != nil {
		t.Fatal(err)
	}
	if err := db.InstallInbound(&InboundSA{Protocol: sa.ESP, SPI: 0, SA: &fakeIn{}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SPI 0: %v", err)
	}
	old := db.Load()
	o1 := &OutboundSA{Protocol: sa.ESP, SPI: 0x200, Ref: 3, Remote: netip.MustParseAddrPort("192.0.2.2:4500"), Encap: EncapUDP, SA: fakeOut{}}
	if _, err := db.InstallOutbound(o1); err != nil {
		t.Fatal(err)
	}
	if old.Outbound(3) != nil {
		t.Fatal("an old snapshot changed")
	}
	o2 := &OutboundSA{Protocol: sa.ESP, SPI: 0x201, Ref: 3, Remote: netip.MustParseAddrPort("192.0.2.2:4500"), SA: fakeOut{}}
	if prev, err := db.InstallOutbound(o2); err != nil || prev != o1 {
		t.Fatalf("rekey: prev %v, %v", prev, err)
	}
	if db.RemoveOutbound(3, sa.ESP, 0x200) != nil || db.Load().Outbound(3) != o2 {
		t.Fatal("removing the old SA removed its successor")
	}
	if _, err := db.InstallOutbound(&OutboundSA{Protocol: sa.AH, SPI: 1, Remote: o1.Remote, Encap: EncapUDP, SA: fakeOut{}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AH in UDP: %v", err)
	}
	snap := db.Load()
	if n := testing.AllocsPerRun(1000, func() {
		if snap.Inbound(sa.ESP, 0x100) != in || snap.Outbound(3) != o2 {
			t.Fatal("lookup")
		}
	}); n != 0 {
		t.Errorf("%v allocations per lookup", n)
	}
	if db.RemoveInbound(sa.ESP, 0x100) != in || db.Load().Inbound(sa.ESP, 0x100) != nil {
		t.Fatal("remove inbound")
	}
}

// TestAllows checks the inbound selector check of RFC 4301, Section 5.2,
// before and after the SA is installed: installing copies one-selector
// sets into the SA (the per-SA cost work of issue 9), which must not
// change what passes, for one-selector sets and for longer ones.
func TestAllows(t *testing.T) {
	mk := func(src, dst string, proto uint8, sport, dport uint16) *packet.Info {
		return &packet.Info{Version: 4, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, SrcPort: sport, DstPort: dport, HasPorts: true}
	}
	cases := []struct {
		info *packet.Info
		want bool
	}{
		{mk("10.2.3.4", "10.1.0.1", 6, 443, 50000), true},
		{mk("10.2.3.4", "10.1.0.1", 6, 80, 50000), false},   // remote port outside
		{mk("10.2.3.4", "10.1.0.1", 17, 443, 50000), false}, // protocol outside
		{mk("10.9.3.4", "10.1.0.1", 6, 443, 50000), false},  // spoofed source
		{mk("10.2.3.4", "10.7.0.1", 6, 443, 50000), false},  // destination outside
	}
	for _, remote := range []string{"10.2.0.0/16[tcp/443]", "10.2.0.0/16[tcp/443] 10.200.0.0/16[udp/53]"} {
		s := &InboundSA{Protocol: sa.ESP, SPI: 1, SA: &fakeIn{},
			Local:  traffic.MustParseSet("10.1.0.0/16"),
			Remote: traffic.MustParseSet(strings.Fields(remote)...),
		}
		for _, installed := range []bool{false, true} {
			if installed {
				var db DB
				if err := db.InstallInbound(s); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range cases {
				if got := s.Allows(c.info); got != c.want {
					t.Errorf("remote %s, installed %v: %v -> %v: got %v", remote, installed, c.info.Src, c.info.Dst, got)
				}
			}
		}
	}
	if !(&InboundSA{}).Allows(mk("1.2.3.4", "5.6.7.8", 1, 0, 0)) {
		t.Error("empty selectors must allow anything")
	}
}

func peerSA(spi uint32, peer, remote string) *OutboundSA {
	return &OutboundSA{Protocol: sa.ESP, SPI: spi, Ref: 7, Peer: peer, Remote: netip.MustParseAddrPort("192.0.2.2:4500"),
		LocalTS: traffic.MustParseSet("10.0.0.0/24"), RemoteTS: traffic.MustParseSet(remote), SA: fakeOut{}}
}

func info(src, dst string) *packet.Info {
	return &packet.Info{Version: 4, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 1, HasICMP: true, ICMPType: 8}
}

// TestOutboundSeveralPerRefPickedBySelectors checks item 2 of issue 7: a
// rule that serves two peers has one outbound SA per peer, and the data
// plane's lookup picks the one whose negotiated selectors match the packet,
// without allocating.
func TestOutboundSeveralPerRefPickedBySelectors(t *testing.T) {
	var db DB
	a, b := peerSA(0xa, "conn|a|192.0.2.2", "10.1.0.0/16"), peerSA(0xb, "conn|b|192.0.2.3", "10.2.0.0/16")
	for _, s := range []*OutboundSA{a, b} {
		if _, err := db.InstallOutbound(s); err != nil {
			t.Fatal(err)
		}
	}
	snap := db.Load()
	if got := snap.Lookup(7, info("10.0.0.1", "10.1.2.3")); got != a {
		t.Fatalf("to peer a's network: got %v", got)
	}
	if got := snap.Lookup(7, info("10.0.0.1", "10.2.2.3")); got != b {
		t.Fatalf("to peer b's network: got %v", got)
	}
	if got := snap.Lookup(7, info("10.0.0.1", "10.3.2.3")); got != nil {
		t.Fatalf("no peer holds 10.3.0.0/16, got SPI %08x", got.SPI)
	}
	if got := snap.Lookup(7, info("10.9.0.1", "10.1.2.3")); got != nil {
		t.Fatal("a source outside the negotiated local selectors found an SA")
	}
	pkt := info("10.0.0.1", "10.2.2.3")
	if n := testing.AllocsPerRun(1000, func() { snap.Lookup(7, pkt) }); n != 0 {
		t.Errorf("%v allocations per lookup", n)
	}
	if db.RemoveOutbound(7, sa.ESP, 0xa) != a || db.Load().Lookup(7, pkt) != b {
		t.Fatal("removing peer a's SA touched peer b's")
	}
	n := 0
	db.Load().OutboundSAs(func(*OutboundSA) { n++ })
	if n != 1 {
		t.Fatalf("%d outbound SAs left, want 1", n)
	}
}

// TestOutboundOverlapRefused checks that a peer cannot install an SA whose
// remote selectors overlap those another peer holds under the same rule
// (RFC 4301, Section 4.4.3), while another rule or the same peer can.
func TestOutboundOverlapRefused(t *testing.T) {
	var db DB
	if _, err := db.InstallOutbound(peerSA(0xa, "a", "10.1.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.InstallOutbound(peerSA(0xb, "b", "10.1.2.0/24")); !errors.Is(err, ErrOverlap) {
		t.Fatalf("peer b claiming part of peer a's selectors: %v", err)
	}
	if _, err := db.InstallOutbound(peerSA(0xc, "b", "0.0.0.0/0")); !errors.Is(err, ErrOverlap) {
		t.Fatalf("peer b claiming everything: %v", err)
	}
	if _, err := db.InstallOutbound(peerSA(0xd, "b", "10.1.0.0/16[tcp/443]")); !errors.Is(err, ErrOverlap) {
		t.Fatalf("peer b claiming one port of peer a's selectors: %v", err)
	}
	other := peerSA(0xe, "b", "10.1.0.0/16")
	other.Ref = 8
	if _, err := db.InstallOutbound(other); err != nil {
		t.Fatalf("another rule: %v", err)
	}
	if _, err := db.InstallOutbound(peerSA(0xf, "a", "10.1.2.0/24")); err != nil {
		t.Fatalf("the same peer, narrower: %v", err)
	}
	if Overlap(traffic.MustParseSet("10.1.0.0/16[udp]"), traffic.MustParseSet("10.1.0.0/16[tcp]")) {
		t.Error("different protocols overlap")
	}
}

// TestOutboundRekeyReplacesOnlySamePeer checks that the rekeyed SA of one
// peer replaces that peer's SA with the same selectors and no other.
func TestOutboundRekeyReplacesOnlySamePeer(t *testing.T) {
	var db DB
	a, b := peerSA(0xa, "a", "10.1.0.0/16"), peerSA(0xb, "b", "10.2.0.0/16")
	db.InstallOutbound(a)
	db.InstallOutbound(b)
	a2 := peerSA(0xa2, "a", "10.1.0.0/16")
	prev, err := db.InstallOutbound(a2)
	if err != nil || prev != a {
		t.Fatalf("rekey of peer a: prev %v, %v", prev, err)
	}
	b2 := peerSA(0xb2, "b", "10.2.0.0/16")
	if prev, err := db.InstallOutbound(b2); err != nil || prev != b {
		t.Fatalf("rekey of peer b: prev %v, %v", prev, err)
	}
	snap := db.Load()
	if snap.Lookup(7, info("10.0.0.1", "10.1.0.1")) != a2 || snap.Lookup(7, info("10.0.0.1", "10.2.0.1")) != b2 {
		t.Fatal("after both rekeys, each peer's traffic must go to its new SA")
	}
	if db.RemoveOutbound(7, sa.ESP, 0xa) != nil || db.RemoveOutbound(7, sa.ESP, 0xb) != nil {
		t.Fatal("deleting a replaced SA removed something")
	}
	if len(db.Load().OutboundsOf(7)) != 2 {
		t.Fatal("both successors must stay")
	}
}
