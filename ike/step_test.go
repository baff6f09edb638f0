package ike

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// parse parses a datagram the engine sent (without a non-ESP marker).
func parse(t testing.TB, d datagram) *ikewire.Message {
	t.Helper()
	b := d.pkt
	if d.from.Port() == 4500 {
		b = b[4:]
	}
	m, err := ikewire.Parse(b)
	if err != nil {
		t.Fatalf("the engine sent an unparsable message: %v", err)
	}
	return m
}

func TestHandshakeSuites(t *testing.T) {
	for _, tc := range []struct{ ike, esp, suite string }{
		{"aes256gcm16-prfsha256-x25519", "aes256gcm16", "aes256gcm16"},
		{"aes128gcm16-prfsha384-ecp384", "aes128gcm16-esn", "aes128gcm16"},
		{"chacha20poly1305-prfsha512-curve25519", "chacha20poly1305", "chacha20poly1305"},
		{"aes256-sha256-modp2048", "aes256-sha256", "aes256-sha256"},
		{"aes128-sha384-prfsha384-ecp256", "aes128-sha1", "aes128-sha1"},
	} {
		t.Run(tc.ike, func(t *testing.T) {
			pa, pb := peerPair(t, tc.ike, tc.esp)
			p := newStepPair(t, pa, pb, nil)
			p.establish(t)
			checkKeys(t, p.a.inst, p.b.inst, 1)
			c := p.a.inst.live()[0]
			if c.Suite.Name != tc.suite || c.Ref != 7 || c.Peer != "b" || c.Child != "net" {
				t.Errorf("installed %+v", c)
			}
			if c.ESN != (tc.esp == "aes128gcm16-esn") {
				t.Errorf("ESN %v", c.ESN)
			}
			if !c.LocalTS.Equal(traffic.MustParseSet("10.1.0.0/16")) || !c.RemoteTS.Equal(traffic.MustParseSet("10.2.0.0/16")) {
				t.Errorf("selectors %v -> %v", c.LocalTS, c.RemoteTS)
			}
			if c.UDPEncap || c.Mode != sa.Tunnel {
				t.Errorf("encap %v mode %v", c.UDPEncap, c.Mode)
			}
			for _, nd := range []*node{p.a, p.b} {
				evs := nd.events()
				if !hasEvent(evs, EventIKEUp) || !hasEvent(evs, EventChildUp) {
					t.Errorf("events %v", evs)
				}
				sas := nd.m.SAs()
				if len(sas) != 1 || sas[0].State != StateEstablished || len(sas[0].Children) != 1 || sas[0].Children[0].KeyIn != nil {
					t.Errorf("SAs() = %+v", sas)
				}
			}
			if got := p.a.m.SAs()[0].Proposal; got != p.b.m.SAs()[0].Proposal {
				t.Errorf("proposals differ: %q and %q", got, p.b.m.SAs()[0].Proposal)
			}
		})
	}
}

// TestHandshakeMessages checks the payloads of the four messages against
// RFC 7296, Section 1.2.
func TestHandshakeMessages(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519")
	pa.Children[0].Mode, pb.Children[0].Mode = sa.Transport, sa.Transport
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	m1 := parse(t, p.net.deliver())
	if m1.Exchange != ikewire.IKE_SA_INIT || m1.SPIr != 0 || !m1.IsInitiator() || m1.MessageID != 0 {
		t.Fatalf("message 1 header %+v", m1.Header)
	}
	for _, want := range []ikewire.NotifyType{ikewire.NotifyNATDetectionSourceIP, ikewire.NotifyNATDetectionDestinationIP, ikewire.NotifyIKEv2FragmentationSupported} {
		if findNotify(m1.Payloads, want) == nil {
			t.Errorf("message 1 lacks %v", want)
		}
	}
	m2 := parse(t, p.net.deliver())
	if m2.SPIr == 0 || !m2.IsResponse() || len(find[*ikewire.SA](m2.Payloads).Proposals) != 1 {
		t.Fatalf("message 2 %+v", m2.Header)
	}
	// Messages 3 and 4 are encrypted; check what we can see.
	d3 := p.net.deliver()
	m3 := parse(t, d3)
	if m3.Exchange != ikewire.IKE_AUTH || m3.MessageID != 1 {
		t.Fatalf("message 3 %+v", m3.Header)
	}
	p.net.deliver()
	checkKeys(t, p.a.inst, p.b.inst, 1)
	c := p.a.inst.live()[0]
	if c.Mode != sa.Transport || c.KE != 0 {
		t.Errorf("mode %v, KE %d: the first CHILD SA uses no KE (RFC 7296, Section 1.2)", c.Mode, c.KE)
	}
}

