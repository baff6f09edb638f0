package sad

import (
	"errors"
	"net/netip"
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

// TestAllows checks the inbound selector check of RFC 4301, Section 5.2.
func TestAllows(t *testing.T) {
	s := &InboundSA{
		Local:  traffic.MustParseSet("10.1.0.0/16"),
		Remote: traffic.MustParseSet("10.2.0.0/16[tcp/443]"),
	}
	mk := func(src, dst string, proto uint8, sport, dport uint16) *packet.Info {
		return &packet.Info{Version: 4, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, SrcPort: sport, DstPort: dport, HasPorts: true}
	}
	for _, c := range []struct {
		info *packet.Info
		want bool
	}{
		{mk("10.2.3.4", "10.1.0.1", 6, 443, 50000), true},
		{mk("10.2.3.4", "10.1.0.1", 6, 80, 50000), false},   // remote port outside
		{mk("10.2.3.4", "10.1.0.1", 17, 443, 50000), false}, // protocol outside
		{mk("10.9.3.4", "10.1.0.1", 6, 443, 50000), false},  // spoofed source
		{mk("10.2.3.4", "10.7.0.1", 6, 443, 50000), false},  // destination outside
	} {
		if got := s.Allows(c.info); got != c.want {
			t.Errorf("%v -> %v: got %v", c.info.Src, c.info.Dst, got)
		}
	}
	if !(&InboundSA{}).Allows(mk("1.2.3.4", "5.6.7.8", 1, 0, 0)) {
		t.Error("empty selectors must allow anything")
	}
}
