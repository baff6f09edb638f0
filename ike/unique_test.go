package ike

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// startOver makes A initiate one more IKE SA with B although it has one,
// as a peer that starts over without Delete or INITIAL_CONTACT does
// (Libreswan 4.10, every few seconds): A still has an IKE SA, so it sends
// no INITIAL_CONTACT (RFC 7296, Section 2.4).
func startOver(t *testing.T, p *stepPair) {
	t.Helper()
	m := p.a.m
	m.mu.Lock()
	peer := m.peerLocked("b")
	a, err := m.newInitiatorLocked(peer, peer.child("net"), nil, netip.Addr{})
	m.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	m.deliver(a, input{kind: inTimer})
	p.net.run(20)
}

// established counts m's established IKE SAs.
func established(m *Manager) int {
	n := 0
	for _, x := range m.SAs() {
		if x.State == StateEstablished {
			n++
		}
	}
	return n
}

// TestUniqueReplaceStartOver: with unique replace, a peer that starts
// over three times without Delete or INITIAL_CONTACT leaves one IKE SA
// and one CHILD SA pair on both sides; with the default (no) each start
// over leaves one more IKE SA, as issue 8 measured.
func TestUniqueReplaceStartOver(t *testing.T) {
	for _, u := range []Unique{UniqueNo, UniqueReplace} {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
		pb.Unique = u
		p := newStepPair(t, pa, pb, nil)
		p.establish(t)
		for range 3 {
			startOver(t, p)
		}
		want := 4
		if u == UniqueReplace {
			want = 1
			checkKeys(t, p.a.inst, p.b.inst, 1)
		}
		if got := established(p.b.m); got != want {
			t.Errorf("unique %d: B has %d IKE SAs, want %d", u, got, want)
		}
		if u == UniqueReplace && established(p.a.m) != 1 {
			t.Errorf("unique replace: A has %d IKE SAs", established(p.a.m))
		}
	}
}

// TestUniqueKeepRefusesNew: with unique keep the responder refuses a
// second IKE SA with AUTHENTICATION_FAILED and keeps the first; an
// initiator with unique keep refuses the second one itself and tells the
// responder (RFC 7296, Section 2.21.2), which removes it.
func TestUniqueKeepRefusesNew(t *testing.T) {
	for _, side := range []string{"responder", "initiator"} {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
		if side == "responder" {
			pb.Unique = UniqueKeep
		} else {
			pa.Unique = UniqueKeep
		}
		p := newStepPair(t, pa, pb, nil)
		p.establish(t)
		first := p.b.m.SAs()[0].SPIi
		p.a.events()
		startOver(t, p)
		if sas := p.b.m.SAs(); len(sas) != 1 || sas[0].SPIi != first {
			t.Fatalf("keep on the %s: B's IKE SAs %+v, want the first one alone", side, sas)
		}
		if !hasEvent(p.a.events(), EventAuthFailed) {
			t.Errorf("keep on the %s: A did not see the new IKE SA fail", side)
		}
		if sas := p.a.m.SAs(); len(sas) != 1 || sas[0].SPIi != first {
			t.Errorf("keep on the %s: A's IKE SAs %+v", side, sas)
		}
		checkKeys(t, p.a.inst, p.b.inst, 1)
	}
}

// TestInitialContactReplacesOldSAs: a peer that reboots (a new Manager at
// its address) comes back with INITIAL_CONTACT and replaces its old IKE SA
// and CHILD SAs (RFC 7296, Section 2.4), with unique no (the default) and
// replace; with unique never both stay.
func TestInitialContactReplacesOldSAs(t *testing.T) {
	for _, u := range []Unique{UniqueNo, UniqueReplace, UniqueNever} {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
		pb.Unique = u
		p := newStepPair(t, pa, pb, nil)
		p.establish(t)
		// A reboots: its state is gone, no Delete was sent.
		p.a = newStepNode(t, p.net, addrA, Config{Now: p.clk.Now, Logger: testLogger(t)})
		if err := p.a.m.SetPeers([]Peer{pa}); err != nil {
			t.Fatal(err)
		}
		// With unique replace, B's Delete of the old IKE SA reaches the
		// new A, which knows nothing of it.
		if err := p.a.m.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		p.net.run(20)
		want := 1
		if u == UniqueNever {
			want = 2
		}
		if got := established(p.b.m); got != want {
			t.Errorf("unique %d: B has %d IKE SAs, want %d", u, got, want)
		}
		if got := len(p.b.inst.live()); got != want {
			t.Errorf("unique %d: B has %d CHILD SAs, want %d", u, got, want)
		}
	}
}

// TestUniqueReplaceLive is TestUniqueReplaceStartOver with both managers
// running their own goroutines and timers under testing/synctest: A starts
// over every 2 s, three times (issue 8 saw Libreswan 4.10 leave 3 IKE SAs
// in 7 s); B, with unique replace, has one IKE SA and one CHILD SA at the
// end, the newest, and so has A.
func TestUniqueReplaceLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes128gcm16")
		pa.Children[0].StartAction = StartStart
		pb.Unique = UniqueReplace
		n := &chanNet{nodes: map[netip.Addr]*Manager{}}
		b, ib := newLive(t, n, addrB, pb)
		a, ia := newLive(t, n, addrA, pa)
		defer b.Close()
		defer a.Close()
		synctest.Wait()
		for range 3 {
			time.Sleep(2 * time.Second)
			a.mu.Lock()
			peer := a.peerLocked("b")
			act, err := a.newInitiatorLocked(peer, peer.child("net"), nil, netip.Addr{})
			a.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			a.deliver(act, input{kind: inTimer})
			synctest.Wait()
		}
		sa, sb := a.SAs(), b.SAs()
		if len(sa) != 1 || len(sb) != 1 || sa[0].SPIi != sb[0].SPIi {
			t.Fatalf("after three start-overs: A %d IKE SAs, B %d", len(sa), len(sb))
		}
		checkKeys(t, ia, ib, 1)
	})
}