func TestRetransmission(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	first := p.net.drop() // IKE_SA_INIT lost
	p.advance(3 * time.Second)
	if len(p.net.queue) != 0 {
		t.Fatal("retransmitted before the timeout")
	}
	p.advance(time.Second)
	if len(p.net.queue) != 1 || !bytes.Equal(p.net.queue[0].pkt, first.pkt) {
		t.Fatal("no identical retransmission after 4 s")
	}
	p.net.deliver() // request
	p.net.deliver() // response
	p.net.deliver() // IKE_AUTH request reaches B, which installs
	resp := p.net.drop()
	if n, _ := p.b.inst.counts(); n != 1 {
		t.Fatalf("B installed %d", n)
	}
	// The initiator retransmits after 4 s; the responder answers from its
	// cache, byte for byte, and installs nothing new (RFC 7296, Section 2.1).
	p.advance(4 * time.Second)
	if len(p.net.queue) != 1 {
		t.Fatalf("%d datagrams queued, want the retransmitted IKE_AUTH", len(p.net.queue))
	}
	p.net.deliver()
	if len(p.net.queue) != 1 || !bytes.Equal(p.net.queue[0].pkt, resp.pkt) {
		t.Fatal("the responder did not resend its cached response")
	}
	p.net.deliver()
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if n, _ := p.b.inst.counts(); n != 1 {
		t.Fatalf("B installed %d after a retransmission", n)
	}
}

func TestRetransmitBackoffAndGiveUp(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, func(a, b *Config) { a.HalfOpenTimeout = time.Hour })
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.drop()
	// strongSwan's schedule: 4 s * 1.8^n.
	var at []time.Duration
	var now time.Duration
	for step := 0; step < 400; step++ {
		p.advance(500 * time.Millisecond)
		now += 500 * time.Millisecond
		if len(p.net.queue) > 0 {
			p.net.drop()
			at = append(at, now)
		}
	}
	// The gaps between sends: 4 s, 7.2 s, 12.96 s, 23.328 s, 41.99 s, then
	// 75.58 s until the peer is declared dead.
	want := []time.Duration{4000, 7200, 12960, 23328, 41990}
	if len(at) != len(want) {
		t.Fatalf("retransmissions at %v, want 5", at)
	}
	prev := time.Duration(0)
	for i := range want {
		gap := at[i] - prev
		prev = at[i]
		if d := gap - want[i]*time.Millisecond; d < -500*time.Millisecond || d > 500*time.Millisecond {
			t.Errorf("retransmission %d after %v, want %v", i, gap, want[i]*time.Millisecond)
		}
	}
	evs := p.a.events()
	var down *Event
	for i := range evs {
		if evs[i].Kind == EventIKEDown {
			down = &evs[i]
		}
	}
	if down == nil || !errors.Is(down.Err, ErrPeerDead) {
		t.Fatalf("events %v, want ike_down with ErrPeerDead", evs)
	}
	if len(p.a.m.SAs()) != 0 {
		t.Fatal("the IKE SA is still there")
	}
}

func TestCookie(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, func(a, b *Config) { b.CookieThreshold = 1 })
	// A third host leaves a half-open IKE SA on B.
	pc := pa
	pc.LocalAddrs = host(addrC)
	pb2 := pb
	pb2.Name, pb2.RemoteAddrs = "c", host(addrC)
	if err := p.b.m.SetPeers([]Peer{pb, pb2}); err != nil {
		t.Fatal(err)
	}
	c := newStepNode(t, p.net, addrC, Config{Now: p.clk.Now, Logger: testLogger(t)})
	if err := c.m.SetPeers([]Peer{pc}); err != nil {
		t.Fatal(err)
	}
	if err := c.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver() // C's IKE_SA_INIT: B is now at the threshold
	p.net.drop()    // B's answer is lost; the SA stays half-open
	if p.b.m.halfOpen != 1 {
		t.Fatalf("half-open %d", p.b.m.halfOpen)
	}
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver() // A's IKE_SA_INIT
	m := parse(t, p.net.queue[0])
	n := findNotify(m.Payloads, ikewire.NotifyCookie)
	if n == nil || len(m.Payloads) != 1 || m.SPIr != 0 {
		t.Fatalf("B answered %v, want a lone COOKIE", m.Payloads)
	}
	if p.b.m.halfOpen != 1 || len(p.b.m.actors) != 1 {
		t.Fatal("B kept state for a request without a cookie")
	}
	p.net.deliver() // the COOKIE answer
	m = parse(t, p.net.queue[0])
	if n2, ok := m.Payloads[0].(*ikewire.Notify); !ok || n2.Type != ikewire.NotifyCookie || !bytes.Equal(n2.Data, n.Data) {
		t.Fatal("A's second IKE_SA_INIT does not start with the cookie (RFC 7296, Section 2.6)")
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
}

