package ike

import (
	"testing"
	"time"
)

// TestManagerStats: the engine counts handshakes (a retransmitted
// IKE_SA_INIT request once), their durations, a failed one, and CHILD and
// IKE rekeys in both roles.
func TestManagerStats(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.drop() // the first IKE_SA_INIT request is lost
	p.advance(4 * time.Second)
	p.net.deliver()                               // the retransmission
	p.clk.t = p.clk.t.Add(300 * time.Millisecond) // B takes 300 ms to answer
	p.net.run(10)
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	if err := p.b.m.Rekey("a", ""); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	for _, nd := range []*node{p.a, p.b} {
		s := nd.m.Stats()
		if s.HandshakesStarted != 1 || s.HandshakesCompleted != 1 || s.HandshakesFailed != 0 || s.ChildRekeys != 1 || s.IKERekeys != 1 {
			t.Errorf("stats %+v", s)
		}
		if h := s.HandshakeDurations; h.Count != 1 || h.Buckets[len(h.Buckets)-1] != 1 {
			t.Errorf("histogram %+v", h)
		}
	}
	// A took 4.3 s from its first request, B 300 ms from the
	// retransmission it saw.
	if h := p.a.m.Stats().HandshakeDurations; h.Sum != 4300*time.Millisecond || h.Buckets[6] != 0 || h.Buckets[7] != 1 {
		t.Errorf("A's histogram %+v", h)
	}
	if h := p.b.m.Stats().HandshakeDurations; h.Sum != 300*time.Millisecond || h.Buckets[3] != 0 || h.Buckets[4] != 1 {
		t.Errorf("B's histogram %+v", h)
	}

	// A handshake that fails authentication counts as failed on both sides.
	pa, pb = peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	pb.PSK = pskFunc("another key")
	p = newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	for _, nd := range []*node{p.a, p.b} {
		if s := nd.m.Stats(); s.HandshakesStarted != 1 || s.HandshakesFailed != 1 || s.HandshakesCompleted != 0 {
			t.Errorf("failed handshake: stats %+v", s)
		}
	}
}
