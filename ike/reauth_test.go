package ike

import (
	"errors"
	"testing"
	"time"

	"github.com/goipsec/goipsec/traffic"
)

// TestReauthMakeBeforeBreak: at reauth_time A creates a new IKE SA with
// IKE_SA_INIT and IKE_AUTH and both CHILD SAs again, and deletes the old
// IKE SA only then: after every datagram of the exchange, each child has
// at least one installed SA on both sides. At the end one IKE SA (a new
// one) and one SA pair per child remain, with equal keys on both sides.
func TestReauthMakeBeforeBreak(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	pa.ReauthTime, pa.RandTime = time.Hour, -1
	pa.Children[0].RekeyTime, pb.Children[0].RekeyTime = -1, -1
	pa.Children = append(pa.Children, ChildConfig{Name: "two", Ref: 8, LocalTS: traffic.MustParseSet("10.11.0.0/16"),
		RemoteTS: traffic.MustParseSet("10.12.0.0/16"), Proposals: pa.Children[0].Proposals, RekeyTime: -1})
	pb.Children = append(pb.Children, ChildConfig{Name: "two", Ref: 10, LocalTS: traffic.MustParseSet("10.12.0.0/16"),
		RemoteTS: traffic.MustParseSet("10.11.0.0/16"), Proposals: pb.Children[0].Proposals, RekeyTime: -1})
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	if err := p.a.m.Initiate("b", "two", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(10)
	checkKeys(t, p.a.inst, p.b.inst, 2)
	old := p.a.m.SAs()[0]

	both := func() {
		t.Helper()
		for _, nd := range []*node{p.a, p.b} {
			up := map[string]int{}
			for _, c := range nd.inst.live() {
				up[c.Child]++
			}
			if up["net"] == 0 || up["two"] == 0 {
				t.Fatalf("a child has no SA during the reauthentication: %v", up)
			}
		}
	}
	p.advance(time.Hour - time.Second)
	if len(p.net.queue) != 0 {
		t.Fatal("reauthentication before reauth_time")
	}
	p.advance(time.Second)
	n := 0
	for ; len(p.net.queue) > 0 && n < 30; n++ {
		p.net.deliver()
		both()
	}
	sa, sb := p.a.m.SAs(), p.b.m.SAs()
	if len(sa) != 1 || len(sb) != 1 || sa[0].SPIi == old.SPIi || sb[0].SPIi != sa[0].SPIi || !sa[0].Initiator {
		t.Fatalf("after the reauthentication: A %+v, B %+v", sa, sb)
	}
	if len(sa[0].Children) != 2 {
		t.Fatalf("A's new IKE SA has %d CHILD SAs", len(sa[0].Children))
	}
	checkKeys(t, p.a.inst, p.b.inst, 2)
	t.Logf("reauthentication: %d datagrams", n)

	// The next one is due one reauth_time after the new IKE SA.
	p.advance(time.Hour - time.Second)
	if len(p.net.queue) != 0 {
		t.Fatal("the new IKE SA reauthenticated early")
	}
}

// TestReauthOverTimeExpiry: an IKE SA whose reauthentication fails (the
// peer does not answer the new IKE_SA_INIT) is deleted at reauth_time +
// over_time; the failed attempt leaves no IKE SA behind.
func TestReauthOverTimeExpiry(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
	pa.ReauthTime, pa.RandTime, pa.OverTime, pa.RekeyTime = time.Hour, -1, 5*time.Minute, -1
	pa.Children[0].RekeyTime = -1
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	p.a.events()
	p.advance(time.Hour)
	for range 40 {
		p.net.queue = nil // B hears nothing
		p.advance(10 * time.Second)
	}
	if n := established(p.a.m); n != 0 {
		t.Fatalf("A has %d IKE SAs after reauth_time + over_time", n)
	}
	// The last attempt gives up too.
	for range 20 {
		p.net.queue = nil
		p.advance(10 * time.Second)
	}
	if n := len(p.a.m.SAs()); n != 0 {
		t.Fatalf("A has %d IKE SAs after its last reauthentication attempt", n)
	}
	var expired bool
	for _, e := range p.a.events() {
		expired = expired || (e.Kind == EventIKEDown && errors.Is(e.Err, ErrExpired))
	}
	if !expired {
		t.Fatal("no ike_down with ErrExpired")
	}
}