func TestInvalidKERetry(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519-ecp256", "aes256gcm16")
	pb.Proposals = mustIKE(t, "aes256gcm16-prfsha256-ecp256")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	if ke := find[*ikewire.KE](parse(t, p.net.deliver()).Payloads); ke.Group != 31 {
		t.Fatalf("first KE group %d, want 31", ke.Group)
	}
	m := parse(t, p.net.deliver())
	n := findNotify(m.Payloads, ikewire.NotifyInvalidKEPayload)
	if n == nil || !bytes.Equal(n.Data, []byte{0, 19}) {
		t.Fatalf("B answered %v, want INVALID_KE_PAYLOAD(19)", m.Payloads)
	}
	if len(p.b.m.actors) != 0 {
		t.Fatal("B kept state after INVALID_KE_PAYLOAD")
	}
	m = parse(t, p.net.queue[0])
	if ke := find[*ikewire.KE](m.Payloads); ke.Group != 19 || m.MessageID != 0 {
		t.Fatalf("retry with group %d, message ID %d", ke.Group, m.MessageID)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if got := p.a.m.SAs()[0].Proposal; got != "aes256gcm16-prfsha256-ecp256" {
		t.Errorf("proposal %q", got)
	}
}

func TestWrongPSK(t *testing.T) {
	for _, side := range []string{"responder", "initiator"} {
		t.Run(side, func(t *testing.T) {
			pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
			if side == "responder" {
				pb.PSK = pskFunc("wrong")
			} else {
				// B accepts A's AUTH (same secret on its side) but A
				// checks B's AUTH with another secret.
				pa.PSK = func(local, remote Identity) []byte { return []byte("correct horse battery staple") }
			}
			p := newStepPair(t, pa, pb, nil)
			if side == "initiator" {
				calls := 0
				pa2 := pa
				pa2.PSK = func(Identity, Identity) []byte {
					calls++
					if calls > 1 {
						return []byte("wrong")
					}
					return []byte("correct horse battery staple")
				}
				if err := p.a.m.SetPeers([]Peer{pa2}); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			p.net.run(10)
			if side == "responder" {
				if n, _ := p.b.inst.counts(); n != 0 {
					t.Fatal("B installed a CHILD SA")
				}
				if len(p.b.m.SAs()) != 0 {
					t.Fatal("B kept the IKE SA")
				}
			}
			if n, _ := p.a.inst.counts(); n != 0 {
				t.Fatal("A installed a CHILD SA")
			}
			if len(p.a.m.SAs()) != 0 {
				t.Fatal("A kept the IKE SA")
			}
			evs := p.a.events()
			if !hasEvent(evs, EventAuthFailed) {
				t.Fatalf("A's events %v", evs)
			}
			if side == "responder" && !hasEvent(p.b.events(), EventAuthFailed) {
				t.Fatal("B reported no auth_failed")
			}
		})
	}
}

func TestNoProposalChosen(t *testing.T) {
	t.Run("ike", func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		pb.Proposals = mustIKE(t, "aes128-sha256-modp3072")
		p := newStepPair(t, pa, pb, nil)
		if err := p.a.m.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		p.net.run(10)
		var ne *NotifyError
		evs := p.a.events()
		if len(evs) == 0 || !errors.As(evs[len(evs)-1].Err, &ne) || ne.Type != ikewire.NotifyNoProposalChosen {
			t.Fatalf("events %v", evs)
		}
		if len(p.a.m.SAs())+len(p.b.m.SAs()) != 0 {
			t.Fatal("an IKE SA is left")
		}
	})
	t.Run("esp", func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		pb.Children[0].Proposals = mustESP(t, "aes128-sha256")
		p := newStepPair(t, pa, pb, nil)
		p.establish(t)
		if n, _ := p.a.inst.counts(); n != 0 {
			t.Fatal("A installed")
		}
		if n, _ := p.b.inst.counts(); n != 0 {
			t.Fatal("B installed")
		}
		evs := p.a.events()
		var ne *NotifyError
		if !hasEvent(evs, EventIKEUp) || !hasEvent(evs, EventChildFailed) || !errors.As(evs[len(evs)-1].Err, &ne) || ne.Type != ikewire.NotifyNoProposalChosen {
			t.Fatalf("events %v", evs)
		}
		if sas := p.a.m.SAs(); len(sas) != 1 || sas[0].State != StateEstablished {
			t.Fatal("the IKE SA should stay up (RFC 7296, Section 2.21.3)")
		}
	})
}

