package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/traffic"
)

// boundTo returns an AuthorizeTS hook under which the selectors in taken
// belong to another peer: a claim that overlaps them is refused, the way
// the daemon refuses selectors already bound to another peer's SA.
func boundTo(taken traffic.Set, calls *int) func(string, Identity, netip.Addr, string, traffic.Set) (traffic.Set, error) {
	return func(peer string, id Identity, addr netip.Addr, child string, ts traffic.Set) (traffic.Set, error) {
		*calls++
		for _, c := range ts {
			for _, t := range taken {
				if c.Prefix.Overlaps(t.Prefix) {
					return nil, fmt.Errorf("%v is bound to another peer", t)
				}
			}
		}
		return ts, nil
	}
}

// TestNarrowIntoOtherPeersSelectorsTSUnacceptable checks item 3 of issue 7:
// a responder whose child would let the initiator claim 10.0.0.0/8 (a
// wildcard connection) refuses, with TS_UNACCEPTABLE, selectors that its
// PAD hook says belong to another peer, and installs nothing (RFC 4301,
// Section 4.4.3).
func TestNarrowIntoOtherPeersSelectorsTSUnacceptable(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pb.RemoteID = AnyIdentity() // any peer
	pb.Children[0].RemoteTS = traffic.MustParseSet("10.0.0.0/8")
	pa.Children[0].LocalTS = traffic.MustParseSet("10.2.0.0/16") // the other peer's network
	pa.Children[0].RemoteTS = traffic.MustParseSet("10.1.0.0/16")
	pb.Children[0].LocalTS = traffic.MustParseSet("10.1.0.0/16")
	calls := 0
	p := newStepPair(t, pa, pb, func(a, b *Config) { b.AuthorizeTS = boundTo(traffic.MustParseSet("10.2.0.0/16"), &calls) })
	p.establish(t)
	if n, _ := p.b.inst.counts(); n != 0 {
		t.Fatal("the responder installed a CHILD SA for another peer's selectors")
	}
	if n, _ := p.a.inst.counts(); n != 0 {
		t.Fatal("the initiator installed a CHILD SA")
	}
	if calls == 0 {
		t.Fatal("the PAD hook was not asked")
	}
	evs := p.a.events()
	var ne *NotifyError
	if len(evs) == 0 || !errors.As(evs[len(evs)-1].Err, &ne) || ne.Type != ikewire.NotifyTSUnacceptable {
		t.Fatalf("events %v, want TS_UNACCEPTABLE", evs)
	}
}

// TestNarrowToPADEntry checks that a responder narrows the initiator's
// selectors to what the PAD hook gives it.
func TestNarrowToPADEntry(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pb.Children[0].RemoteTS = traffic.MustParseSet("10.0.0.0/8")
	pa.Children[0].LocalTS = traffic.MustParseSet("10.0.0.0/8")
	hook := func(peer string, id Identity, addr netip.Addr, child string, ts traffic.Set) (traffic.Set, error) {
		if peer != "a" || !id.Equal(ParseIdentity("a.example")) || addr != addrA || child != "net" {
			return nil, fmt.Errorf("unexpected claimant %s %s %v %s", peer, id, addr, child)
		}
		return traffic.MustParseSet("10.1.0.0/16"), nil
	}
	p := newStepPair(t, pa, pb, func(a, b *Config) { b.AuthorizeTS = hook })
	p.establish(t)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if got := p.b.inst.live()[0].RemoteTS; !got.Equal(traffic.MustParseSet("10.1.0.0/16")) {
		t.Fatalf("responder's remote TS %v, want the PAD entry 10.1.0.0/16", got)
	}
	if got := p.b.inst.live()[0].RemoteID; !got.Equal(ParseIdentity("a.example")) {
		t.Fatalf("ChildSA.RemoteID %v", got)
	}
}

// TestInitiatorRefusesUnauthorizedAnswer checks the initiator's side: a
// responder answer whose selectors the PAD hook refuses fails the CHILD SA
// with TS_UNACCEPTABLE.
func TestInitiatorRefusesUnauthorizedAnswer(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	calls := 0
	p := newStepPair(t, pa, pb, func(a, b *Config) { a.AuthorizeTS = boundTo(traffic.MustParseSet("10.2.5.0/24"), &calls) })
	p.establish(t)
	if n, _ := p.a.inst.counts(); n != 0 {
		t.Fatal("the initiator installed a CHILD SA whose remote selectors belong to another peer")
	}
	evs := p.a.events()
	var ne *NotifyError
	if len(evs) == 0 || !errors.As(evs[len(evs)-1].Err, &ne) || ne.Type != ikewire.NotifyTSUnacceptable || !ne.Local {
		t.Fatalf("events %v, want a local TS_UNACCEPTABLE", evs)
	}
}

// TestReloadChildConfigByName checks item 1 of issue 7 in the engine: after
// SetPeers with the children reordered, one inserted and the proposal
// changed, the running CHILD SA stays, its rekey uses the new
// configuration, and a child removed by a later SetPeers is deleted.
func TestReloadChildConfigByName(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	pb.Children[0].Proposals = mustESP(t, "aes256gcm16", "aes128gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	old := p.a.inst.live()[0]
	if old.Suite.Name != "aes256gcm16" {
		t.Fatalf("suite %s", old.Suite.Name)
	}
	na := pa
	na.Children = []ChildConfig{
		{Name: "new", Ref: 9, LocalTS: traffic.MustParseSet("10.5.0.0/16"), RemoteTS: traffic.MustParseSet("10.6.0.0/16")},
		pa.Children[0],
	}
	na.Children[1].Proposals = mustESP(t, "aes128gcm16")
	if err := p.a.m.SetPeers([]Peer{na}); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	if n, d := p.a.inst.counts(); n != 1 || d != 0 {
		t.Fatalf("the reload touched the running SA: %d installs, %d deletes", n, d)
	}
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	nw := p.a.inst.live()[0]
	if nw.SPIIn == old.SPIIn || nw.Suite.Name != "aes128gcm16" || nw.Ref != 7 {
		t.Fatalf("rekeyed SA: suite %s ref %d, want the reloaded proposal aes128gcm16 and ref 7", nw.Suite.Name, nw.Ref)
	}
	gone := na
	gone.Children = na.Children[:1]
	if err := p.a.m.SetPeers([]Peer{gone}); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 0)
	if len(p.a.m.SAs()) != 1 {
		t.Fatal("removing a child must keep the IKE SA")
	}
}

// TestReloadRekeyTakesNewSelectors checks that a rekey after a reload that
// narrowed the child's selectors proposes the new ones (RFC 7296, Section
// 2.8: the new SA may have different selectors), while an unchanged child
// keeps its SA's (Section 2.9).
func TestReloadRekeyTakesNewSelectors(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	na := pa
	na.Children = []ChildConfig{pa.Children[0]}
	na.Children[0].LocalTS = traffic.MustParseSet("10.1.0.0/24")
	if err := p.a.m.SetPeers([]Peer{na}); err != nil {
		t.Fatal(err)
	}
	if err := p.a.m.Rekey("b", "net"); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 1)
	if got := p.a.inst.live()[0].LocalTS; !got.Equal(traffic.MustParseSet("10.1.0.0/24")) {
		t.Fatalf("rekeyed SA's local TS %v, want the reloaded 10.1.0.0/24", got)
	}
	if got := p.b.inst.live()[0].RemoteTS; !got.Equal(traffic.MustParseSet("10.1.0.0/24")) {
		t.Fatalf("responder's remote TS %v", got)
	}
}
