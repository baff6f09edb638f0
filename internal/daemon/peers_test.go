package daemon

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/internal/sad"
	"github.com/goipsec/goipsec/tun/tuntest"
)

// site is a peer of the gateway 192.0.2.1 (10.1.0.0/16): its name (the
// connection's and its identity), address and network.
type site struct {
	name string
	addr string
	net  string
}

var (
	alice = site{"alice", "192.0.2.2", "10.2.0.0/16"}
	bob   = site{"bob", "192.0.2.3", "10.3.0.0/16"}
	carol = site{"carol", "192.0.2.4", "10.4.0.0/16"}
)

// gatewayConfig has one connection per site, in the order given.
func gatewayConfig(t *testing.T, sites ...site) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("connections:\n")
	var ids []string
	for _, s := range sites {
		fmt.Fprintf(&b, "  %s:\n    local_addrs: [192.0.2.1]\n    remote_addrs: [%s]\n    proposals: [aes256gcm16-prfsha256-x25519]\n"+
			"    local: {auth: psk, id: gw}\n    remote: {auth: psk, id: %s}\n"+
			"    children:\n      lan: {local_ts: [10.1.0.0/16], remote_ts: [%s], esp_proposals: [aes256gcm16], start_action: none}\n",
			s.name, s.addr, s.name, s.net)
		ids = append(ids, fmt.Sprintf("    - {ids: [gw, %s], secret: psk-of-%s}\n", s.name, s.name))
	}
	b.WriteString("secrets:\n  ike:\n" + strings.Join(ids, ""))
	c, err := config.Parse("gw.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// siteConfig is the site's side: it brings the CHILD SA up at start,
// claiming claim (its own network unless given).
func siteConfig(t *testing.T, s site, claim string) *config.Config {
	t.Helper()
	if claim == "" {
		claim = s.net
	}
	y := fmt.Sprintf("connections:\n  gw:\n    local_addrs: [%s]\n    remote_addrs: [192.0.2.1]\n    proposals: [aes256gcm16-prfsha256-x25519]\n"+
		"    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: gw}\n"+
		"    children:\n      lan: {local_ts: [%s], remote_ts: [10.1.0.0/16], esp_proposals: [aes256gcm16], start_action: start}\n"+
		"secrets:\n  ike:\n    - {ids: [gw, %s], secret: psk-of-%s}\n", s.addr, s.name, claim, s.name, s.name)
	c, err := config.Parse(s.name+".yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startSite(t *testing.T, nw *conntest.Network, inw *ikeNet, s site, cfg *config.Config) *peer {
	a := netip.MustParseAddr(s.addr)
	p, _ := startAt(t, nw, a, cfg, inw.listen(a))
	return p
}

// outSPIs returns the gateway's outbound SPIs by peer address.
func outSPIs(d *Daemon) map[string]uint32 {
	out := map[string]uint32{}
	d.Dataplane().SAD().Load().OutboundSAs(func(o *sad.OutboundSA) { out[o.Remote.Addr().String()] = o.SPI })
	return out
}

// hostIn returns the first host of a site's network.
func hostIn(s site) netip.Addr { return netip.MustParsePrefix(s.net).Addr().Next() }

// sendTo sends one UDP packet from the gateway's network to dst and checks
// that it arrives at want's TUN device and at none of others.
func sendTo(t *testing.T, gw *peer, dst netip.Addr, want *peer, others ...*peer) {
	t.Helper()
	pkt := tuntest.UDP(netip.MustParseAddrPort("10.1.0.1:1000"), netip.AddrPortFrom(dst, 2000), []byte("for "+dst.String()))
	gw.tun.In <- pkt
	recv(t, want.tun)
	for _, o := range others {
		select {
		case p := <-o.tun.Out:
			t.Fatalf("a packet for %v reached the wrong peer: %x", dst, p)
		default:
		}
	}
}

// TestReloadReorderKeepsSAWithPeer checks item 1 of issue 7 in the daemon:
// a gateway with connections to alice and bob, both up, reloads with a new
// connection inserted before them and the two swapped; every packet still
// goes to its own peer, over the same SAs (same SPIs). A reload without bob
// deletes bob's SA and leaves alice's.
func TestReloadReorderKeepsSAWithPeer(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	gw, _ := startAt(t, nw, netip.MustParseAddr("192.0.2.1"), gatewayConfig(t, alice, bob), inw.listen(netip.MustParseAddr("192.0.2.1")))
	pa := startSite(t, nw, inw, alice, siteConfig(t, alice, ""))
	pb := startSite(t, nw, inw, bob, siteConfig(t, bob, ""))
	waitFor(t, "both CHILD SAs", func() bool { return len(outSPIs(gw.d)) == 2 })
	before := outSPIs(gw.d)
	sendTo(t, gw, hostIn(alice), pa, pb)
	sendTo(t, gw, hostIn(bob), pb, pa)

	if err := gw.d.Reconfig(gatewayConfig(t, carol, bob, alice)); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		sendTo(t, gw, hostIn(alice), pa, pb)
		sendTo(t, gw, hostIn(bob), pb, pa)
		if i == 0 {
			if after := outSPIs(gw.d); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("outbound SAs %v after the reload, want %v", after, before)
			}
		}
	}
	// The running IKE SAs got the new configuration: a rekey keeps each
	// peer's SA its own.
	if err := gw.d.ike.Rekey("alice", "lan"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's rekey", func() bool {
		s := outSPIs(gw.d)
		return len(s) == 2 && s[alice.addr] != before[alice.addr] && s[bob.addr] == before[bob.addr]
	})
	sendTo(t, gw, hostIn(alice), pa, pb)
	sendTo(t, gw, hostIn(bob), pb, pa)

	if err := gw.d.Reconfig(gatewayConfig(t, carol, alice)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's SA deleted", func() bool { s := outSPIs(gw.d); return len(s) == 1 && s[alice.addr] != 0 })
	sendTo(t, gw, hostIn(alice), pa, pb)
}