func TestTSUnacceptable(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pb.Children[0].LocalTS = traffic.MustParseSet("10.3.0.0/16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	if n, _ := p.b.inst.counts(); n != 0 {
		t.Fatal("B installed")
	}
	evs := p.a.events()
	var ne *NotifyError
	if !errors.As(evs[len(evs)-1].Err, &ne) || ne.Type != ikewire.NotifyTSUnacceptable {
		t.Fatalf("events %v", evs)
	}
}

func TestNarrowing(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pb.Children[0].LocalTS = traffic.MustParseSet("10.2.1.0/24", "10.9.0.0/16")
	pb.Children[0].RemoteTS = traffic.MustParseSet("10.1.0.0/17[tcp]")
	p := newStepPair(t, pa, pb, nil)
	trig := &Trigger{Src: mustAddr("10.1.0.5"), Dst: mustAddr("10.2.1.7"), Proto: 6, SrcPort: 40000, DstPort: 443, HasPorts: true}
	if err := p.a.m.Initiate("b", "net", trig); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	c := p.a.inst.live()[0]
	if want := traffic.MustParseSet("10.1.0.0/17[tcp]"); !c.LocalTS.Equal(want) {
		t.Errorf("local TS %v, want %v", c.LocalTS, want)
	}
	if want := traffic.MustParseSet("10.2.1.0/24"); !c.RemoteTS.Equal(want) {
		t.Errorf("remote TS %v, want %v", c.RemoteTS, want)
	}
}

