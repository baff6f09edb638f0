package ike

import (
	"bytes"
	"errors"
	"testing"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/traffic"
)

// childAddKEPair returns two peers with the CHILD SA "net" and a second
// one, "host", both with ESP proposal esp (B's "host" with espB).
func childAddKEPair(t *testing.T, esp, espB string) (pa, pb Peer) {
	t.Helper()
	pa, pb = peerPair(t, "aes256gcm16-prfsha256-x25519", esp)
	pb.Children[0].Proposals = mustESP(t, espB)
	second := ChildConfig{Name: "host", LocalTS: traffic.MustParseSet("10.1.9.9/32"), RemoteTS: traffic.MustParseSet("10.2.9.9/32"), Proposals: mustESP(t, esp)}
	pa.Children = append(pa.Children, second)
	second.LocalTS, second.RemoteTS = second.RemoteTS, second.LocalTS
	second.Proposals = mustESP(t, espB)
	// B's "net" covers "host": "host" goes first to be chosen for it.
	pb.Children = append([]ChildConfig{second}, pb.Children...)
	return pa, pb
}

// requestsSince returns the exchange types of the requests sent after the
// first sent datagrams, once per Message ID and IKE SA.
func (n *stepNet) requestsSince(t testing.TB, sent int) []ikewire.ExchangeType {
	var out []ikewire.ExchangeType
	type key struct {
		spi uint64
		id  uint32
		i   bool
	}
	seen := map[key]bool{}
	for _, d := range n.sent[sent:] {
		m := parse(t, d)
		k := key{m.SPIi, m.MessageID, m.Flags&ikewire.FlagInitiator != 0}
		if !m.IsResponse() && !seen[k] {
			seen[k] = true
			out = append(out, m.Exchange)
		}
	}
	return out
}

// deliverMessage delivers the next message, all of its fragments (RFC
// 7383), and returns its first datagram.
func (n *stepNet) deliverMessage(t testing.TB) datagram {
	first := n.deliver()
	m := parse(t, first)
	for len(n.queue) > 0 {
		x := parse(t, n.queue[0])
		if x.SPIi != m.SPIi || x.MessageID != m.MessageID || x.IsResponse() != m.IsResponse() || x.Exchange != m.Exchange {
			break
		}
		n.deliver()
	}
	return first
}