// wildcardConfig is a gateway connection that any peer of 192.0.2.0/24
// with one of the keys may use, for any network in 10.0.0.0/8.
func wildcardConfig(t *testing.T, sites ...site) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("connections:\n  rw:\n    local_addrs: [192.0.2.1]\n    remote_addrs: [192.0.2.0/24]\n    proposals: [aes256gcm16-prfsha256-x25519]\n" +
		"    local: {auth: psk, id: gw}\n    remote: {auth: psk, id: \"%any\"}\n" +
		"    children:\n      lan: {local_ts: [10.1.0.0/16], remote_ts: [10.0.0.0/8], esp_proposals: [aes256gcm16], start_action: none}\n" +
		"secrets:\n  ike:\n")
	for _, s := range sites {
		fmt.Fprintf(&b, "    - {ids: [gw, %s], secret: psk-of-%s}\n", s.name, s.name)
	}
	c, err := config.Parse("gw.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTwoPeersOneWildcardConnectionRefusesOverlap checks items 2 and 3 of
// issue 7 in the daemon: two peers under one wildcard connection each get
// their own outbound SA, picked by the packet's destination; a third that
// claims the first one's network is refused (TS_UNACCEPTABLE) and gets
// none of its traffic; a fourth that claims it with its own network is
// narrowed to its own.
func TestTwoPeersOneWildcardConnectionRefusesOverlap(t *testing.T) {
	mallory := site{"mallory", "192.0.2.5", "10.9.0.0/16"}
	dave := site{"dave", "192.0.2.6", "10.6.0.0/16"}
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	gw, _ := startAt(t, nw, netip.MustParseAddr("192.0.2.1"), wildcardConfig(t, alice, bob, mallory, dave), inw.listen(netip.MustParseAddr("192.0.2.1")))
	pa := startSite(t, nw, inw, alice, siteConfig(t, alice, ""))
	waitFor(t, "alice's CHILD SA", func() bool { return len(outSPIs(gw.d)) == 1 })
	pb := startSite(t, nw, inw, bob, siteConfig(t, bob, ""))
	waitFor(t, "bob's CHILD SA", func() bool { return len(outSPIs(gw.d)) == 2 })
	pm := startSite(t, nw, inw, mallory, siteConfig(t, mallory, alice.net))
	waitFor(t, "mallory's IKE SA", func() bool {
		for _, s := range gw.d.ike.SAs() {
			if s.RemoteID.String() == "mallory" {
				return true
			}
		}
		return false
	})
	time.Sleep(100 * time.Millisecond)
	if s := outSPIs(gw.d); len(s) != 2 || s[mallory.addr] != 0 {
		t.Fatalf("outbound SAs %v: mallory must get none for alice's network", s)
	}
	for range 10 {
		sendTo(t, gw, hostIn(alice), pa, pb, pm)
		sendTo(t, gw, hostIn(bob), pb, pa, pm)
	}
	pd := startSite(t, nw, inw, dave, siteConfig(t, dave, alice.net+", "+dave.net))
	waitFor(t, "dave's CHILD SA", func() bool { return len(outSPIs(gw.d)) == 3 })
	gw.d.Dataplane().SAD().Load().OutboundSAs(func(o *sad.OutboundSA) {
		if o.Remote.Addr().String() == dave.addr && o.RemoteTS.String() != dave.net {
			t.Errorf("dave's SA holds %v, want only %s", o.RemoteTS, dave.net)
		}
	})
	sendTo(t, gw, hostIn(dave), pd, pa, pb, pm)
	sendTo(t, gw, hostIn(alice), pa, pb, pm, pd)
}
