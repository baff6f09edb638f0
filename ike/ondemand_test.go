package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/sa"
)

// TestInitiateOnDemandPerPeer checks that a configuration for many peers
// (remote addresses that are a prefix) with a child with dynamic selectors
// starts one IKE SA per destination of its triggers: each to that host
// alone, with CHILD SA selectors of the two hosts, and a second trigger for
// a host with an IKE SA reuses it. In transport mode, and in tunnel mode
// (a tunnel between the two hosts, what a group needs with peers that only
// do tunnel mode, such as strongSwan with kernel-libipsec).
func TestInitiateOnDemandPerPeer(t *testing.T) {
	for _, mode := range []sa.Mode{sa.Transport, sa.Tunnel} {
		t.Run(mode.String(), func(t *testing.T) { testInitiateOnDemandPerPeer(t, mode) })
	}
}

func testInitiateOnDemandPerPeer(t *testing.T, mode sa.Mode) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	n := &stepNet{t: t, nodes: map[netip.Addr]*Manager{}}
	cfg := Config{Now: clk.Now, Logger: testLogger(t)}
	addrC := netip.MustParseAddr("192.0.2.3")
	net := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	hosts := func(self netip.Addr) Peer {
		return Peer{Name: "hosts", LocalAddrs: host(self), RemoteAddrs: net,
			Proposals: mustIKE(t, "aes128gcm16-prfsha256-x25519"), PSK: pskFunc("correct horse battery staple"),
			Children: []ChildConfig{{Name: "host", Ref: 5, Mode: mode, StartAction: StartTrap,
				Proposals: mustESP(t, "aes128gcm16")}}}
	}
	nodes := map[netip.Addr]*node{}
	for _, a := range []netip.Addr{addrA, addrB, addrC} {
		nodes[a] = newStepNode(t, n, a, cfg)
		if err := nodes[a].m.SetPeers([]Peer{hosts(a)}); err != nil {
			t.Fatal(err)
		}
	}
	a := nodes[addrA]
	for _, dst := range []netip.Addr{addrB, addrC, addrB} {
		if err := a.m.Initiate("hosts", "host", &Trigger{Src: addrA, Dst: dst, Proto: 1}); err != nil {
			t.Fatal(err)
		}
		n.run(20)
	}
	sas := a.m.SAs()
	if len(sas) != 2 {
		t.Fatalf("A has %d IKE SAs, want one per peer (2): %+v", len(sas), sas)
	}
	remotes := map[netip.Addr]bool{}
	for _, s := range sas {
		remotes[s.Remote.Addr()] = true
		if s.State != StateEstablished {
			t.Errorf("IKE SA with %v: state %v", s.Remote, s.State)
		}
	}
	if !remotes[addrB] || !remotes[addrC] {
		t.Errorf("IKE SAs with %v, want B and C", remotes)
	}
	live := a.inst.live()
	if len(live) != 2 {
		t.Fatalf("A has %d CHILD SAs, want 2", len(live))
	}
	for _, c := range live {
		want := c.Remote.Addr()
		if c.Mode != mode || len(c.RemoteTS) != 1 || c.RemoteTS[0].Prefix != netip.PrefixFrom(want, 32) ||
			len(c.LocalTS) != 1 || c.LocalTS[0].Prefix != netip.PrefixFrom(addrA, 32) {
			t.Errorf("CHILD SA with %v: mode %v, selectors %v <=> %v, want the two hosts", want, c.Mode, c.LocalTS, c.RemoteTS)
		}
	}
}

// TestInitialContactPerHostOfAGroup: a peer configuration without a remote
// identity (a policy group's, many hosts) is one peer per remote host for
// INITIAL_CONTACT (RFC 7296, Section 2.4): an established IKE SA with one
// host does not keep it from the IKE_AUTH to another; with a named remote
// identity any established IKE SA of the configuration counts.
func TestInitialContactPerHostOfAGroup(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	n := &stepNet{t: t, nodes: map[netip.Addr]*Manager{}}
	cfg := Config{Now: clk.Now, Logger: testLogger(t)}
	net := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	hosts := func(self netip.Addr) Peer {
		return Peer{Name: "hosts", LocalAddrs: host(self), RemoteAddrs: net,
			Proposals: mustIKE(t, "aes128gcm16-prfsha256-x25519"), PSK: pskFunc("correct horse battery staple"),
			Children: []ChildConfig{{Name: "host", Ref: 5, Mode: sa.Transport, StartAction: StartTrap,
				Proposals: mustESP(t, "aes128gcm16")}}}
	}
	nodes := map[netip.Addr]*node{}
	for _, a := range []netip.Addr{addrA, addrB} {
		nodes[a] = newStepNode(t, n, a, cfg)
		if err := nodes[a].m.SetPeers([]Peer{hosts(a)}); err != nil {
			t.Fatal(err)
		}
	}
	a := nodes[addrA]
	if err := a.m.Initiate("hosts", "host", &Trigger{Src: addrA, Dst: addrB, Proto: 1}); err != nil {
		t.Fatal(err)
	}
	n.run(20)
	if sas := a.m.SAs(); len(sas) != 1 || sas[0].State != StateEstablished {
		t.Fatalf("A's IKE SAs: %+v", sas)
	}
	p := hosts(addrA)
	other := &session{peer: &p, remote: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.9"), 500)}
	if a.m.hasOtherSA(other) {
		t.Error("an IKE SA with B keeps INITIAL_CONTACT from the IKE_AUTH to another host of the group")
	}
	sameHost := &session{peer: &p, remote: netip.AddrPortFrom(addrB, 500)}
	if !a.m.hasOtherSA(sameHost) {
		t.Error("a second IKE SA with B would send INITIAL_CONTACT while the first is up")
	}
	named := p
	named.RemoteID = ParseIdentity("hosts.example")
	if !a.m.hasOtherSA(&session{peer: &named, remote: other.remote}) {
		t.Error("with a named remote identity, the configuration's established IKE SA does not count")
	}
}
