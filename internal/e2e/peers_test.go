package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/swantest"
)

// This file checks that SAs belong to peers (issue 7): a gateway's reload
// that reorders its connections under traffic keeps every packet with its
// own peer, and two peers under one wildcard connection each get their own
// traffic, the second narrowed away from the first's selectors (RFC 4301,
// Section 4.4.3), with strongSwan as one of them.

// peersTopology is a gateway namespace linked to two sites: eth0
// 192.0.2.1/24 to alice (192.0.2.2, network 10.2.0.0/16) and eth1
// 192.0.3.1/24 to bob (192.0.3.2, network 10.3.0.0/16); the gateway's
// network is 10.1.0.0/16. Inner addresses (x.x.0.1) live on lo. No daemon
// runs yet.
func peersTopology(t *testing.T) (gw, alice, bob *host) {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpeer") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mk := func(label, outer, inner, net string) *host {
		h := &host{ns: nstest.New(t, label), outer: netip.MustParseAddr(outer), inner: netip.MustParseAddr(inner), net: netip.MustParsePrefix(net)}
		h.sock, h.conf = filepath.Join(dir, label+".sock"), filepath.Join(dir, label+".yaml")
		h.ns.AddLoopbackAddr(inner)
		return h
	}
	gw = mk("gw", "192.0.2.1", "10.1.0.1", "10.1.0.0/16")
	alice = mk("alice", "192.0.2.2", "10.2.0.1", "10.2.0.0/16")
	bob = mk("bob", "192.0.3.2", "10.3.0.1", "10.3.0.0/16")
	nstest.Link(t, gw.ns, "eth0", []string{"192.0.2.1/24"}, alice.ns, "eth0", []string{"192.0.2.2/24"})
	nstest.Link(t, gw.ns, "eth1", []string{"192.0.3.1/24"}, bob.ns, "eth0", []string{"192.0.3.2/24"})
	return gw, alice, bob
}

const gwID = "gw.e2e.example"

// gwConn is one connection of the gateway, with one child "net" from
// 10.1.0.0/16 to remoteTS.
type gwConn struct {
	name, remoteAddrs, remoteID, remoteTS string
}

// gatewayYAML is the gateway's configuration with conns in that order and
// one pre-shared key per remote identity in psks.
func gatewayYAML(gw *host, conns []gwConn, psks map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "daemon:\n  socket: %q\n  tun: {name: ipsec0, mtu: 1400}\n  log: {level: info}\nconnections:\n", gw.sock)
	for _, c := range conns {
		fmt.Fprintf(&b, "  %s:\n    local_addrs: [192.0.2.1, 192.0.3.1]\n    remote_addrs: [%s]\n    proposals: [aes256gcm16-prfsha256-x25519]\n"+
			"    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %q}\n    children:\n"+
			"      net: {mode: tunnel, local_ts: [10.1.0.0/16], remote_ts: [%s], esp_proposals: [aes256gcm16], start_action: none}\n",
			c.name, c.remoteAddrs, gwID, c.remoteID, c.remoteTS)
	}
	b.WriteString("secrets:\n  ike:\n")
	ids := make([]string, 0, len(psks))
	for id := range psks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(&b, "    - {ids: [%s, %s], secret: %q}\n", gwID, id, psks[id])
	}
	return b.String()
}

// siteYAML is a goipsec site's configuration: connection "gw" with child
// "net" from localTS to the gateway's network, brought up at start.
func siteYAML(h *host, gwAddr, id, psk string, localTS ...string) string {
	return fmt.Sprintf("daemon:\n  socket: %q\n  tun: {name: ipsec0, mtu: 1400}\n  log: {level: info}\nconnections:\n  %s:\n"+
		"    local_addrs: [%s]\n    remote_addrs: [%s]\n    proposals: [aes256gcm16-prfsha256-x25519]\n"+
		"    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n    children:\n"+
		"      %s: {mode: tunnel, local_ts: [%s], remote_ts: [10.1.0.0/16], esp_proposals: [aes256gcm16], start_action: start}\n"+
		"secrets:\n  ike:\n    - {ids: [%s, %s], secret: %q}\n",
		h.sock, connName, h.outer, gwAddr, id, gwID, childName, strings.Join(localTS, ", "), gwID, id, psk)
}

// installedChildren returns h's installed CHILD SAs by remote address.
func installedChildren(h *host) map[netip.Addr]ctlapi.ChildSA {
	s := h.trySAs()
	if s == nil {
		return nil
	}
	out := map[netip.Addr]ctlapi.ChildSA{}
	for _, c := range s.ChildSAs {
		if strings.EqualFold(c.State, ctlapi.ChildInstalled) && !c.Manual {
			out[c.RemoteAddr] = c
		}
	}
	return out
}

