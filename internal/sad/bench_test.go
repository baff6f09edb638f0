package sad

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
)

// The per-SA cost benchmarks of issue 9 (docs/performance.md, "Per-SA
// cost"). Each installed SA pair has its own SPI and its own Ref, as IKE
// gives every CHILD SA.

var benchSizes = []int{1000, 10000, 100000}

var (
	benchLocalTS  = traffic.MustParseSet("10.1.0.0/16")
	benchRemoteTS = traffic.MustParseSet("10.2.0.0/16")
	benchRemote   = netip.MustParseAddrPort("192.0.2.2:4500")
)

func benchIn(spi uint32) *InboundSA {
	return &InboundSA{Protocol: sa.ESP, SPI: spi, Local: benchLocalTS, Remote: benchRemoteTS, SA: &fakeIn{}}
}

func benchOut(spi uint32) *OutboundSA {
	return &OutboundSA{Protocol: sa.ESP, SPI: spi, Ref: spi, LocalTS: benchLocalTS, RemoteTS: benchRemoteTS, Remote: benchRemote, SA: fakeOut{}}
}

// benchSPIs returns n distinct random non-zero SPIs, as IKE picks them.
func benchSPIs(n int) []uint32 {
	r := rand.New(rand.NewPCG(1, 2))
	seen := make(map[uint32]bool, n)
	spis := make([]uint32, 0, n)
	for len(spis) < n {
		if s := r.Uint32(); s != 0 && !seen[s] {
			seen[s] = true
			spis = append(spis, s)
		}
	}
	return spis
}

// oldDB is the database before issue 9, kept as the baseline of the install
// benchmarks: one map per half, both copied whole on every change.
type oldDB struct {
	in  map[inKey]*InboundSA
	out map[uint32][]*OutboundSA
}

func (db *oldDB) update(f func(in map[inKey]*InboundSA, out map[uint32][]*OutboundSA)) {
	in := make(map[inKey]*InboundSA, len(db.in)+1)
	for k, v := range db.in {
		in[k] = v
	}
	out := make(map[uint32][]*OutboundSA, len(db.out)+1)
	for k, v := range db.out {
		out[k] = v
	}
	f(in, out)
	db.in, db.out = in, out
}

// installer is the part of a database the install benchmarks drive.
type installer interface {
	install(spi uint32)
	remove(spi uint32)
}

type newInstaller struct{ DB }

func (db *newInstaller) install(spi uint32) {
	if db.InstallInbound(benchIn(spi)) != nil {
		panic("sad: benchmark install failed")
	}
	if _, err := db.InstallOutbound(benchOut(spi)); err != nil {
		panic(err)
	}
}

func (db *newInstaller) remove(spi uint32) {
	db.RemoveInbound(sa.ESP, spi)
	db.RemoveOutbound(spi, sa.ESP, spi)
}

type oldInstaller struct{ oldDB }

func (db *oldInstaller) install(spi uint32) {
	db.update(func(in map[inKey]*InboundSA, _ map[uint32][]*OutboundSA) { in[inKey{sa.ESP, spi}] = benchIn(spi) })
	db.update(func(_ map[inKey]*InboundSA, out map[uint32][]*OutboundSA) {
		out[spi] = append([]*OutboundSA{benchOut(spi)}, out[spi]...)
	})
}

func (db *oldInstaller) remove(spi uint32) {
	db.update(func(in map[inKey]*InboundSA, _ map[uint32][]*OutboundSA) { delete(in, inKey{sa.ESP, spi}) })
	db.update(func(_ map[inKey]*InboundSA, out map[uint32][]*OutboundSA) { delete(out, spi) })
}

// prefill returns an installer of the kind named with the SA pairs of spis
// installed. The old one is filled directly: installing 100,000 pairs one
// by one would take it minutes (that is the quadratic cost).
func prefill(kind string, spis []uint32) installer {
	if kind == "old" {
		db := &oldInstaller{oldDB{in: make(map[inKey]*InboundSA, len(spis)), out: make(map[uint32][]*OutboundSA, len(spis))}}
		for _, spi := range spis {
			db.in[inKey{sa.ESP, spi}] = benchIn(spi)
			db.out[spi] = []*OutboundSA{benchOut(spi)}
		}
		return db
	}
	db := new(newInstaller)
	for _, spi := range spis {
		db.install(spi)
	}
	return db
}

// BenchmarkInstall measures one operation of a steady state with n SA
// pairs installed: install an inbound and an outbound SA, then remove
// both (four changes of the database), with the sharded database (new)
// and with the baseline that copies both maps per change (old).
func BenchmarkInstall(b *testing.B) {
	for _, kind := range []string{"old", "new"} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/n=%d", kind, n), func(b *testing.B) {
				spis := benchSPIs(n + 1)
				db, extra := prefill(kind, spis[:n]), spis[n]
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					db.install(extra)
					db.remove(extra)
				}
			})
		}
	}
}

