package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/testca"
)

// This file proves issue 10's policy groups between real daemons: four
// hosts on one bridge (10.77.0.0/24), A, B and C running goipsec with
// certificates from one CA made in the test (each with its address in
// subjectAltName), D running no IPsec. One policy, the same file on A, B
// and C but for its socket: 10.77.0.0/24 is private, D (10.77.0.4) is
// private-or-clear.

// groupHost is a host of the bridge; dir holds its certificate, key,
// configuration and socket.
type groupHost struct {
	*host
	dir string
}

// groupsPolicy is the policy that every host of the test runs; groups is
// the YAML of its groups section.
func groupsPolicy(h *groupHost, groups string) string {
	return fmt.Sprintf(`daemon:
  socket: %q
  tun: {name: ipsec0, mtu: 1400}
  log: {level: info}
`, h.sock) + hostsConnection + "groups:\n" + groups
}

// hostsConnection is the connections section of the groups' connection
// "hosts"; the file names are those of each host's own directory.
const hostsConnection = `connections:
  hosts:
    remote_addrs: [10.77.0.0/24]
    proposals: [aes256gcm16-prfsha256-x25519]
    local: {auth: pubkey, certs: [host.pem], key: host.key}
    remote: {auth: pubkey, cacerts: [ca.pem]}
    children:
      host: {mode: transport, esp_proposals: [aes256gcm16]}
`

const (
	groupsPrivate = "  private: {prefixes: [10.77.0.0/24], connection: hosts}\n"
	groupsD       = "  private-or-clear: {prefixes: [10.77.0.4/32], connection: hosts, fallback_timeout: 2s, fallback_time: 5s}\n"
)

// bridgeNet is a bridge in a namespace of its own, a directory and a CA
// for the hosts linked to it.
type bridgeNet struct {
	br  *nstest.NS
	top string
	ca  *testca.CA
}

func newBridge(t *testing.T) *bridgeNet {
	t.Helper()
	top, err := os.MkdirTemp("", "ggrp") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	ca, err := testca.New(top, "goipsec e2e CA")
	if err != nil {
		t.Fatal(err)
	}
	br := nstest.New(t, "br")
	br.MustRun("ip", "link", "add", "br0", "type", "bridge")
	br.MustRun("ip", "link", "set", "br0", "up")
	return &bridgeNet{br: br, top: top, ca: ca}
}

