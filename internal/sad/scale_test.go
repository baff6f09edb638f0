package sad

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/goipsec/goipsec/sa"
)

// TestInstallCopiesOneShard checks item 1 of the per-SA cost work of issue
// 9: an install or removal copies only the shard it touches; the other
// shards of the new snapshot are the very maps of the old one, and the old
// snapshot does not change.
func TestInstallCopiesOneShard(t *testing.T) {
	var db DB
	for spi := uint32(1); spi <= 4096; spi++ {
		if err := db.InstallInbound(&InboundSA{Protocol: sa.ESP, SPI: spi, SA: &fakeIn{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.InstallOutbound(&OutboundSA{Protocol: sa.ESP, SPI: spi, Ref: spi, Remote: netip.MustParseAddrPort("192.0.2.2:4500"), SA: fakeOut{}}); err != nil {
			t.Fatal(err)
		}
	}
	same := func(a, b any) bool { return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() }
	old := db.Load()
	const spi = 5000
	db.InstallInbound(&InboundSA{Protocol: sa.ESP, SPI: spi, SA: &fakeIn{}})
	db.InstallOutbound(&OutboundSA{Protocol: sa.ESP, SPI: spi, Ref: spi, Remote: netip.MustParseAddrPort("192.0.2.2:4500"), SA: fakeOut{}})
	db.RemoveInbound(sa.ESP, 17)
	db.RemoveOutbound(17, sa.ESP, 17)
	cur := db.Load()
	changed := map[uint32]bool{shardOf(spi): true, shardOf(17): true}
	for i := range uint32(shards) {
		if !changed[i] && (!same(old.in.at(i), cur.in.at(i)) || !same(old.out.at(i), cur.out.at(i))) {
			t.Fatalf("shard %d was copied by a change that does not touch it", i)
		}
	}
	if old.Inbound(sa.ESP, spi) != nil || old.Inbound(sa.ESP, 17) == nil || old.Outbound(17) == nil {
		t.Fatal("an old snapshot changed")
	}
	if cur.Inbound(sa.ESP, spi) == nil || cur.Inbound(sa.ESP, 17) != nil || cur.Outbound(17) != nil || cur.Outbound(spi) == nil {
		t.Fatal("the change is missing from the new snapshot")
	}
	for spi := uint32(1); spi <= 4096; spi++ {
		if spi != 17 && (cur.Inbound(sa.ESP, spi) == nil || cur.Outbound(spi) == nil) {
			t.Fatalf("SPI %d lost", spi)
		}
	}
	nin, nout := 0, 0
	cur.InboundSAs(func(*InboundSA) { nin++ })
	cur.OutboundSAs(func(*OutboundSA) { nout++ })
	if nin != 4096 || nout != 4096 {
		t.Fatalf("%d inbound and %d outbound SAs, want 4096 each", nin, nout)
	}
	// Shards are balanced for sequential SPIs too (manual SAs).
	for i := range uint32(shards) {
		if n := used(cur.in.at(i)); n > 4 {
			t.Errorf("shard %d holds %d of 4096 sequential SPIs", i, n)
		}
	}
	// Emptying a shard leaves no map behind.
	for spi := uint32(1); spi <= 4096; spi++ {
		db.RemoveInbound(sa.ESP, spi)
	}
	db.RemoveInbound(sa.ESP, 5000)
	db.Load().in.each(func(k inKey, _ *InboundSA) { t.Fatalf("SA %08x left after its removal", k.spi) })
	for i := range uint32(shards) {
		if db.Load().in.at(i) != nil {
			t.Fatalf("shard %d is empty but not nil", i)
		}
	}
}

// used returns the number of entries of shard s.
func used[K comparable, V any](s []slot[K, V]) int {
	n := 0
	for _, e := range s {
		if e.used {
			n++
		}
	}
	return n
}

// TestCrowdedShard checks the flat shards of the per-SA cost work of issue
// 9 where their probing matters: many SPIs in one shard, lookups of SPIs
// that are absent from a crowded shard, and removals that leave the
// remaining entries reachable.
func TestCrowdedShard(t *testing.T) {
	var db DB
	var spis []uint32
	for spi := uint32(1); len(spis) < 350; spi++ {
		if shardOf(spi) == shardOf(1) {
			spis = append(spis, spi)
		}
	}
	spis, absent := spis[:300], spis[300:] // the same shard, never installed
	in := func(spi uint32) *InboundSA { return db.Load().Inbound(sa.ESP, spi) }
	for _, spi := range spis {
		if err := db.InstallInbound(&InboundSA{Protocol: sa.ESP, SPI: spi, SA: &fakeIn{}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.InstallInbound(&InboundSA{Protocol: sa.AH, SPI: spis[0], SA: &fakeIn{}}); err != nil {
		t.Fatal(err)
	}
	for i, spi := range spis {
		if s := in(spi); s == nil || s.SPI != spi || s.Protocol != sa.ESP {
			t.Fatalf("SPI %d (entry %d) not found", spi, i)
		}
	}
	for _, spi := range absent {
		if in(spi) != nil {
			t.Fatalf("SPI %d found, never installed", spi)
		}
	}
	if db.Load().Inbound(sa.AH, spis[1]) != nil || db.Load().Inbound(sa.AH, spis[0]) == nil {
		t.Fatal("the protocol is not part of the key")
	}
	for i, spi := range spis {
		if i%2 == 0 && db.RemoveInbound(sa.ESP, spi) == nil {
			t.Fatalf("SPI %d not removed", spi)
		}
	}
	for i, spi := range spis {
		if got := in(spi) != nil; got != (i%2 == 1) {
			t.Fatalf("SPI %d (entry %d): found %v after removing the even entries", spi, i, got)
		}
	}
}
