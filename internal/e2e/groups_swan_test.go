package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/swantest"
)

// This file proves that strongSwan 5.9.8's charon (internal/swantest) can be
// a host of a policy group (issue 10), with a certificate from the group's
// CA that names its address in subjectAltName, in both roles.
//
// charon runs with kernel-libipsec, which only does tunnel mode, so the
// group's connection has a tunnel between the two hosts: mode tunnel with
// dynamic selectors, the two IKE addresses, negotiated per peer as the
// transport-mode hosts of TestPolicyGroups are. Its remote traffic
// selector is then the IKE peer itself, so its route via ipsec0 would also
// catch charon's own IKE and ESP datagrams: charon's sockets get a firewall
// mark that the routing rule of its table 220 skips (strongSwan's
// kernel-libipsec allow_peer_ts, with socket-default and kernel-netlink
// fwmark).

// swanGroupCharon is the strongswan.conf text for a charon host of a group.
const swanGroupCharon = `charon {
  plugins {
    kernel-libipsec {
      allow_peer_ts = yes
    }
    kernel-netlink {
      fwmark = !0x42
    }
    socket-default {
      fwmark = 0x42
    }
  }
}`

// swanGroupConn is charon's swanctl.conf for a host of the group at local,
// identified by id (an IP address of its certificate): connection "group"
// answers any host of the group's prefix; with toA, connection "toa"
// initiates to the goipsec host at a (child "toa"), and connection "dn"
// too, identified by its certificate's subject, strongSwan's default
// identity (child "dn"). All have a tunnel between the two hosts (dynamic
// selectors, strongSwan's default).
func swanGroupConn(local, id, a netip.Addr, toA bool) string {
	type conn struct{ name, remote, id string }
	conns := []conn{{"group", "10.77.0.0/24", id.String()}}
	if toA {
		conns = append(conns, conn{"toa", a.String(), id.String()}, conn{"dn", a.String(), `"O=goipsec test, CN=s"`})
	}
	var b strings.Builder
	b.WriteString("connections {\n")
	for _, c := range conns {
		fmt.Fprintf(&b, `  %s {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = aes256gcm16-prfsha256-x25519
    local {
      auth = pubkey
      certs = host.pem
      id = %s
    }
    remote {
      auth = pubkey
      cacerts = ca.pem
    }
    children {
      %s {
        mode = tunnel
        esp_proposals = aes256gcm16
      }
    }
  }
`, c.name, local, c.remote, c.id, c.name)
	}
	b.WriteString("}\n")
	return b.String()
}

// startSwanHost starts charon on h with the certificate and key that the
// CA issued as name (name.pem, name.key) and the CA, identified by id, and
// loads swanGroupConn.
func startSwanHost(t *testing.T, n *bridgeNet, h *groupHost, name string, id, a netip.Addr, toA bool) *swantest.Charon {
	t.Helper()
	files := map[string]string{}
	for from, to := range map[string]string{name + ".pem": "x509/host.pem", name + ".key": "private/host.key", "ca.pem": "x509ca/ca.pem"} {
		data, err := os.ReadFile(n.ca.Path(from))
		if err != nil {
			t.Fatal(err)
		}
		files[to] = string(data)
	}
	return swantest.Start(t, h.ns, swantest.Config{
		Conn:   swanGroupConn(h.outer, id, a, toA),
		Charon: swanGroupCharon,
		Files:  files,
	})
}