func TestTriggerFirst(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	trig := &Trigger{Src: mustAddr("10.1.0.5"), Dst: mustAddr("10.2.1.7"), Proto: 1}
	if err := p.a.m.Initiate("b", "net", trig); err != nil {
		t.Fatal(err)
	}
	p.net.deliver()
	p.net.deliver()
	// Open A's IKE_AUTH request with B's keys to see the selectors.
	d := p.net.queue[0]
	m := parse(t, d)
	var bs *session
	for a := range p.b.m.actors {
		bs = a.s
	}
	pl, err := ikewire.OpenSK(m, openerOf(bs.sa))
	if err != nil {
		t.Fatal(err)
	}
	tsi := find[*ikewire.TSi](pl).Selectors
	tsr := find[*ikewire.TSr](pl).Selectors
	if len(tsi) != 2 || tsi[0].StartAddress != mustAddr("10.1.0.5") || tsi[0].EndAddress != mustAddr("10.1.0.5") || tsi[0].IPProtocol != 1 {
		t.Errorf("TSi %+v: the trigger packet must come first (RFC 7296, Section 2.9)", tsi)
	}
	if len(tsr) != 2 || tsr[0].StartAddress != mustAddr("10.2.1.7") {
		t.Errorf("TSr %+v", tsr)
	}
	if find[*ikewire.KE](pl) != nil || findNotify(pl, ikewire.NotifyInitialContact) == nil || findNotify(pl, ikewire.NotifyESPTFCPaddingNotSupported) == nil {
		t.Error("IKE_AUTH request: want INITIAL_CONTACT and ESP_TFC_PADDING_NOT_SUPPORTED, no KE")
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if c := p.a.inst.live()[0]; !c.LocalTS.Equal(traffic.MustParseSet("10.1.0.0/16")) {
		t.Errorf("local TS %v", c.LocalTS)
	}
}

func TestChildRekey(t *testing.T) {
	for _, esp := range []string{"aes256gcm16", "aes128-sha256-x25519", "aes256gcm16-modp3072"} {
		t.Run(esp, func(t *testing.T) {
			pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", esp)
			p := newStepPair(t, pa, pb, nil)
			p.establish(t)
			old := p.a.inst.live()[0]
			if err := p.a.m.Rekey("b", "net"); err != nil {
				t.Fatal(err)
			}
			req := parse(t, p.net.deliver()) // CREATE_CHILD_SA request
			if req.Exchange != ikewire.CREATE_CHILD_SA {
				t.Fatalf("exchange %v", req.Exchange)
			}
			// B installed the new SA before answering; the old one stays.
			if n, d := p.b.inst.counts(); n != 2 || d != 0 {
				t.Fatalf("B: %d installs, %d deletes", n, d)
			}
			p.net.deliver() // response: A installs the new SA
			if n, d := p.a.inst.counts(); n != 2 || d != 0 {
				t.Fatalf("A: %d installs, %d deletes (make before break)", n, d)
			}
			checkKeys(t, p.a.inst, p.b.inst, 2)
			p.net.deliver() // Delete of the old SA
			p.net.deliver() // its response
			checkKeys(t, p.a.inst, p.b.inst, 1)
			nw := p.a.inst.live()[0]
			if nw.SPIIn == old.SPIIn || bytes.Equal(nw.KeyIn, old.KeyIn) {
				t.Fatal("the rekeyed SA reuses SPI or keys")
			}
			if pfs := esp != "aes256gcm16"; (nw.KE != 0) != pfs {
				t.Errorf("KE %d, PFS %v", nw.KE, pfs)
			}
			if !hasEvent(p.a.events(), EventChildRekeyed) || !hasEvent(p.b.events(), EventChildRekeyed) {
				t.Error("no child_rekeyed events")
			}
			if len(p.a.m.SAs()[0].Children) != 1 || len(p.b.m.SAs()[0].Children) != 1 {
				t.Error("old CHILD SA still listed")
			}
		})
	}
}

func TestChildRekeyTimer(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pa.Children[0].RekeyTime = time.Hour
	pb.Children[0].RekeyTime = -1
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	p.advance(54 * time.Minute)
	if len(p.net.queue) != 0 {
		t.Fatal("rekeyed before 90% of the rekey time")
	}
	p.advance(6 * time.Minute)
	if len(p.net.queue) != 1 {
		t.Fatal("no rekey after the rekey time")
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if n, d := p.a.inst.counts(); n != 2 || d != 1 {
		t.Fatalf("A: %d installs %d deletes", n, d)
	}
}

func TestCreateChildPFS(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16-ecp256")
	second := ChildConfig{Name: "host", LocalTS: traffic.MustParseSet("10.1.9.9/32"), RemoteTS: traffic.MustParseSet("10.2.9.9/32"), Proposals: mustESP(t, "aes128gcm16-ecp256")}
	pa.Children = append(pa.Children, second)
	second.LocalTS, second.RemoteTS = second.RemoteTS, second.LocalTS
	pb.Children = append([]ChildConfig{second}, pb.Children...)
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	if err := p.a.m.Initiate("b", "host", nil); err != nil {
		t.Fatal(err)
	}
	// Initiating an up child again does nothing.
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 2)
	for _, c := range p.a.inst.live() {
		if c.Child == "host" && (c.KE != 19 || c.Suite.Name != "aes128gcm16") {
			t.Errorf("host child: KE %d suite %s", c.KE, c.Suite.Name)
		}
	}
}

func TestIKERekey(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	before := p.a.m.SAs()[0]
	if err := p.a.m.Rekey("b", ""); err != nil {
		t.Fatal(err)
	}
	p.net.deliver() // CREATE_CHILD_SA for IKE
	p.net.deliver() // answer
	del := parse(t, p.net.queue[0])
	if del.Exchange != ikewire.INFORMATIONAL || del.SPIi != before.SPIi {
		t.Fatalf("expected the Delete on the old IKE SA, got %v", del.Header)
	}
	p.net.run(10)
	after := p.a.m.SAs()
	if len(after) != 1 || after[0].SPIi == before.SPIi || after[0].SPIr == before.SPIr {
		t.Fatalf("after rekey: %+v", after)
	}
	if b := p.b.m.SAs(); len(b) != 1 || b[0].SPIi != after[0].SPIi || b[0].SPIr != after[0].SPIr {
		t.Fatalf("B after rekey: %+v", b)
	}
	if len(after[0].Children) != 1 {
		t.Fatal("CHILD SAs lost in the IKE rekey")
	}
	if _, d := p.a.inst.counts(); d != 0 {
		t.Fatal("CHILD SAs deleted by the IKE rekey")
	}
	if len(p.a.m.bySPI) != 1 || len(p.b.m.bySPI) != 1 {
		t.Fatalf("old SPIs still routed: %d, %d", len(p.a.m.bySPI), len(p.b.m.bySPI))
	}
	// The new IKE SA works: a CHILD SA rekey on it gives agreeing keys
	// (from the new SK_d).
	if err := p.b.m.Rekey("a", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	// And the old one is gone: a message on it is dropped.
}

func TestDPDDeadPeer(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pa.DPDDelay = 30 * time.Second
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	p.a.events()
	p.advance(30 * time.Second)
	if len(p.net.queue) != 1 {
		t.Fatal("no liveness check after DPDDelay")
	}
	m := parse(t, p.net.queue[0])
	if m.Exchange != ikewire.INFORMATIONAL {
		t.Fatalf("exchange %v", m.Exchange)
	}
	// A live peer answers with an empty INFORMATIONAL.
	p.net.run(2)
	if len(p.a.m.SAs()) != 1 {
		t.Fatal("IKE SA gone after a successful check")
	}
	// Now the peer dies.
	for i := 0; i < 400 && len(p.a.m.SAs()) > 0; i++ {
		p.clk.t = p.clk.t.Add(time.Second)
		p.a.m.tickAll()
		p.net.queue = nil
	}
	if len(p.a.m.SAs()) != 0 {
		t.Fatal("dead peer not detected")
	}
	if live := p.a.inst.live(); len(live) != 0 {
		t.Fatal("CHILD SA not deleted")
	}
	evs := p.a.events()
	if !hasEvent(evs, EventChildDown) || !hasEvent(evs, EventIKEDown) || !errors.Is(evs[len(evs)-1].Err, ErrPeerDead) {
		t.Fatalf("events %v", evs)
	}
}

func TestDelete(t *testing.T) {
	t.Run("child", func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		p := newStepPair(t, pa, pb, nil)
		p.establish(t)
		if err := p.a.m.Terminate("b", "net"); err != nil {
			t.Fatal(err)
		}
		p.net.run(10)
		if len(p.a.inst.live())+len(p.b.inst.live()) != 0 {
			t.Fatal("CHILD SAs left")
		}
		if len(p.a.m.SAs()) != 1 || len(p.b.m.SAs()) != 1 {
			t.Fatal("the IKE SA should stay")
		}
		if !hasEvent(p.b.events(), EventChildDown) {
			t.Fatal("B: no child_down")
		}
	})
	t.Run("ike", func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		p := newStepPair(t, pa, pb, nil)
		p.establish(t)
		if err := p.b.m.Terminate("a", ""); err != nil {
			t.Fatal(err)
		}
		p.net.run(10)
		if len(p.a.inst.live())+len(p.b.inst.live()) != 0 {
			t.Fatal("CHILD SAs left")
		}
		if len(p.a.m.SAs())+len(p.b.m.SAs()) != 0 {
			t.Fatal("IKE SAs left")
		}
		for _, nd := range []*node{p.a, p.b} {
			evs := nd.events()
			if !hasEvent(evs, EventIKEDown) || !hasEvent(evs, EventChildDown) {
				t.Fatalf("events %v", evs)
			}
		}
	})
}

