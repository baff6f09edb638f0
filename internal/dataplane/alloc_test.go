package dataplane

import (
	"testing"

	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/sa"
)

// allocScenarios are the framings TestZeroAllocs covers: bare ESP in UDP and
// raw ESP and AH, over IPv4 and IPv6, in tunnel and transport mode.
func allocScenarios() []scenario {
	var out []scenario
	for _, c := range []struct {
		proto sa.Protocol
		encap sad.Encap
	}{{sa.ESP, sad.EncapUDP}, {sa.ESP, sad.EncapNone}, {sa.AH, sad.EncapNone}} {
		for _, mode := range []sa.Mode{sa.Tunnel, sa.Transport} {
			for _, v6 := range []bool{false, true} {
				out = append(out, scenario{proto: c.proto, encap: c.encap, mode: mode, v6: v6})
			}
		}
	}
	return out
}

// TestZeroAllocs checks that a packet's whole trip, TUN read, SPD, SAD,
// sealing, UDP or raw send, receive, opening, replay window, selector check
// and TUN write, allocates nothing once the pools are warm, for every
// framing of allocScenarios.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, sc := range allocScenarios() {
		t.Run(sc.String(), func(t *testing.T) {
			got := make(chan struct{}, 1)
			sc.onWrite = func([]byte) { got <- struct{}{} }
			p := newPair(t, sc)
			pkt := udpPacket(p.a, p.b, 1, make([]byte, 1200))
			roundTrip := func() {
				p.a.tun.In <- pkt
				<-got // a lost packet hangs the test until its timeout
			}
			for range 100 { // warm the pools
				roundTrip()
			}
			if n := testing.AllocsPerRun(1000, roundTrip); n != 0 {
				t.Errorf("%v allocations per packet, want 0", n)
			}
		})
	}
}

// BenchmarkPipeline measures the throughput of two data planes joined by the
// in-memory twins, 1400-byte packets in one direction, batches of 64.
func BenchmarkPipeline(b *testing.B) {
	for _, sc := range []scenario{
		{proto: sa.ESP, encap: sad.EncapUDP, suite: "aes256gcm16"},
		{proto: sa.ESP, encap: sad.EncapUDP, suite: "aes256gcm16", mode: sa.Transport},
		{proto: sa.ESP, encap: sad.EncapNone, suite: "aes256gcm16"},
		{proto: sa.ESP, encap: sad.EncapNone, suite: "aes256gcm16", mode: sa.Transport},
		{proto: sa.ESP, encap: sad.EncapUDP, suite: "chacha20poly1305"},
		{proto: sa.ESP, encap: sad.EncapNone, suite: "aes128-sha256"},
		{proto: sa.AH, encap: sad.EncapNone, suite: "sha256"},
	} {
		b.Run(sc.suite+"-"+sc.String(), func(b *testing.B) {
			got := make(chan struct{}, 1024)
			sc.onWrite = func([]byte) { got <- struct{}{} }
			sc.batch = 64
			p := newPair(b, sc)
			pkt := udpPacket(p.a, p.b, 1, make([]byte, 1400-28))
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				for range b.N {
					p.a.tun.In <- pkt
				}
			}()
			for range b.N {
				<-got
			}
		})
	}
}
