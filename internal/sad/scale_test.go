package sad

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
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
	db.Load().in.each(func(k inKey, _ *InboundSA) bool { t.Fatalf("SA %08x left after its removal", k.spi); return false })
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

// TestLookupIndexMatchesWalk checks the crowd of large bundles (the
// per-SA cost work of issue 9: one connection's road warriors under one
// Ref): for random packets, Lookup returns what walking a plain list of
// the bundle's SAs newest first returns, with peers of one address, peers
// of two, a peer of a subnet, and SAs of one peer whose selectors overlap
// (the newest must win), after installs, after removals, after the bundle
// shrank into a list and grew into a crowd again. Holder, Covers,
// OutboundsOf and Outbound agree with the walk too, and a rekeyed SA
// replaces its predecessor in the crowd.
func TestLookupIndexMatchesWalk(t *testing.T) {
	var db DB
	host := func(b byte) traffic.Selector {
		return traffic.Selector{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, 0, b}), 32), PortHi: 0xffff}
	}
	local := traffic.MustParseSet("10.1.0.0/16")
	spi := uint32(0)
	var model []*OutboundSA // the bundle's SAs, newest first
	install := func(peer string, remote traffic.Set) {
		spi++
		s := &OutboundSA{Protocol: sa.ESP, SPI: spi, Ref: 7, Peer: peer, LocalTS: local, RemoteTS: remote,
			Remote: netip.MustParseAddrPort("192.0.2.2:4500"), SA: fakeOut{}}
		prev, err := db.InstallOutbound(s)
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil {
			model = slices.DeleteFunc(model, func(o *OutboundSA) bool { return o == prev })
		}
		model = append([]*OutboundSA{s}, model...)
	}
	remove := func(s uint32) {
		got := db.RemoveOutbound(7, sa.ESP, s)
		if got == nil {
			t.Fatalf("SPI %d not removed", s)
		}
		model = slices.DeleteFunc(model, func(o *OutboundSA) bool { return o == got })
	}
	for i := range 40 {
		install(fmt.Sprintf("rw%d", i), traffic.Set{host(byte(i))})
	}
	install("two", traffic.Set{host(100), host(101), host(100)})
	install("net", traffic.MustParseSet("10.2.1.0/24"))
	install("rw3", traffic.MustParseSet("10.2.0.3/32[udp]")) // overlaps rw3's older SA for UDP
	install("net", traffic.MustParseSet("10.2.1.0/25[udp]")) // overlaps net's older SA, not indexed
	install("net", traffic.MustParseSet("10.2.1.7/32[tcp]")) // newer than both, indexed
	install("rw5", traffic.Set{host(5)})                     // a rekey: replaces rw5's SA
	walk := func(info *packet.Info) *OutboundSA {
		for _, o := range model {
			if o.Allows(info) {
				return o
			}
		}
		return nil
	}
	r := rand.New(rand.NewPCG(7, 8))
	check := func(when string, crowded bool) {
		snap := db.Load()
		if b, _ := snap.out.get(7, 7); (b.crowd != nil) != crowded {
			t.Fatalf("%s: a bundle of %d SAs is a crowd: %v", when, len(model), b.crowd != nil)
		}
		if got := snap.OutboundsOf(7); !slices.Equal(got, model) {
			t.Fatalf("%s: OutboundsOf lists %d SAs, the walk %d, or in another order", when, len(got), len(model))
		}
		if len(model) > 0 && snap.Outbound(7) != model[0] {
			t.Fatalf("%s: Outbound is not the newest SA", when)
		}
		for range 5000 {
			dst := netip.AddrFrom4([4]byte{10, 2, byte(r.IntN(3)), byte(r.IntN(110))})
			info := &packet.Info{Version: 4, Src: netip.MustParseAddr("10.1.0.1"), Dst: dst, Proto: []uint8{6, 17}[r.IntN(2)], HasPorts: true, SrcPort: 1, DstPort: 9}
			if got, want := snap.Lookup(7, info), walk(info); got != want {
				t.Fatalf("%s: to %v proto %d: Lookup gives %v, the walk %v", when, dst, info.Proto, spiOf(got), spiOf(want))
			}
			covered := slices.ContainsFunc(model, func(o *OutboundSA) bool { return o.RemoteTS.Contains(dst) })
			if snap.Covers(7, dst) != covered {
				t.Fatalf("%s: Covers(%v) is %v, the walk %v", when, dst, !covered, covered)
			}
			claim := traffic.Set{{Prefix: netip.PrefixFrom(dst, 32), PortHi: 0xffff}}
			if r.IntN(4) == 0 {
				claim = traffic.Set{{Prefix: netip.PrefixFrom(dst, 30).Masked(), PortHi: 0xffff}}
			}
			peer := fmt.Sprintf("rw%d", r.IntN(45))
			holder := snap.Holder(7, peer, claim)
			taken := slices.ContainsFunc(model, func(o *OutboundSA) bool { return o.Peer != peer && Overlap(o.RemoteTS, claim) })
			if (holder != nil) != taken || (holder != nil && (holder.Peer == peer || !Overlap(holder.RemoteTS, claim))) {
				t.Fatalf("%s: Holder(%s, %v) is %v, the walk finds one: %v", when, peer, claim, spiOf(holder), taken)
			}
		}
	}
	check("after the installs", true)
	pkt := &packet.Info{Version: 4, Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.9"), Proto: 17, HasPorts: true, SrcPort: 1, DstPort: 9}
	snap := db.Load()
	if n := testing.AllocsPerRun(1000, func() { snap.Lookup(7, pkt) }); n != 0 {
		t.Errorf("%v allocations per indexed lookup", n)
	}
	for _, s := range []uint32{1, 4, 41, 43} {
		remove(s)
	}
	check("after the removals", true)
	for len(model) > indexMin/2 {
		remove(model[r.IntN(len(model))].SPI)
	}
	check("shrunk", false)
	for i := range 20 {
		install(fmt.Sprintf("new%d", i), traffic.Set{host(byte(200 + i))})
	}
	install("net2", traffic.MustParseSet("10.2.2.0/24"))
	check("grown again", true)
}

func spiOf(o *OutboundSA) any {
	if o == nil {
		return nil
	}
	return o.SPI
}