func sameExchanges(a, b []ikewire.ExchangeType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAddKEChild creates a second CHILD SA and rekeys the first with
// additional key exchanges (RFC 9370, Sections 2.2.3 and 2.2.4): a
// CREATE_CHILD_SA exchange with the first key exchange, then one
// IKE_FOLLOWUP_KE exchange per additional one; both sides install the SA
// with the same keys only after the last. The first CHILD SA, created in
// IKE_AUTH, has no key exchange at all (RFC 7296, Section 1.2).
func TestAddKEChild(t *testing.T) {
	for _, tc := range []struct {
		esp      string
		followup int
	}{
		{"aes256gcm16-x25519-ke1_mlkem768", 1},
		{"aes256gcm16-x25519-ke1_mlkem768-ke2_ecp256", 2},
		{"aes128-sha256-ecp256-ke3_mlkem1024", 1},
	} {
		for _, from := range []string{"a", "b"} {
			t.Run(tc.esp+"/"+from, func(t *testing.T) {
				pa, pb := childAddKEPair(t, tc.esp, tc.esp)
				p := newStepPair(t, pa, pb, nil)
				p.establish(t)
				checkKeys(t, p.a.inst, p.b.inst, 1)
				if c := p.a.inst.live()[0]; c.KE != iana.KENone {
					t.Fatalf("the IKE_AUTH CHILD SA has key exchange %d", c.KE)
				}
				want := []ikewire.ExchangeType{ikewire.CREATE_CHILD_SA}
				for range tc.followup {
					want = append(want, ikewire.IKE_FOLLOWUP_KE)
				}

				// A second CHILD SA.
				sent := len(p.net.sent)
				if err := p.a.m.Initiate("b", "host", nil); err != nil {
					t.Fatal(err)
				}
				p.net.run(20)
				checkKeys(t, p.a.inst, p.b.inst, 2)
				if got := p.net.requestsSince(t, sent); !sameExchanges(got, want) {
					t.Fatalf("requests %v, want %v", got, want)
				}
				if !hasEvent(p.a.events(), EventChildUp) || !hasEvent(p.b.events(), EventChildUp) {
					t.Error("no child_up events")
				}

				// A rekey of the first, one message at a time: no side
				// installs before the last IKE_FOLLOWUP_KE.
				rekeyer, other := p.a, p.b
				peer := "b"
				if from == "b" {
					rekeyer, other, peer = p.b, p.a, "a"
				}
				sent = len(p.net.sent)
				ni, _ := rekeyer.inst.counts()
				nr, _ := other.inst.counts()
				if err := rekeyer.m.Rekey(peer, "net"); err != nil {
					t.Fatal(err)
				}
				for i := range 1 + tc.followup {
					last := i == tc.followup
					if m := parse(t, p.net.deliverMessage(t)); m.Exchange != want[i] || m.IsResponse() {
						t.Fatalf("request %d: %v, want %v", i, m.Exchange, want[i])
					}
					if n, _ := other.inst.counts(); (n != nr) != last {
						t.Fatalf("request %d: the responder has installed %d SAs", i, n-nr)
					}
					if m := parse(t, p.net.deliverMessage(t)); m.Exchange != want[i] || !m.IsResponse() {
						t.Fatalf("response %d: %v", i, m.Header)
					}
					if n, _ := rekeyer.inst.counts(); (n != ni) != last {
						t.Fatalf("response %d: the initiator has installed %d SAs", i, n-ni)
					}
				}
				if n, _ := rekeyer.inst.counts(); n != ni+1 {
					t.Fatalf("the initiator installed %d SAs", n-ni)
				}
				if n, _ := other.inst.counts(); n != nr+1 {
					t.Fatalf("the responder installed %d SAs", n-nr)
				}
				checkKeys(t, p.a.inst, p.b.inst, 3) // make before break
				p.net.run(20)                       // Delete of the old SA
				checkKeys(t, p.a.inst, p.b.inst, 2)
				if got := p.net.requestsSince(t, sent); !sameExchanges(got, append(want, ikewire.INFORMATIONAL)) {
					t.Fatalf("requests %v, want %v then INFORMATIONAL", got, want)
				}
				for _, c := range p.a.inst.live() {
					if c.KE == iana.KENone {
						t.Errorf("CHILD SA %s has no key exchange", c.Child)
					}
				}
				if !hasEvent(p.a.events(), EventChildRekeyed) || !hasEvent(p.b.events(), EventChildRekeyed) {
					t.Error("no child_rekeyed events")
				}
				for _, nd := range []*node{p.a, p.b} {
					if sas := nd.m.SAs(); len(sas) != 1 || len(sas[0].Children) != 2 {
						t.Fatalf("SAs %+v", sas)
					}
					nd.m.mu.Lock()
					spis := len(nd.m.childSPIs)
					nd.m.mu.Unlock()
					if spis != 2 {
						t.Errorf("%d inbound SPIs allocated, want 2", spis)
					}
				}
			})
		}
	}
}

// TestAddKEChildOptional negotiates optional additional key exchanges of
// CHILD SAs (keN_none, RFC 9370, Section 2.2.1).
func TestAddKEChildOptional(t *testing.T) {
	for _, tc := range []struct {
		a, b     string
		followup int
	}{
		{"aes256gcm16-x25519-ke1_mlkem768-ke1_none", "aes256gcm16-x25519", 0},
		{"aes256gcm16-x25519", "aes256gcm16-x25519-ke1_none-ke1_mlkem768", 0},
		{"aes256gcm16-x25519-ke1_mlkem768-ke1_none", "aes256gcm16-x25519-ke1_mlkem768", 1},
		// The responder's preference decides (as for IKE proposals).
		{"aes256gcm16-x25519-ke1_none-ke1_mlkem768", "aes256gcm16-x25519-ke1_mlkem768-ke1_none", 1},
		{"aes256gcm16-x25519-ke1_mlkem768-ke1_none", "aes256gcm16-x25519-ke1_none-ke1_mlkem768", 0},
	} {
		t.Run(tc.a+"/"+tc.b, func(t *testing.T) {
			pa, pb := childAddKEPair(t, tc.a, tc.b)
			p := newStepPair(t, pa, pb, nil)
			p.establish(t)
			sent := len(p.net.sent)
			if err := p.a.m.Rekey("b", "net"); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			checkKeys(t, p.a.inst, p.b.inst, 1)
			want := []ikewire.ExchangeType{ikewire.CREATE_CHILD_SA}
			for range tc.followup {
				want = append(want, ikewire.IKE_FOLLOWUP_KE)
			}
			want = append(want, ikewire.INFORMATIONAL)
			if got := p.net.requestsSince(t, sent); !sameExchanges(got, want) {
				t.Fatalf("requests %v, want %v", got, want)
			}
			if c := p.a.inst.live()[0]; c.KE != iana.KECurve25519 {
				t.Errorf("KE %d", c.KE)
			}
		})
	}
}

// TestAddKEChildMismatch: a required additional key exchange the peer does
// not offer is NO_PROPOSAL_CHOSEN for CREATE_CHILD_SA, while the CHILD SA
// of IKE_AUTH, which ignores key exchange transforms (RFC 9370, Section
// 2.2.3), is created.
func TestAddKEChildMismatch(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"aes256gcm16-x25519-ke1_mlkem768", "aes256gcm16-x25519"},
		{"aes256gcm16-x25519", "aes256gcm16-x25519-ke1_mlkem768"},
		{"aes256gcm16-x25519-ke1_mlkem768", "aes256gcm16-x25519-ke1_mlkem1024"},
		{"aes256gcm16-x25519-ke1_mlkem768", "aes256gcm16-x25519-ke2_mlkem768"},
	} {
		t.Run(tc.a+"/"+tc.b, func(t *testing.T) {
			pa, pb := childAddKEPair(t, tc.a, tc.b)
			p := newStepPair(t, pa, pb, nil)
			p.establish(t)
			checkKeys(t, p.a.inst, p.b.inst, 1)
			if err := p.a.m.Initiate("b", "host", nil); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			var ne *NotifyError
			var failed bool
			for _, ev := range p.a.events() {
				if ev.Kind == EventChildFailed && ev.Child == "host" {
					failed = errors.As(ev.Err, &ne) && ne.Type == ikewire.NotifyNoProposalChosen
				}
			}
			if !failed {
				t.Fatalf("events %v", p.a.events())
			}
			checkKeys(t, p.a.inst, p.b.inst, 1)
			for _, nd := range []*node{p.a, p.b} {
				nd.m.mu.Lock()
				spis := len(nd.m.childSPIs)
				nd.m.mu.Unlock()
				if spis != 1 {
					t.Errorf("%d inbound SPIs allocated, want 1", spis)
				}
			}
		})
	}
}