// waitChildren waits until h has installed CHILD SAs with exactly the
// remote addresses want, and returns them.
func waitChildren(t *testing.T, h *host, want ...netip.Addr) map[netip.Addr]ctlapi.ChildSA {
	t.Helper()
	var last map[netip.Addr]ctlapi.ChildSA
	if !nstest.WaitFor(20*time.Second, func() bool {
		last = installedChildren(h)
		if len(last) != len(want) {
			return false
		}
		for _, a := range want {
			if _, ok := last[a]; !ok {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("[%s] installed CHILD SAs %+v, want one with each of %v", h.ns.Name, last, want)
	}
	return last
}

// pingAsync runs ping in ns in the background; the channel yields its
// output.
func pingAsync(ns *nstest.NS, src, dst netip.Addr, count int, interval string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		out, _ := ns.Run("ping", "-n", "-c", fmt.Sprint(count), "-i", interval, "-W", "5", "-I", src.String(), dst.String())
		ch <- out
	}()
	return ch
}

// replies parses ping's summary.
func replies(t *testing.T, out string) (sent, got int) {
	t.Helper()
	m := receivedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("unexpected ping output:\n%s", out)
	}
	fmt.Sscan(m[1], &sent)
	fmt.Sscan(m[2], &got)
	return sent, got
}

// reload rewrites h's configuration and runs "ipsecctl reload".
func (h *host) reload(t *testing.T, conf string) {
	t.Helper()
	writeFile(t, h.conf, conf)
	if _, err := h.ctl(context.Background(), "reload"); err != nil {
		t.Fatal(err)
	}
}

// TestReloadReorderUnderTraffic checks item 1 of issue 7 on real
// namespaces: a gateway with connections to alice and bob, pings flowing
// to both, reloads twice with the connections reordered and a new one
// (carol) inserted before them. Every echo request must be answered (a
// packet sent on the other peer's SA would be dropped by that peer's
// inbound selector check, RFC 4301, Section 5.2), and the gateway's SPIs
// must not change.
func TestReloadReorderUnderTraffic(t *testing.T) {
	requireBins(t)
	gw, alice, bob := peersTopology(t)
	psks := map[string]string{"alice.e2e.example": newPSK(), "bob.e2e.example": newPSK(), "carol.e2e.example": newPSK()}
	connA := gwConn{"alice", "192.0.2.2", "alice.e2e.example", "10.2.0.0/16"}
	connB := gwConn{"bob", "192.0.3.2", "bob.e2e.example", "10.3.0.0/16"}
	connC := gwConn{"carol", "192.0.2.9", "carol.e2e.example", "10.4.0.0/16"}
	gw.startDaemon(t, gatewayYAML(gw, []gwConn{connA, connB}, psks))
	alice.startDaemon(t, siteYAML(alice, "192.0.2.1", "alice.e2e.example", psks["alice.e2e.example"], alice.net.String()))
	bob.startDaemon(t, siteYAML(bob, "192.0.3.1", "bob.e2e.example", psks["bob.e2e.example"], bob.net.String()))
	before := waitChildren(t, gw, alice.outer, bob.outer)
	mustPing(t, gw.ns, gw.inner, alice.inner, 2)
	mustPing(t, gw.ns, gw.inner, bob.inner, 2)

	const count = 60
	pa := pingAsync(gw.ns, gw.inner, alice.inner, count, "0.05")
	pb := pingAsync(gw.ns, gw.inner, bob.inner, count, "0.05")
	time.Sleep(700 * time.Millisecond)
	start := time.Now()
	gw.reload(t, gatewayYAML(gw, []gwConn{connC, connB, connA}, psks))
	reload1 := time.Since(start)
	time.Sleep(700 * time.Millisecond)
	gw.reload(t, gatewayYAML(gw, []gwConn{connB, connC, connA}, psks))
	outA, outB := <-pa, <-pb
	for _, x := range []struct {
		name, out string
	}{{"alice", outA}, {"bob", outB}} {
		if sent, got := replies(t, x.out); sent != count || got != count {
			t.Errorf("pings to %s across the reloads: %d of %d answered\n%s", x.name, got, sent, x.out)
		}
	}
	after := installedChildren(gw)
	for _, a := range []netip.Addr{alice.outer, bob.outer} {
		if b, c := before[a], after[a]; b.SPIIn != c.SPIIn || b.SPIOut != c.SPIOut || b.Name != c.Name {
			t.Errorf("the CHILD SA with %v changed across the reloads: %s %v/%v, now %s %v/%v", a, b.Name, b.SPIIn, b.SPIOut, c.Name, c.SPIIn, c.SPIOut)
		}
	}
	// Each site received only its own pings.
	for _, h := range []*host{alice, bob} {
		cs := installedChildren(h)
		if len(cs) != 1 {
			t.Fatalf("[%s] CHILD SAs %+v", h.ns.Name, cs)
		}
		for _, c := range cs {
			if c.PacketsIn < count+2 || c.PacketsIn > count+2+5 {
				t.Errorf("[%s] %d packets in, want the %d pings sent to it", h.ns.Name, c.PacketsIn, count+2)
			}
		}
	}
	t.Logf("first reload took %v; %d pings to each peer at 50 ms across two reloads", reload1, count)
	for _, h := range []*host{gw, alice, bob} {
		h.checkAlive(t)
	}
}

// TestTwoPeersOneWildcardConnection checks items 2 and 3 of issue 7 with
// strongSwan as the first peer: one gateway connection for any identity
// from 192.0.0.0/16 and any network in 10.0.0.0/8. alice (charon) brings
// up 10.2.0.0/16; bob (goipsec) then asks for 10.2.0.0/16 and his own
// 10.3.0.0/16 and is narrowed to his own. Each peer gets only its own
// traffic.
func TestTwoPeersOneWildcardConnection(t *testing.T) {
	requireBins(t)
	testTwoPeersOneWildcardConnection(t, true)
}

// TestTwoPeersOneWildcardConnectionGoipsec is the same with goipsec as
// both peers, for machines without strongSwan.
func TestTwoPeersOneWildcardConnectionGoipsec(t *testing.T) {
	requireBins(t)
	testTwoPeersOneWildcardConnection(t, false)
}

func testTwoPeersOneWildcardConnection(t *testing.T, swan bool) {
	gw, alice, bob := peersTopology(t)
	psks := map[string]string{"alice.e2e.example": newPSK(), "bob.e2e.example": newPSK()}
	gw.startDaemon(t, gatewayYAML(gw, []gwConn{{"rw", "192.0.0.0/16", "%any", "10.0.0.0/8"}}, psks))
	if swan {
		ch := swantest.Start(t, alice.ns, swantest.Config{Conn: swantest.PSKConn{
			Name: connName, Child: childName, Local: alice.outer.String(), Remote: "192.0.2.1",
			LocalID: "alice.e2e.example", RemoteID: gwID, PSK: psks["alice.e2e.example"],
			Proposals: "aes256gcm16-prfsha256-x25519", ESPProposals: "aes256gcm16",
			LocalTS: alice.net.String(), RemoteTS: "10.1.0.0/16",
		}.String()})
		if _, err := ch.Initiate(childName); err != nil {
			t.Fatal(err)
		}
	} else {
		alice.startDaemon(t, siteYAML(alice, "192.0.2.1", "alice.e2e.example", psks["alice.e2e.example"], alice.net.String()))
	}
	waitChildren(t, gw, alice.outer)
	mustPing(t, gw.ns, gw.inner, alice.inner, 3)

	bob.startDaemon(t, siteYAML(bob, "192.0.3.1", "bob.e2e.example", psks["bob.e2e.example"], alice.net.String(), bob.net.String()))
	cs := waitChildren(t, gw, alice.outer, bob.outer)
	if got := cs[bob.outer].RemoteTS; !slices.Equal(got, []string{bob.net.String()}) {
		t.Errorf("the gateway gave bob %v, want only his own %v", got, bob.net)
	}
	if got := cs[alice.outer].RemoteTS; !slices.Equal(got, []string{alice.net.String()}) {
		t.Errorf("alice's SA holds %v, want %v", got, alice.net)
	}
	for _, c := range waitChildren(t, bob, netip.MustParseAddr("192.0.3.1")) {
		if !slices.Equal(c.LocalTS, []string{bob.net.String()}) {
			t.Errorf("bob's SA holds %v on his side, want only %v", c.LocalTS, bob.net)
		}
	}
	mustPing(t, gw.ns, gw.inner, alice.inner, 5)
	mustPing(t, gw.ns, gw.inner, bob.inner, 5)
	mustPing(t, bob.ns, bob.inner, gw.inner, 3)
	for _, h := range []*host{gw, bob} {
		h.checkAlive(t)
	}
	if !swan {
		alice.checkAlive(t)
	}
}