// BenchmarkBringUp measures installing n SA pairs into an empty database,
// per pair. The baseline runs only at 1,000: it is quadratic.
func BenchmarkBringUp(b *testing.B) {
	for _, kind := range []string{"old", "new"} {
		for _, n := range benchSizes {
			if kind == "old" && n > 1000 {
				continue
			}
			b.Run(fmt.Sprintf("%s/n=%d", kind, n), func(b *testing.B) {
				spis := benchSPIs(n)
				b.ResetTimer()
				for range b.N {
					var db installer = new(newInstaller)
					if kind == "old" {
						db = &oldInstaller{}
					}
					for _, spi := range spis {
						db.install(spi)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pair")
			})
		}
	}
}

// BenchmarkLookup measures the data plane's lookups with n SA pairs
// installed, each packet for a random SA: inbound by SPI, outbound by Ref
// and the SA's negotiated selectors. Both allocate nothing.
func BenchmarkLookup(b *testing.B) {
	for _, n := range append([]int{1}, benchSizes...) {
		spis := benchSPIs(n)
		db := prefill("new", spis).(*newInstaller)
		snap := db.Load()
		// A random sequence of the installed SPIs, walked in order.
		r := rand.New(rand.NewPCG(3, 4))
		seq := make([]uint32, 1<<16)
		for i := range seq {
			seq[i] = spis[r.IntN(n)]
		}
		info := &packet.Info{Version: 4, Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.1"), Proto: 17, HasPorts: true, SrcPort: 1, DstPort: 9}
		b.Run(fmt.Sprintf("inbound/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				if snap.Inbound(sa.ESP, seq[i&(len(seq)-1)]) == nil {
					b.Fatal("SA not found")
				}
			}
		})
		b.Run(fmt.Sprintf("outbound/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				if snap.Lookup(seq[i&(len(seq)-1)], info) == nil {
					b.Fatal("SA not found")
				}
			}
		})
	}
}

// BenchmarkOneRefManyPeers measures the shape of a responder whose one
// connection serves n road warriors: n outbound SAs under one Ref (one
// PROTECT rule), each of its own peer, each for the peer's one address
// (a virtual IP), as IKE installs them. install is one more peer's SA
// installed and removed; holder is the PAD check of the daemon's
// authorizeTS (Snapshot.Holder) for one more peer's address, holderwalk
// the walk over the Ref's SAs that it replaced; lookup is the
// outbound lookup of a packet to a random peer. A bundle of more than
// indexMin SAs is a crowd, so that none of them grows with n
// (docs/performance.md, "IKE at scale").
func BenchmarkOneRefManyPeers(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		var db DB
		addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}) }
		peer := func(i int) *OutboundSA {
			return &OutboundSA{Protocol: sa.ESP, SPI: uint32(i + 1), Ref: 7, Peer: fmt.Sprintf("rw|peer%d", i),
				LocalTS: benchLocalTS, RemoteTS: traffic.Set{{Prefix: netip.PrefixFrom(addr(i), 32), PortHi: 0xffff}},
				Remote: benchRemote, SA: fakeOut{}}
		}
		for i := range n {
			if _, err := db.InstallOutbound(peer(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("install/n=%d", n), func(b *testing.B) {
			s := peer(n)
			for range b.N {
				if _, err := db.InstallOutbound(s); err != nil {
					b.Fatal(err)
				}
				db.RemoveOutbound(7, sa.ESP, s.SPI)
			}
		})
		b.Run(fmt.Sprintf("holder/n=%d", n), func(b *testing.B) {
			snap, s := db.Load(), peer(n)
			for range b.N {
				if snap.Holder(7, s.Peer, s.RemoteTS) != nil {
					b.Fatal("a free address is taken")
				}
			}
		})
		b.Run(fmt.Sprintf("holderwalk/n=%d", n), func(b *testing.B) {
			// The baseline of holder: the walk over every SA of the
			// Ref that authorizeTS did before.
			bd, _ := db.Load().out.get(7, 7)
			s := peer(n)
			for range b.N {
				bd.each(func(e entry) bool {
					if e.o.Peer != s.Peer && Overlap(e.o.RemoteTS, s.RemoteTS) {
						b.Fatal("a free address is taken")
					}
					return true
				})
			}
		})
		b.Run(fmt.Sprintf("lookup/n=%d", n), func(b *testing.B) {
			snap := db.Load()
			r := rand.New(rand.NewPCG(3, 4))
			infos := make([]packet.Info, 1024)
			for i := range infos {
				infos[i] = packet.Info{Version: 4, Src: netip.MustParseAddr("10.1.0.1"), Dst: addr(r.IntN(n)), Proto: 17, HasPorts: true, SrcPort: 1, DstPort: 9}
			}
			b.ReportAllocs()
			for i := range b.N {
				if snap.Lookup(7, &infos[i&1023]) == nil {
					b.Fatal("SA not found")
				}
			}
		})
	}
}
