package ike

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/testenv"
)

// corpus returns the raw IKE messages of the openiked OSS-Fuzz corpus.
func corpus(t testing.TB) [][]byte { return testenv.OpenikedCorpus(t, 0) }

// TestCorpusLiveResponder sends every corpus message to a responder that
// has an established IKE SA: as it is, and with the SPIs of the live IKE SA
// written into its header. Nothing may panic, no half-open state may remain
// after the timeout, and the established SA must keep working.
func TestCorpusLiveResponder(t *testing.T) {
	msgs := corpus(t)
	if testing.Short() {
		msgs = msgs[:min(len(msgs), 2000)]
	}
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	// Accept any address and the corpus's proposals as far as we can.
	pb.RemoteAddrs = nil
	p := newStepPair(t, pa, pb, func(a, b *Config) { b.CookieThreshold = -1 })
	p.establish(t)
	live := p.b.m.SAs()[0]
	from, to := p.net.sent[0].from, p.net.sent[0].to
	for _, m := range msgs {
		p.b.m.HandlePacket(m, from, to)
		if len(m) >= 28 {
			b := append([]byte(nil), m...)
			binary.BigEndian.PutUint64(b[0:8], live.SPIi)
			binary.BigEndian.PutUint64(b[8:16], live.SPIr)
			p.b.m.HandlePacket(b, from, to)
		}
		p.net.queue = p.net.queue[:0]
	}
	found := false
	for _, sa := range p.b.m.SAs() {
		found = found || (sa.SPIi == live.SPIi && sa.State == StateEstablished)
	}
	if !found {
		t.Fatal("the established IKE SA is gone")
	}
	p.clk.t = p.clk.t.Add(31 * time.Second)
	p.b.m.tickAll()
	p.net.queue = nil
	if p.b.m.halfOpen != 0 {
		t.Fatalf("%d half-open IKE SAs left after the timeout", p.b.m.halfOpen)
	}
	for a := range p.b.m.actors {
		if info := a.info.Load(); info.State != StateEstablished || info.SPIi != live.SPIi {
			t.Fatalf("state left behind: %+v", info)
		}
	}
	// The tunnel still works: rekey its CHILD SA.
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
}

// FuzzHandlePacket feeds arbitrary datagrams to a responder with an
// established IKE SA; the fuzzer's input replaces the payloads after the
// header of the live SA's next request in half the cases.
func FuzzHandlePacket(f *testing.F) {
	for i, m := range corpus(f) {
		if i%500 == 0 {
			f.Add(m)
		}
	}
	pa, pb := peerPair(f, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pb.RemoteAddrs = nil
	p := newStepPair(f, pa, pb, nil)
	p.establish(f)
	from, to := p.net.sent[0].from, p.net.sent[0].to
	f.Fuzz(func(t *testing.T, b []byte) {
		p.b.m.HandlePacket(b, from, to)
		p.net.queue = p.net.queue[:0]
		if len(p.b.m.actors) > 50 {
			p.clk.t = p.clk.t.Add(31 * time.Second)
			p.b.m.tickAll()
			p.net.queue = p.net.queue[:0]
		}
	})
}