func TestHalfOpenTimeout(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver()
	p.net.queue = nil // A never hears back
	if p.b.m.halfOpen != 1 {
		t.Fatal("no half-open SA")
	}
	p.clk.t = p.clk.t.Add(30 * time.Second)
	p.b.m.tickAll()
	if p.b.m.halfOpen != 0 || len(p.b.m.actors) != 0 || len(p.b.m.bySPI) != 0 || len(p.b.m.byInit) != 0 {
		t.Fatal("half-open SA not removed after 30 s")
	}
}

func TestMalformedNoState(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	good := p.net.queue[0]
	p.net.queue = nil
	from, to := good.from, good.to
	// Every truncation of a valid IKE_SA_INIT and a few bit flips.
	for i := 0; i < len(good.pkt); i++ {
		p.b.m.HandlePacket(good.pkt[:i], from, to)
	}
	for i := 28; i < len(good.pkt); i += 7 {
		b := bytes.Clone(good.pkt)
		b[i] ^= 0xff
		p.b.m.HandlePacket(b, from, to)
		p.net.queue = nil
	}
	p.clk.t = p.clk.t.Add(31 * time.Second)
	p.b.m.tickAll()
	if len(p.b.m.actors) != 0 || p.b.m.halfOpen != 0 {
		t.Fatalf("%d sessions left after malformed input", len(p.b.m.actors))
	}
}

func TestInitialContact(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	// A restarts: a fresh manager at the same address.
	inst := &fakeInstaller{}
	a2 := NewManager(Config{Now: p.clk.Now, Logger: testLogger(t)}, inst, stepTransport{p.net})
	a2.step = true
	p.net.nodes[addrA] = a2
	if err := a2.SetPeers([]Peer{pa}); err != nil {
		t.Fatal(err)
	}
	if err := a2.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	if sas := p.b.m.SAs(); len(sas) != 1 {
		t.Fatalf("B has %d IKE SAs; INITIAL_CONTACT should delete the old one", len(sas))
	}
	checkKeys(t, inst, p.b.inst, 1)
}