// TestAddKEChildFollowupAbandoned: a responder forgets a CHILD SA rekey
// whose IKE_FOLLOWUP_KE does not come (RFC 9370, Section 2.2.4), frees its
// SPI and keeps the old CHILD SA, which can be rekeyed again.
func TestAddKEChildFollowupAbandoned(t *testing.T) {
	pa, pb := childAddKEPair(t, "aes256gcm16-x25519-ke1_mlkem768", "aes256gcm16-x25519-ke1_mlkem768")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.deliverMessage(t) // CREATE_CHILD_SA request
	p.net.deliverMessage(t) // response with ADDITIONAL_KEY_EXCHANGE
	p.net.queue = nil       // the IKE_FOLLOWUP_KE request is lost
	pending := func() (f *followupKE, state childState) {
		p.b.m.mu.Lock()
		defer p.b.m.mu.Unlock()
		for a := range p.b.m.actors {
			f = pendingFollowup(a.s)
			state = a.s.children[0].state
		}
		return f, state
	}
	if f, st := pending(); f == nil || f.child == nil || st != childRekeying {
		t.Fatalf("B keeps no CHILD SA state: %v, %v", f, st)
	}
	p.clk.t = p.clk.t.Add(followupTimeout)
	p.b.m.tickAll()
	if f, st := pending(); f != nil || st != childInstalled {
		t.Fatalf("B kept the abandoned CHILD SA: %v, %v", f, st)
	}
	p.b.m.mu.Lock()
	spis := len(p.b.m.childSPIs)
	p.b.m.mu.Unlock()
	if spis != 1 {
		t.Errorf("B: %d inbound SPIs allocated, want 1", spis)
	}
	if n, _ := p.b.inst.counts(); n != 1 {
		t.Errorf("B installed %d SAs", n)
	}
	// A's retransmission finds no state: STATE_NOT_FOUND (RFC 9370,
	// Section 2.2.4); A gives up this rekey and keeps the old SA.
	p.a.m.tickAll()
	p.net.run(20)
	var failed bool
	for _, ev := range p.a.events() {
		var ne *NotifyError
		if ev.Kind == EventChildFailed && errors.As(ev.Err, &ne) && ne.Type == ikewire.NotifyStateNotFound {
			failed = true
		}
	}
	if !failed {
		t.Fatalf("A's events %v", p.a.events())
	}
	checkKeys(t, p.a.inst, p.b.inst, 1)
	// The old SA can be rekeyed again.
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if n, _ := p.a.inst.counts(); n != 2 {
		t.Errorf("A installed %d SAs, want 2", n)
	}
}

// TestAddKEChildKeymat: the CHILD SA's keys depend on the additional key
// exchange; they are not those of the first key exchange alone,
// prf+(SK_d, SK(0) | Ni | Nr) (RFC 9370, Section 2.2.4).
func TestAddKEChildKeymat(t *testing.T) {
	pa, pb := childAddKEPair(t, "aes256gcm16-x25519-ke1_mlkem768", "aes256gcm16-x25519-ke1_mlkem768")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.deliverMessage(t) // CREATE_CHILD_SA request
	var without []byte
	var spi uint32
	p.b.m.mu.Lock()
	for a := range p.b.m.actors {
		f := pendingFollowup(a.s)
		if f == nil || f.child == nil || len(f.secrets) != 1 {
			p.b.m.mu.Unlock()
			t.Fatal("B keeps no CHILD SA state")
		}
		ck, err := a.s.sa.keys.Child(f.child.suite.suite, f.ni, f.nr, f.secrets[0])
		if err != nil {
			p.b.m.mu.Unlock()
			t.Fatal(err)
		}
		without, spi = bytes.Clone(ck.Inbound(false)), f.child.spiIn
		ck.Destroy()
	}
	p.b.m.mu.Unlock()
	p.net.run(20)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	c := p.b.inst.live()[0]
	if c.SPIIn != spi {
		t.Fatalf("SPI %08x, want %08x", c.SPIIn, spi)
	}
	if len(without) != len(c.KeyIn) || bytes.Equal(without, c.KeyIn) {
		t.Fatal("the CHILD SA's keys do not depend on the additional key exchange")
	}
}