// TestPolicyGroupStrongSwan runs a private group (10.77.0.0/24) whose
// connection has a tunnel between the two hosts, on goipsec host A
// (10.77.0.1) and B (10.77.0.2), with charon host S (10.77.0.5) holding a
// certificate of the group's CA for its address, identified by that
// address (about 10 s). A and B reach each other through a tunnel of
// their own, then:
//
//   - (a) A's first packet to S starts IKE with S alone, on demand; S
//     answers with its connection for the group's prefix; pings pass both
//     ways through the SA; "ipsecctl peers" lists S established in group
//     private, identified by its address, A the initiator;
//   - (b) after S deleted it, S initiates (swanctl --initiate) and A, as
//     the responder, accepts it for the group and protects the traffic;
//     S identified by its certificate's subject (strongSwan's default
//     identity) is refused: a group's peer is the address it speaks from;
//   - (c) charon host M (10.77.0.6) with a valid certificate of the CA
//     that names 10.77.0.9, not its address, is refused by A in both
//     roles: its initiation fails, and A's packets to M start IKE whose
//     answer A refuses (the packets are dropped under private).
func TestPolicyGroupStrongSwan(t *testing.T) {
	requireBins(t)
	n := newBridge(t)
	addr := func(last byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 0, last}) }
	a := n.add(t, "a", addr(1), 24, true)
	s := n.add(t, "s", addr(5), 24, true)
	m := n.add(t, "m", addr(6), 24, false)
	if err := n.ca.Host("m", addr(9)); err != nil {
		t.Fatal(err)
	}
	b := n.add(t, "b", addr(2), 24, true)
	for _, h := range []*groupHost{a, b} {
		h.startDaemon(t, strings.Replace(groupsPolicy(h, groupsPrivate), "mode: transport", "mode: tunnel", 1))
	}
	chS := startSwanHost(t, n, s, "s", s.outer, a.outer, false)
	chM := startSwanHost(t, n, m, "m", addr(9), a.outer, true)

	// The same policy between goipsec hosts: a tunnel between A and B.
	mustPingSoon(t, a.ns, a.outer, b.outer)
	if ch, ok := installedChildren(a.host)[b.outer]; !ok || ch.Mode != "tunnel" || fmt.Sprint(ch.RemoteTS) != "["+b.outer.String()+"/32]" {
		t.Errorf("A's CHILD SA with B: %+v, want a tunnel to %v alone", ch, b.outer)
	}

	// (a) goipsec initiates on demand; charon answers for the group.
	mustPingSoon(t, a.ns, a.outer, s.outer)
	mustPing(t, s.ns, s.outer, a.outer, 3)
	checkSwanPeer(t, a, s, chS, "group", true)
	if err := chS.Terminate("group"); err != nil {
		t.Fatal(err)
	}
	if !nstest.WaitFor(10*time.Second, func() bool { _, ok := peersOf(t, a.host)[s.outer]; return !ok }) {
		t.Fatalf("A still lists S as a peer after charon deleted the IKE SA: %+v", peersOf(t, a.host)[s.outer])
	}

	// (b) charon initiates; goipsec accepts it for the group.
	if err := chS.Load(swanGroupConn(s.outer, s.outer, a.outer, true)); err != nil {
		t.Fatal(err)
	}
	if _, err := chS.Initiate("dn"); err == nil {
		t.Errorf("A accepted S identified by its certificate's subject")
	}
	if _, err := chS.Initiate("toa"); err != nil {
		t.Fatalf("charon's initiation to A: %v", err)
	}
	mustPing(t, s.ns, s.outer, a.outer, 3)
	mustPing(t, a.ns, a.outer, s.outer, 3)
	checkSwanPeer(t, a, s, chS, "toa", false)

	// (c) M's certificate names another address: refused as responder...
	if _, err := chM.Initiate("toa"); err == nil {
		t.Errorf("charon M, whose certificate names %v, set up an SA with A from %v", addr(9), m.outer)
	}
	// ... and as initiator: A's packets to M start IKE, and A refuses
	// M's answer.
	if n, _ := ping(t, a.ns, a.outer, m.outer, 3, "0.5"); n != 0 {
		t.Errorf("%d of A's pings to M got a reply", n)
	}
	for _, want := range []string{
		"no peer configuration for identity O=goipsec test, CN=s", // S by its subject, (b)
		"no peer configuration for identity 10.77.0.9",            // M initiating
		"the peer is 10.77.0.9, not its address 10.77.0.6",        // M responding
	} {
		if !nstest.WaitFor(10*time.Second, func() bool { return strings.Contains(a.proc.Output.String(), want) }) {
			t.Errorf("A's log does not say %q\n%s", want, a.proc.Output)
		}
	}
	if p, ok := peersOf(t, a.host)[m.outer]; ok && p.State == ctlapi.PeerEstablished {
		t.Errorf("A has an established peer at M's address: %+v", p)
	}
	if _, ok := installedChildren(a.host)[m.outer]; ok {
		t.Errorf("A has a CHILD SA with M")
	}
	a.checkAlive(t)
}

// checkSwanPeer checks A's peer S after traffic flowed: established in
// group private (in "ipsecctl peers" and "explain"), identified by its
// address, with one CHILD SA in tunnel
// mode between the two hosts that charon agrees on, SPIs and selectors.
func checkSwanPeer(t *testing.T, a, s *groupHost, ch *swantest.Charon, conn string, goInit bool) {
	t.Helper()
	p, ok := peersOf(t, a.host)[s.outer]
	if !ok || p.State != ctlapi.PeerEstablished || p.Group != "private" || p.RemoteID != s.outer.String() || p.Children != 1 || p.Initiator != goInit {
		t.Errorf("A's peer %v: %+v (want established, private, id %v, 1 child, initiator %v)", s.outer, p, s.outer, goInit)
	}
	if res := explainOut(t, a.host, a.outer, s.outer); res.Group != "private" || res.Action != ctlapi.ActionProtect {
		t.Errorf("explain A -> S: %s by group %q", res.Action, res.Group)
	}
	gc, ok := installedChildren(a.host)[s.outer]
	if !ok {
		t.Fatalf("A has no CHILD SA with %v", s.outer)
	}
	host := func(x netip.Addr) []string { return []string{netip.PrefixFrom(x, 32).String()} }
	if gc.Mode != "tunnel" || fmt.Sprint(gc.LocalTS) != fmt.Sprint(host(a.outer)) || fmt.Sprint(gc.RemoteTS) != fmt.Sprint(host(s.outer)) {
		t.Errorf("A's CHILD SA with S: %s mode, %v === %v; want tunnel, %v === %v", gc.Mode, gc.LocalTS, gc.RemoteTS, a.outer, s.outer)
	}
	sas, err := ch.ListSAs()
	if err != nil {
		t.Fatal(err)
	}
	var sc *swantest.ChildSA
	for i := range sas {
		for j := range sas[i].Children {
			if c := &sas[i].Children[j]; c.SPIIn == uint32(gc.SPIOut) && sas[i].Name == conn {
				sc = c
			}
		}
	}
	if sc == nil {
		t.Fatalf("charon has no CHILD SA of connection %s with inbound SPI %v: %+v", conn, gc.SPIOut, sas)
	}
	if sc.SPIOut != uint32(gc.SPIIn) || sc.Mode != "TUNNEL" || sc.PacketsIn < 3 || sc.PacketsOut < 3 {
		t.Errorf("charon's CHILD SA: out SPI %08x (A's in %v), %s, packets in %d out %d", sc.SPIOut, gc.SPIIn, sc.Mode, sc.PacketsIn, sc.PacketsOut)
	}
	t.Logf("A's peer %v: %+v; CHILD SA %s %v === %v", s.outer, p, gc.Mode, gc.LocalTS, gc.RemoteTS)
}