func TestNATDetection(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pa.Encap = true
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver()
	p.net.deliver()
	d := p.net.queue[0]
	if d.from.Port() != 4500 || d.to.Port() != 4500 || !bytes.Equal(d.pkt[:4], []byte{0, 0, 0, 0}) {
		t.Fatalf("IKE_AUTH sent %v -> %v, want port 4500 with the non-ESP marker (RFC 7296, Section 2.23)", d.from, d.to)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	for _, c := range append(p.a.inst.live(), p.b.inst.live()...) {
		if !c.UDPEncap || c.LocalEncapPort != 4500 || c.RemoteEncapPort != 4500 {
			t.Errorf("CHILD SA without UDP encapsulation: %+v", c)
		}
	}
	if sa := p.b.m.SAs()[0]; !sa.NATRemote || sa.NATLocal {
		t.Errorf("B: NAT remote %v local %v", sa.NATRemote, sa.NATLocal)
	}
	// A keepalive from B's point of view is ignored.
	p.b.m.HandlePacket([]byte{0xff}, d.from, d.to)
}

func TestFragmentation(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	// Many selectors make IKE_AUTH larger than the fragment size.
	var sel []string
	for i := 0; i < 60; i++ {
		sel = append(sel, "10.1."+itoa(i)+".0/24")
	}
	pa.Children[0].LocalTS = traffic.MustParseSet(sel...)
	p := newStepPair(t, pa, pb, func(a, b *Config) { a.FragmentSize = 576; b.FragmentSize = 576 })
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.deliver()
	p.net.deliver()
	if len(p.net.queue) < 2 {
		t.Fatalf("IKE_AUTH in %d datagrams, want fragments", len(p.net.queue))
	}
	for _, d := range p.net.queue {
		if len(d.pkt) > 576 {
			t.Fatalf("fragment of %d bytes", len(d.pkt))
		}
	}
	p.net.run(100)
	checkKeys(t, p.a.inst, p.b.inst, 1)
}

func TestInstallFailure(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.a.inst.fail = true
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10) // the Delete A sends for the SA it could not install
	if len(p.b.inst.live()) != 0 {
		t.Fatal("B keeps the CHILD SA that A could not install")
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestAHChild(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	for _, p := range []*Peer{&pa, &pb} {
		ah, err := transform.ParseAHProposal("sha256")
		if err != nil {
			t.Fatal(err)
		}
		p.Children[0].Protocol = sa.AH
		p.Children[0].Proposals = []transform.ESPProposal{ah}
	}
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	c := p.a.inst.live()[0]
	if c.Protocol != sa.AH || c.Suite.Name != "sha256" || len(c.KeyIn) != 32 {
		t.Fatalf("AH SA %+v", c)
	}
	if _, err := c.Suite.NewAH(c.KeyIn); err != nil {
		t.Fatal(err)
	}
}

// TestSimultaneousChildRekey rekeys the same CHILD SA from both sides at
// once: each answers the other's request as usual, and the rekey with the
// lowest of the four nonces is redundant; its initiator deletes it and the
// other deletes the old SA (RFC 7296, Section 2.8.1). No TEMPORARY_FAILURE,
// no retry: one round of exchanges (TestRekeyCollisions covers every
// order).
func TestSimultaneousChildRekey(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	if err := p.b.m.Rekey("a", "net"); err != nil {
		t.Fatal(err)
	}
	if len(p.net.queue) != 2 {
		t.Fatalf("%d requests in flight", len(p.net.queue))
	}
	p.net.run(10)
	if na, nb := createChildRequests(t, p, addrA), createChildRequests(t, p, addrB); na != 1 || nb != 1 {
		t.Fatalf("CREATE_CHILD_SA requests %d and %d, want one each", na, nb)
	}
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if na, da := p.a.inst.counts(); na != 3 || da != 2 {
		t.Fatalf("A: %d installs, %d deletes; want both rekeys installed, the old and the redundant SA deleted", na, da)
	}
}

func TestUnspecifiedLocalAddr(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pa.LocalAddrs = nil
	p := newStepPair(t, pa, pb, func(a, b *Config) {
		a.LocalAddr = func(remote netip.Addr) (netip.Addr, error) { return addrA, nil }
	})
	p.establish(t)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if c := p.a.inst.live()[0]; c.UDPEncap || c.Local.Addr() != addrA {
		t.Fatalf("local %v encap %v", c.Local, c.UDPEncap)
	}
}

// TestResponderDeletesStaleRekeyed checks that a responder deletes the old
// CHILD SA itself when the initiator never sends the Delete.
func TestResponderDeletesStaleRekeyed(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.deliver()
	p.net.deliver()
	p.net.drop() // A's Delete of the old SA is lost, and so are its retransmissions
	p.clk.t = p.clk.t.Add(staleTimeout)
	p.b.m.tickAll()
	p.net.run(10) // B's own Delete and A's answer
	checkKeys(t, p.a.inst, p.b.inst, 1)
}

// BenchmarkHandshake measures IKE_SA_INIT plus IKE_AUTH between two
// managers in memory, CPU only, with the IKE_INTERMEDIATE exchanges of
// additional key exchanges (RFC 9370) where the proposal has them.
func BenchmarkHandshake(b *testing.B) {
	for _, ike := range []string{"aes256gcm16-prfsha256-x25519", "aes128gcm16-prfsha384-ecp384", "aes256-sha256-modp2048",
		"aes256gcm16-prfsha384-mlkem768", "aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16-prfsha384-ecp384-ke1_mlkem1024"} {
		b.Run(ike, func(b *testing.B) {
			pa, pb := peerPair(b, ike, "aes256gcm16")
			for b.Loop() {
				p := newStepPair(b, pa, pb, nil)
				if err := p.a.m.Initiate("b", "net", nil); err != nil {
					b.Fatal(err)
				}
				p.net.run(20)
				if n, _ := p.b.inst.counts(); n != 1 || len(p.net.queue) != 0 {
					b.Fatal("the handshake did not complete")
				}
			}
		})
	}
}

// TestProtectedMalformed sends a protected request that passes the
// integrity check but carries an unknown critical payload: the responder
// answers UNSUPPORTED_CRITICAL_PAYLOAD and keeps the IKE SA (RFC 7296,
// Sections 2.5 and 2.21.2).
func TestProtectedMalformed(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	var as *session
	for a := range p.a.m.actors {
		as = a.s
	}
	x := as.sa
	m := &ikewire.Message{Header: ikewire.Header{SPIi: x.spiI, SPIr: x.spiR, Exchange: ikewire.INFORMATIONAL, Flags: ikewire.FlagInitiator, MessageID: x.nextID}}
	b, err := ikewire.SealSK(m, []ikewire.Payload{&ikewire.Unknown{Type: 200, Critical: true, Body: []byte{1, 2, 3}}}, sealerOf(x), as.rand())
	if err != nil {
		t.Fatal(err)
	}
	p.b.m.HandlePacket(b, netip.AddrPortFrom(addrA, 500), netip.AddrPortFrom(addrB, 500))
	if len(p.net.queue) != 1 {
		t.Fatal("no answer")
	}
	resp := parse(t, p.net.queue[0])
	pl, err := ikewire.OpenSK(resp, openerOf(x))
	if err != nil {
		t.Fatal(err)
	}
	if n := findNotify(pl, ikewire.NotifyUnsupportedCriticalPayload); n == nil || !bytes.Equal(n.Data, []byte{200}) {
		t.Fatalf("answer %v", pl)
	}
	if sas := p.b.m.SAs(); len(sas) != 1 || sas[0].State != StateEstablished {
		t.Fatal("the IKE SA did not survive")
	}
	// A request with a bad ICV is dropped silently.
	m.MessageID++
	if b, err = ikewire.SealSK(m, nil, sealerOf(x), as.rand()); err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	p.net.queue = nil
	p.b.m.HandlePacket(b, netip.AddrPortFrom(addrA, 500), netip.AddrPortFrom(addrB, 500))
	if len(p.net.queue) != 0 {
		t.Fatal("answered a request that fails the integrity check")
	}
}

func TestIPv6(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	a6, b6 := mustAddr("2001:db8::1"), mustAddr("2001:db8::2")
	pa.LocalAddrs, pa.RemoteAddrs = host(a6), host(b6)
	pb.LocalAddrs, pb.RemoteAddrs = host(b6), host(a6)
	pa.Children[0].LocalTS, pa.Children[0].RemoteTS = traffic.MustParseSet("2001:db8:1::/48"), traffic.MustParseSet("2001:db8:2::/48")
	pb.Children[0].LocalTS, pb.Children[0].RemoteTS = traffic.MustParseSet("2001:db8:2::/48"), traffic.MustParseSet("2001:db8:1::/48")
	p := newStepPair(t, pa, pb, nil)
	p.net.nodes[a6], p.net.nodes[b6] = p.a.m, p.b.m
	p.establish(t)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if c := p.b.inst.live()[0]; c.Remote.Addr() != a6 || !c.RemoteTS.Equal(traffic.MustParseSet("2001:db8:1::/48")) {
		t.Fatalf("%+v", c)
	}
}