// add links a new host with address addr (in a /prefix) to the bridge; with
// cert, it gets a certificate of the CA as host.pem and host.key, and the
// CA as ca.pem, in its directory.
func (n *bridgeNet) add(t *testing.T, label string, addr netip.Addr, prefix int, cert bool) *groupHost {
	t.Helper()
	h := &groupHost{host: &host{ns: nstest.New(t, label), outer: addr, inner: addr, net: netip.PrefixFrom(addr, 32)}, dir: filepath.Join(n.top, label)}
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h.sock, h.conf = filepath.Join(h.dir, "s.sock"), filepath.Join(h.dir, "ipsecd.yaml")
	port := "p" + label
	nstest.Link(t, h.ns, "eth0", []string{fmt.Sprintf("%s/%d", addr, prefix)}, n.br, port, nil)
	n.br.MustRun("ip", "link", "set", port, "master", "br0")
	// Reverse-path filtering off: what drops forged datagrams is
	// goipsec's table, not the kernel's routing check.
	h.ns.MustRun("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0")
	if !cert {
		return h
	}
	if err := n.ca.Host(label, addr); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{label + ".pem": "host.pem", label + ".key": "host.key", "ca.pem": "ca.pem"} {
		data, err := os.ReadFile(n.ca.Path(from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(h.dir, to), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// bridgeHosts builds the bridge and the four hosts, with certificates for
// A, B and C.
func bridgeHosts(t *testing.T) (a, b, c, d *groupHost) {
	t.Helper()
	n := newBridge(t)
	mk := func(label string, last byte) *groupHost {
		return n.add(t, label, netip.AddrFrom4([4]byte{10, 77, 0, last}), 24, label != "d")
	}
	return mk("a", 1), mk("b", 2), mk("c", 3), mk("d", 4)
}

// peersOf returns h's on-demand peers by address.
func peersOf(t *testing.T, h *host) map[netip.Addr]ctlapi.Peer {
	t.Helper()
	var p ctlapi.Peers
	h.ctlJSON(t, &p, "peers")
	out := map[netip.Addr]ctlapi.Peer{}
	for _, x := range p.Peers {
		out[x.Addr] = x
	}
	return out
}

func explainOut(t *testing.T, h *host, src, dst netip.Addr) ctlapi.ExplainResult {
	t.Helper()
	var res ctlapi.ExplainResult
	h.ctlJSON(t, &res, "explain", src.String(), dst.String())
	return res
}

// TestPolicyGroups is the proof of issue 10 for the local file (about 35 s:
// four namespaces, three daemons, and the fallback timers run in real
// time, so it cannot be shorter): A and B
// protect each other on demand with one policy, and A and C; A's traffic
// to D (private-or-clear) falls back to the clear within fallback_timeout
// and tries IKE again after fallback_time; with D's prefix private, A's
// packets to D are dropped and counted; cleartext forged from B's address
// is dropped and counted; C, holding a valid certificate of the CA, cannot
// speak for B's address.
func TestPolicyGroups(t *testing.T) {
	requireBins(t)
	a, b, c, d := bridgeHosts(t)
	for _, h := range []*groupHost{a, b, c} {
		h.startDaemon(t, groupsPolicy(h, groupsPrivate+groupsD))
	}

	// On demand, per host: the first ping starts IKE with that host
	// alone, in both directions.
	mustPingSoon(t, a.ns, a.outer, b.outer)
	mustPingSoon(t, a.ns, a.outer, c.outer)
	mustPingSoon(t, c.ns, c.outer, b.outer)
	pa := peersOf(t, a.host)
	for _, h := range []*groupHost{b, c} {
		p, ok := pa[h.outer]
		if !ok || p.State != ctlapi.PeerEstablished || p.Group != "private" || p.RemoteID != h.outer.String() || p.Children != 1 {
			t.Errorf("A's peer %v: %+v", h.outer, p)
		}
	}
	if _, children, _ := established(a.trySAs()); len(children) != 0 {
		t.Logf("A's CHILD SAs of connection %q: %d", connName, len(children))
	}
	for _, ch := range installedChildren(a.host) {
		if ch.Mode != "transport" {
			t.Errorf("A's CHILD SA with %v is in %s mode, want transport", ch.RemoteAddr, ch.Mode)
		}
	}
	if res := explainOut(t, a.host, a.outer, b.outer); res.Group != "private" || res.Action != ctlapi.ActionProtect {
		t.Errorf("explain A -> B: %s by group %q", res.Action, res.Group)
	}

	// Cleartext forged from B's address by D is dropped and counted.
	d.ns.MustRun("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.eth0.arp_ignore=1")
	d.ns.AddLoopbackAddr(b.outer.String())
	sink := listenUDP(t, a.ns, netip.AddrPortFrom(a.outer, 7000))
	before := dropCount(t, a.ns)
	const forged = 5
	for i := range forged {
		sendUDP(t, d.ns, netip.AddrPortFrom(b.outer, 40000), netip.AddrPortFrom(a.outer, 7000), fmt.Sprintf("forged %d", i))
	}
	if !sink.await(t, "real", func() {
		sendUDP(t, b.ns, netip.AddrPortFrom(b.outer, 40001), netip.AddrPortFrom(a.outer, 7000), "real")
	}) {
		t.Errorf("B's datagram, over its SA, did not reach A")
	}
	if n := sink.count("forged"); n != 0 {
		t.Errorf("%d of %d cleartext datagrams forged from B's address reached A", n, forged)
	}
	if n := dropCount(t, a.ns) - before; n < forged {
		t.Errorf("A's filter counted %d drops of the %d forged datagrams", n, forged)
	} else {
		t.Logf("A's filter dropped and counted %d forged datagrams from %v", n, b.outer)
	}
	d.ns.MustRun("ip", "addr", "del", b.outer.String()+"/32", "dev", "lo")

	// D runs no IKE: private-or-clear falls back to the clear. Pings
	// every 250 ms; the first that gets a reply tells when.
	took, ok := timeToFirstReply(t, a.ns, a.outer, d.outer, 16, 250*time.Millisecond)
	if !ok {
		t.Fatalf("A's pings to D never fell back to the clear\n%s", a.proc.Output)
	}
	t.Logf("A -> D: first reply in the clear %v after the first packet (fallback_timeout 2s)", took)
	if took > 5*time.Second {
		t.Errorf("the fallback took %v, want about fallback_timeout (2s)", took)
	}
	res := explainOut(t, a.host, a.outer, d.outer)
	if res.Group != "private-or-clear" || res.Fallback == nil || !res.Fallback.Active || res.Action != ctlapi.ActionBypass {
		t.Errorf("explain A -> D during the fallback: %s by %q, fallback %+v", res.Action, res.Group, res.Fallback)
	}
	if p := peersOf(t, a.host)[d.outer]; p.State != ctlapi.PeerClear || p.Until.IsZero() {
		t.Errorf("A's peer D during the fallback: %+v", p)
	}
	until := res.Fallback.Until
	// After fallback_time, the next packet tries IKE again.
	time.Sleep(time.Until(until.Add(500 * time.Millisecond)))
	if r := explainOut(t, a.host, a.outer, d.outer); r.Fallback == nil || r.Fallback.Active {
		t.Errorf("explain A -> D after the fallback's end: %+v", r.Fallback)
	}
	retried := nstest.WaitFor(10*time.Second, func() bool {
		ping(t, a.ns, a.outer, d.outer, 1, "0.2")
		f := explainOut(t, a.host, a.outer, d.outer).Fallback
		return f != nil && (f.Negotiating || f.Active && f.Until.After(until))
	})
	if !retried {
		t.Errorf("A did not try IKE with D again after the fallback ended")
	}

	// D's prefix private: A's packets to D are dropped and counted.
	writeFile(t, a.conf, groupsPolicy(a, groupsPrivate))
	if _, err := a.ctl(context.Background(), "reload"); err != nil {
		t.Fatal(err)
	}
	dropsBefore := a.status(t).Counters.Drops["no_sa"]
	if n, _ := ping(t, a.ns, a.outer, d.outer, 3, "0.2"); n != 0 {
		t.Errorf("with D private, %d of 3 pings reached D", n)
	}
	if got := nstest.WaitFor(15*time.Second, func() bool { return a.status(t).Counters.Drops["no_sa"] > dropsBefore }); !got {
		t.Errorf("A counted no dropped packet to D (no_sa %d)", dropsBefore)
	} else {
		t.Logf("A dropped and counted %d packets to D under private", a.status(t).Counters.Drops["no_sa"]-dropsBefore)
	}

	// C, with a valid certificate for its own address, takes B's
	// address: A refuses it, and nothing of B's traffic goes to it.
	b.proc.Stop()
	if _, err := a.ctl(context.Background(), "down", "hosts"); err != nil {
		t.Logf("down hosts: %v", err)
	}
	b.ns.MustRun("ip", "addr", "del", b.outer.String()+"/24", "dev", "eth0")
	c.ns.MustRun("ip", "addr", "add", b.outer.String()+"/24", "dev", "eth0")
	if n, _ := ping(t, a.ns, a.outer, b.outer, 3, "0.5"); n != 0 {
		t.Errorf("A's pings to B's address reached C %d times", n)
	}
	refused := nstest.WaitFor(10*time.Second, func() bool {
		return strings.Contains(a.proc.Output.String(), "is not in its certificate") ||
			strings.Contains(a.proc.Output.String(), "not its address 10.77.0.2") ||
			strings.Contains(a.proc.Output.String(), "AUTHENTICATION_FAILED") ||
			strings.Contains(a.proc.Output.String(), "may not claim 10.77.0.2/32")
	})
	if !refused {
		t.Errorf("A's log does not say it refused C at B's address\n%s", a.proc.Output)
	}
	if p, ok := peersOf(t, a.host)[b.outer]; ok && p.State == ctlapi.PeerEstablished {
		t.Errorf("A has an established peer at B's address: %+v", p)
	}
	a.checkAlive(t)
}

// timeToFirstReply pings count times every interval and returns how long after
// the first echo request the first reply's request was sent.
func timeToFirstReply(t *testing.T, ns *nstest.NS, src, dst netip.Addr, count int, interval time.Duration) (time.Duration, bool) {
	t.Helper()
	out, _ := ns.Run("ping", "-n", "-c", fmt.Sprint(count), "-i", fmt.Sprint(interval.Seconds()), "-W", "1", "-I", src.String(), dst.String())
	m := icmpSeqRE.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	seq, _ := strconv.Atoi(m[1])
	return time.Duration(seq-1) * interval, true
}

var icmpSeqRE = regexp.MustCompile(`icmp_seq=(\d+)`)

// mustPingSoon pings until a reply comes (the first packets wait for IKE),
// for up to 15 seconds, then requires 3 of 3.
func mustPingSoon(t *testing.T, ns *nstest.NS, src, dst netip.Addr) {
	t.Helper()
	if !nstest.WaitFor(15*time.Second, func() bool { n, _ := ping(t, ns, src, dst, 1, "0.2"); return n == 1 }) {
		t.Fatalf("[%s] no reply from %v within 15s", ns.Name, dst)
	}
	mustPing(t, ns, src, dst, 3)
}

// TestPrivateOrClearRefusal checks that a private-or-clear peer that
// refuses IKE puts A's traffic to it in the clear at once, not after
// fallback_timeout (30 s here, longer than A pings): E runs goipsec with
// a certificate of the CA but an IKE proposal that A does not offer, so
// it answers A's IKE_SA_INIT with NO_PROPOSAL_CHOSEN (RFC 7296, Section
// 2.7); E's own group for the bridge is clear-or-private, so it answers
// A's pings in the clear. About 5 s.
func TestPrivateOrClearRefusal(t *testing.T) {
	requireBins(t)
	n := newBridge(t)
	a := n.add(t, "a", netip.AddrFrom4([4]byte{10, 77, 0, 1}), 24, true)
	e := n.add(t, "e", netip.AddrFrom4([4]byte{10, 77, 0, 5}), 24, true)
	a.startDaemon(t, groupsPolicy(a, groupsPrivate+
		"  private-or-clear: {prefixes: [10.77.0.5/32], connection: hosts, fallback_timeout: 30s, fallback_time: 5m}\n"))
	const other = "aes128gcm16-prfsha384-ecp384"
	e.startDaemon(t, strings.Replace(groupsPolicy(e, "  clear-or-private: {prefixes: [10.77.0.0/24], connection: hosts}\n"),
		"aes256gcm16-prfsha256-x25519", other, 1))

	took, ok := timeToFirstReply(t, a.ns, a.outer, e.outer, 30, 100*time.Millisecond)
	if !ok {
		t.Fatalf("A's pings to E did not fall back to the clear within 3 s (fallback_timeout 30s)\n%s", a.proc.Output)
	}
	t.Logf("A -> E: first reply in the clear %v after the first packet (E refuses; fallback_timeout 30s)", took)
	res := explainOut(t, a.host, a.outer, e.outer)
	if res.Group != "private-or-clear" || res.Fallback == nil || !res.Fallback.Active || res.Action != ctlapi.ActionBypass ||
		!strings.Contains(res.Reason, "refused with NO_PROPOSAL_CHOSEN") {
		t.Errorf("explain A -> E after the refusal: %s by %q, fallback %+v: %s", res.Action, res.Group, res.Fallback, res.Reason)
	}
	if p := peersOf(t, a.host)[e.outer]; p.State != ctlapi.PeerClear || p.Until.IsZero() {
		t.Errorf("A's peer E after the refusal: %+v", p)
	}
	a.checkAlive(t)
	e.checkAlive(t)
}
