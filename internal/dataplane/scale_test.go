package dataplane

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/packet"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/transform"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// The per-SA cost benchmarks of issue 9 (docs/performance.md, "Per-SA
// cost"): real ESP engines, aes256gcm16, tunnel mode, a 1024-packet replay
// window, one SA pair (inbound and outbound) per CHILD SA.

const (
	scaleSuite  = "aes256gcm16"
	scaleWindow = 1024
)

var (
	scaleLocalNet  = netip.MustParsePrefix("10.1.0.0/16")
	scaleRemoteNet = netip.MustParsePrefix("10.2.0.0/16")
	scaleLocal     = netip.MustParseAddr("192.0.2.1")
	scaleRemote    = netip.MustParseAddr("192.0.2.2")
)

// scalePair is one CHILD SA as installed: the inbound SA in the database,
// and the peer's outbound engine with the same key, which seals the
// packets the benchmark opens.
type scalePair struct {
	in   *sad.InboundSA
	peer *esp.Outbound
}

// installScale installs n SA pairs into db (SPIs 1..n inbound, n+1..2n
// outbound) and returns them.
func installScale(tb testing.TB, db *sad.DB, n int) []scalePair {
	tb.Helper()
	suite, err := transform.ParseESP(scaleSuite)
	if err != nil {
		tb.Fatal(err)
	}
	pairs := make([]scalePair, n)
	k := make([]byte, suite.KeyLen())
	newOut := func(spi uint32, local, remote netip.Addr) *esp.Outbound {
		binary.BigEndian.PutUint32(k, spi)
		t, err := suite.NewESP(k)
		if err != nil {
			tb.Fatal(err)
		}
		o, err := esp.NewOutbound(esp.Config{SPI: spi, Transform: t, Local: local, Remote: remote})
		if err != nil {
			tb.Fatal(err)
		}
		return o
	}
	for i := range pairs {
		spiIn, spiOut := uint32(i+1), uint32(n+i+1)
		binary.BigEndian.PutUint32(k, spiIn)
		t, err := suite.NewESP(k)
		if err != nil {
			tb.Fatal(err)
		}
		in, err := esp.NewInbound(esp.Config{SPI: spiIn, Transform: t, ReplayWindow: scaleWindow})
		if err != nil {
			tb.Fatal(err)
		}
		s := &sad.InboundSA{Protocol: sa.ESP, SPI: spiIn, Local: set(scaleLocalNet), Remote: set(scaleRemoteNet), LocalAddr: scaleLocal, SA: in}
		if err := db.InstallInbound(s); err != nil {
			tb.Fatal(err)
		}
		if _, err := db.InstallOutbound(&sad.OutboundSA{Protocol: sa.ESP, SPI: spiOut, Ref: spiOut,
			LocalTS: set(scaleLocalNet), RemoteTS: set(scaleRemoteNet), Encap: sad.EncapNone,
			Remote: netip.AddrPortFrom(scaleRemote, 0), SA: newOut(spiOut, scaleLocal, scaleRemote)}); err != nil {
			tb.Fatal(err)
		}
		pairs[i] = scalePair{in: s, peer: newOut(spiIn, scaleRemote, scaleLocal)}
	}
	return pairs
}

// BenchmarkMemoryPerSA reports the heap that n installed SA pairs hold,
// per pair (B/pair): both engines with their keys, AEADs and replay
// window, and both SAD entries with their selectors. The peer engines that
// the other benchmarks seal with are not counted.
func BenchmarkMemoryPerSA(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var perPair float64
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				db := new(sad.DB)
				pairs := installScale(b, db, n)
				for i := range pairs {
					pairs[i].peer = nil // not part of this host's state
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perPair = float64(after.HeapAlloc-before.HeapAlloc-uint64(cap(pairs))*16) / float64(n)
				runtime.KeepAlive(db)
			}
			b.ReportMetric(perPair, "B/pair")
		})
	}
}

// BenchmarkInboundScale measures the per-packet work of the inbound
// stages with n SAs installed, each packet on a random SA so that the
// SAs' state is as cold as with n real peers: SAD lookup by SPI, Decrypt
// (the worker), Accept on the replay window, decoding the inner packet and
// the selector check (the sequential stage), for 1400-byte inner packets.
// The goroutine hand-offs are left out; BenchmarkPipeline has them. The
// packets are sealed in rounds of 1024 with the timer stopped.
func BenchmarkInboundScale(b *testing.B) {
	for _, n := range []int{1, 1000, 10000, 100000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var db sad.DB
			pairs := installScale(b, &db, n)
			inner := tuntest.UDP(netip.AddrPortFrom(netip.MustParseAddr("10.2.0.1"), 1),
				netip.AddrPortFrom(netip.MustParseAddr("10.1.0.1"), 9), make([]byte, 1400-28))
			head, tail := pairs[0].peer.Overhead()
			const round = 1024
			type sealed struct {
				buf        []byte
				start, end int
			}
			pkts := make([]sealed, round)
			for i := range pkts {
				pkts[i].buf = make([]byte, head+len(inner)+tail)
			}
			r := rand.New(rand.NewPCG(5, 6))
			seal := func() {
				for i := range pkts {
					p, o := &pkts[i], pairs[r.IntN(n)].peer
					copy(p.buf[head:], inner)
					seq, err := o.NextSeq()
					if err != nil {
						b.Fatal(err)
					}
					if p.start, p.end, err = o.SealSeq(p.buf, head, head+len(inner), seq); err != nil {
						b.Fatal(err)
					}
				}
			}
			var info packet.Info
			b.SetBytes(int64(len(inner)))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				seal()
				b.StartTimer()
				for i := 0; i < round && done < b.N; i, done = i+1, done+1 {
					p := &pkts[i]
					in := db.Load().Inbound(sa.ESP, binary.BigEndian.Uint32(p.buf[p.start+packet.IPv4MinHeaderLen:]))
					if in == nil {
						b.Fatal("SA not found")
					}
					ns, ne, seq, err := in.SA.Decrypt(p.buf, p.start, p.end)
					if err != nil {
						b.Fatal(err)
					}
					if err := in.Accept(seq); err != nil {
						b.Fatal(err)
					}
					if err := packet.Decode(p.buf[ns:ne], &info); err != nil || !in.Allows(&info) {
						b.Fatal("the inner packet does not pass the selector check")
					}
				}
			}
		})
	}
}
