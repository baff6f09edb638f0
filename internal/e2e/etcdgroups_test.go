package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/etcdtest"
	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/testca"
)

// This file joins issue 10's two halves: the policy groups of
// TestPolicyGroups, distributed by the etcd source of TestEtcdPolicy. The
// hosts' files hold only their own settings and policy_sources; the
// connection and the groups are one document in etcd.

// etcdGroupsPrefix is the key prefix of the documents (the default).
const etcdGroupsPrefix = "/goipsec/policy/"

// etcdGroupsLocal is the local file of a host of TestEtcdGroups: the
// daemon's settings and where the policy comes from, nothing else.
func etcdGroupsLocal(h *groupHost, endpoints []string) string {
	return fmt.Sprintf(`daemon:
  socket: %q
  state_dir: %q
  tun: {name: ipsec0, mtu: 1400}
  log: {level: info}
policy_sources:
  etcd:
    endpoints: [%s]
    labels: [site=lab]
    resync: 2s
    dial_timeout: 2s
    request_timeout: 2s
`, h.sock, filepath.Join(h.dir, "state"), strings.Join(endpoints, ", "))
}

// etcdGroupsDoc is the policy document for every host labelled site=lab:
// the connection of TestPolicyGroups (the file names are those of each
// host's own directory), 10.77.0.0/24 private, the etcd servers' address
// in the clear (the hosts must reach them before any policy, and while
// none is negotiated), and D's address in the group dGroup.
func etcdGroupsDoc(dGroup string) string {
	d := "  private-or-clear: {prefixes: [10.77.0.4/32], connection: hosts, fallback_timeout: 2s, fallback_time: 5m}\n"
	if dGroup == "block" {
		d = "  block: {prefixes: [10.77.0.4/32]}\n"
	}
	return "targets: [{site: lab}]\n" + hostsConnection + `groups:
  private: {prefixes: [10.77.0.0/24], connection: hosts}
  clear: {prefixes: [10.77.0.254/32]}
` + d
}

// source returns h's one policy source from ipsecctl status.
func source(t *testing.T, h *host) ctlapi.PolicySource {
	t.Helper()
	st := h.status(t)
	if len(st.PolicySources) != 1 {
		t.Fatalf("[%s] %d policy sources in status, want 1", h.ns.Name, len(st.PolicySources))
	}
	return st.PolicySources[0]
}

// childWith returns h's installed CHILD SA with peer, or ok false.
func childWith(h *host, peer netip.Addr) (ctlapi.ChildSA, bool) {
	c, ok := installedChildren(h)[peer]
	return c, ok
}

// TestEtcdGroups is the proof of issue 10 for group policy from etcd
// (about 15 s): hosts A and B (goipsec, certificates from one CA) and D (no
// IPsec) on one bridge, and an etcd cluster of three members (Debian's
// etcd-server) in the bridge's namespace on 10.77.0.254. The connection and
// the groups come from one etcd document; the local files hold host
// settings and policy_sources only. A and B protect each other on demand;
// A's traffic to D (private-or-clear) falls back to the clear; moving D's
// prefix to block in etcd takes effect on A (the time from the put to the
// SPD showing it, and to the last reply from D, is logged); a malformed
// document and one that puts a prefix in two groups are refused and shown
// by ipsecctl status while the policy stays; with one member killed, then
// all of them, A and B keep the last policy, their pings go on through
// the same SA, and a new negotiation still succeeds.
func TestEtcdGroups(t *testing.T) {
	requireBins(t)
	n := newBridge(t)
	n.br.MustRun("ip", "addr", "add", "10.77.0.254/24", "dev", "br0")
	mk := func(label string, last byte) *groupHost {
		return n.add(t, label, netip.AddrFrom4([4]byte{10, 77, 0, last}), 24, label != "d")
	}
	a, b, d := mk("a", 1), mk("b", 2), mk("d", 4)

	cl := etcdtest.Start(t, 3, "10.77.0.254", n.br.Name)
	cl.Put(etcdGroupsPrefix+"10-hosts", etcdGroupsDoc("private-or-clear"))
	for _, h := range []*groupHost{a, b} {
		h.startDaemon(t, etcdGroupsLocal(h, cl.Endpoints))
	}
	for _, h := range []*groupHost{a, b} {
		var src ctlapi.PolicySource
		if !nstest.WaitFor(10*time.Second, func() bool { src = source(t, h.host); return src.Revision > 0 }) {
			t.Fatalf("[%s] no policy from etcd within 10 s: %+v", h.ns.Name, src)
		}
		if len(src.Documents) != 1 || !strings.HasSuffix(src.Documents[0], "10-hosts") || !src.Connected {
			t.Errorf("[%s] policy source: %+v", h.ns.Name, src)
		}
	}

	// A and B protect each other on demand, with the policy from etcd.
	mustPingSoon(t, a.ns, a.outer, b.outer)
	mustPing(t, b.ns, b.outer, a.outer, 3)
	if p := peersOf(t, a.host)[b.outer]; p.State != ctlapi.PeerEstablished || p.Group != "private" || p.RemoteID != b.outer.String() {
		t.Errorf("A's peer B: %+v", p)
	}
	if res := explainOut(t, a.host, a.outer, b.outer); res.Group != "private" || res.Action != ctlapi.ActionProtect {
		t.Errorf("explain A -> B: %s by group %q", res.Action, res.Group)
	}
	sa, ok := childWith(a.host, b.outer)
	if !ok || sa.Mode != "transport" {
		t.Fatalf("A has no transport-mode CHILD SA with B: %+v", sa)
	}

	// D runs no IKE: private-or-clear falls back to the clear. A pinger
	// every 50 ms then tells when the block from etcd stopped the replies.
	const every = 50 * time.Millisecond
	toD := startPinger(t, a.ns, a.outer, d.outer, every)
	t.Logf("A -> D: first reply in the clear %v after the first packet (fallback_timeout 2s)", waitTraffic(t, toD, time.Now(), "A -> D fallback"))
	if res := explainOut(t, a.host, a.outer, d.outer); res.Group != "private-or-clear" || res.Action != ctlapi.ActionBypass {
		t.Errorf("explain A -> D during the fallback: %s by group %q", res.Action, res.Group)
	}

	// D's prefix moved to block in etcd.
	dropsBefore := a.status(t).Counters.Drops
	put := time.Now()
	cl.Put(etcdGroupsPrefix+"10-hosts", etcdGroupsDoc("block"))
	putDone := time.Since(put)
	var spd time.Duration
	var res ctlapi.ExplainResult
	if !nstest.WaitFor(10*time.Second, func() bool {
		res = explainOut(t, a.host, a.outer, d.outer)
		spd = time.Since(put)
		return res.Group == "block"
	}) {
		t.Fatalf("D's prefix moved to block in etcd did not reach A within 10 s: %s by group %q", res.Action, res.Group)
	}
	if res.Action != ctlapi.ActionDiscard {
		t.Errorf("explain A -> D in group block: %s", res.Action)
	}
	// Replies to echo requests sent before the change may still come:
	// wait a second past the SPD change, then none may.
	time.Sleep(time.Second)
	toD.mu.Lock()
	var last time.Time
	afterPut := 0
	for _, r := range toD.replies {
		if r.After(put) {
			last = r
			afterPut++
		}
	}
	toD.mu.Unlock()
	settled := time.Now()
	time.Sleep(time.Second)
	if r, ok := toD.firstReplyAfter(settled, 0); ok {
		t.Errorf("A -> D: a reply at %v, %v after the put, with D blocked", r, r.Sub(put))
	}
	toD.close()
	if afterPut == 0 {
		t.Logf("etcd put (took %v) to A's SPD showing D blocked (explain polled): %v; no reply from D after the put", putDone, spd)
	} else {
		t.Logf("etcd put (took %v) to A's SPD showing D blocked (explain polled): %v; last reply from D %v after the put, so the first dropped echo request was sent at most %v after it", putDone, spd, last.Sub(put), last.Sub(put)+every)
	}
	if spd > 2*time.Second {
		t.Logf("note: the change took %v, more than the 2 s the issue asks (the machine is loaded?)", spd)
	}
	dropsAfter := a.status(t).Counters.Drops
	var dropped []string
	for reason, n := range dropsAfter {
		if n > dropsBefore[reason] {
			dropped = append(dropped, fmt.Sprintf("%s +%d", reason, n-dropsBefore[reason]))
		}
	}
	sent, refused, _ := toD.counts()
	if len(dropped) == 0 && refused == 0 {
		t.Errorf("A counted no drop of its packets to the blocked D (drops %v)", dropsAfter)
	}
	t.Logf("A -> D blocked: %d echo requests sent in all, %d refused by the kernel, A's drop counters %v", sent, refused, dropped)
	mustPing(t, a.ns, a.outer, b.outer, 3)

	// A malformed document is refused and reported; the policy stays.
	want := source(t, a.host)
	cl.Put(etcdGroupsPrefix+"30-bad", "targets: [{site: lab}]\ngroups:\n  block: {prefixes: [10.77.0.9/33]}\n")
	refusedBy := func(h *groupHost, n uint64, key string) ctlapi.PolicySource {
		t.Helper()
		var src ctlapi.PolicySource
		if !nstest.WaitFor(10*time.Second, func() bool { src = source(t, h.host); return src.Refused >= n }) ||
			!strings.Contains(src.LastError, etcdGroupsPrefix+key) {
			t.Errorf("[%s] policy source after a bad document %s: %+v", h.ns.Name, key, src)
		}
		return src
	}
	for _, h := range []*groupHost{a, b} {
		refusedBy(h, 1, "30-bad:3: groups.block")
	}
	out, err := a.ctl(context.Background(), "status")
	if err != nil || !strings.Contains(string(out), "30-bad") || !strings.Contains(string(out), "1 refused") {
		t.Errorf("ipsecctl status does not show the refusal: %v\n%s", err, out)
	}
	// A document that puts D's address in a second group: each document
	// is valid alone, the merge is not.
	cl.Put(etcdGroupsPrefix+"30-bad", "targets: [{site: lab}]\ngroups:\n  clear: {prefixes: [10.77.0.4/32]}\n")
	src := refusedBy(a, 2, "30-bad:3: groups.clear.prefixes: prefix 10.77.0.4/32 is already in group block (etcd:"+etcdGroupsPrefix+"10-hosts)")
	t.Logf("A refused: %s", src.LastError)
	if src.Revision != want.Revision || !slices.Equal(src.Documents, want.Documents) {
		t.Errorf("A's policy in force changed after refusals: %+v, was %+v", src, want)
	}
	if res := explainOut(t, a.host, a.outer, d.outer); res.Group != "block" {
		t.Errorf("explain A -> D after the refusals: %s by group %q", res.Action, res.Group)
	}
	mustPing(t, a.ns, a.outer, b.outer, 3)

	// One member killed, then all: A and B keep the last policy, and
	// their pings go on through the same SA.
	toB := startPinger(t, a.ns, a.outer, b.outer, 100*time.Millisecond)
	phase := func(what string) {
		t.Helper()
		at := time.Now()
		waitTraffic(t, toB, at, "A -> B "+what)
		mustPing(t, b.ns, b.outer, a.outer, 3)
		for _, h := range []*groupHost{a, b} {
			peer := b.outer
			if h == b {
				peer = a.outer
			}
			if res := explainOut(t, h.host, h.outer, peer); res.Group != "private" || res.Action != ctlapi.ActionProtect {
				t.Errorf("[%s] %s: explain to %v: %s by group %q", h.ns.Name, what, peer, res.Action, res.Group)
			}
		}
		if res := explainOut(t, a.host, a.outer, d.outer); res.Group != "block" {
			t.Errorf("%s: explain A -> D: %s by group %q", what, res.Action, res.Group)
		}
		now, ok := childWith(a.host, b.outer)
		if !ok || now.SPIOut != sa.SPIOut || now.PacketsOut <= sa.PacketsOut || now.PacketsIn <= sa.PacketsIn {
			t.Errorf("%s: A's CHILD SA with B %+v, was %+v", what, now, sa)
		}
		sa = now
		t.Logf("%s: A's SA with B (SPI out %v) at %d packets out, %d in; A's source connected %v", what, now.SPIOut, now.PacketsOut, now.PacketsIn, source(t, a.host).Connected)
	}
	cl.Members[0].Kill()
	phase("one etcd member killed")
	for _, m := range cl.Members[1:] {
		m.Kill()
	}
	if !nstest.WaitFor(15*time.Second, func() bool { return !source(t, a.host).Connected }) {
		t.Errorf("A's status still says connected with every etcd member down")
	}
	phase("every etcd member killed")
	if src := source(t, a.host); src.Revision != want.Revision {
		t.Errorf("A's revision in force with etcd down: %d, want %d", src.Revision, want.Revision)
	}
	toB.close()
	// With etcd still down, the last good policy still negotiates: A's
	// SAs taken down, the next ping starts IKE with B again.
	if _, err := a.ctl(context.Background(), "down", "hosts"); err != nil {
		t.Fatal(err)
	}
	if !nstest.WaitFor(10*time.Second, func() bool { _, ok := childWith(a.host, b.outer); return !ok }) {
		t.Fatalf("A's CHILD SA with B is still installed after ipsecctl down hosts")
	}
	mustPingSoon(t, a.ns, a.outer, b.outer)
	if now, ok := childWith(a.host, b.outer); !ok || now.SPIOut == sa.SPIOut {
		t.Errorf("A's CHILD SA with B after a new negotiation with etcd down: %+v, was SPI out %v", now, sa.SPIOut)
	}
	a.checkAlive(t)
	b.checkAlive(t)
}

// TestGuideNetworkEtcd: the etcd variant of docs/guide-network.md holds
// together: the hosts' file parses, its document is selected by the file's
// labels and merges into the groups the guide describes, and the guide's
// move of D's address to block gives a document that merges too. It needs
// no root: TestEtcdGroups runs the same shape between daemons.
func TestGuideNetworkEtcd(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "guide-network.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## The policy from etcd\n")
	if !ok {
		t.Fatal("docs/guide-network.md has no section \"The policy from etcd\"")
	}
	blocks := regexp.MustCompile("(?s)```yaml(?:-document)?\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) != 3 {
		t.Fatalf("%d YAML blocks in the guide's etcd section, want 3 (the hosts' file, the document, the move to block)", len(blocks))
	}
	dir := t.TempDir()
	ca, err := testca.New(dir, "guide CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Host("host", netip.MustParseAddr("10.77.0.1")); err != nil {
		t.Fatal(err)
	}
	// The etcd client certificate: any of the CA's will do for parsing.
	for from, to := range map[string]string{"host.pem": "etcd-client.pem", "host.key": "etcd-client.key", "ca.pem": "etcd-ca.pem"} {
		data, err := os.ReadFile(ca.Path(from))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, to), string(data))
	}
	local, err := config.Parse(filepath.Join(dir, "ipsecd.yaml"), []byte(blocks[0][1]))
	if err != nil {
		t.Fatalf("the hosts' file: %v", err)
	}
	if local.PolicySources.Etcd == nil || len(local.Connections) != 0 || len(local.Groups) != 0 {
		t.Fatalf("the hosts' file should name the cluster and hold no policy: %+v", local)
	}
	merge := func(doc string) *config.Config {
		t.Helper()
		f, err := config.ParseFragment("etcd:/goipsec/policy/10-hosts", dir, []byte(doc), local.PolicySources.Etcd.Labels)
		if err != nil || !f.Selected {
			t.Fatalf("the document: %v (selected %v)\n%s", err, f != nil && f.Selected, doc)
		}
		c, err := config.Merge(local, []*config.Fragment{f})
		if err != nil {
			t.Fatalf("merged with the document: %v\n%s", err, doc)
		}
		return c
	}
	groupOf := func(c *config.Config, p string) string {
		for _, g := range c.Groups {
			if slices.Contains(g.Prefixes, netip.MustParsePrefix(p)) {
				return g.Action.String()
			}
		}
		return ""
	}
	doc := blocks[1][1]
	c := merge(doc)
	for p, want := range map[string]string{"10.77.0.0/24": "private", "10.77.0.4/32": "private-or-clear", "10.77.0.251/32": "clear"} {
		if got := groupOf(c, p); got != want {
			t.Errorf("the document puts %s in group %q, the guide says %q", p, got, want)
		}
	}
	// The move: the private-or-clear group (its line and those indented
	// under it) replaced by the guide's block group, dedented to the
	// document's level.
	var moved []string
	skip := false
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case line == "  private-or-clear:":
			skip = true
			for _, l := range strings.Split(strings.TrimRight(blocks[2][1], " \n"), "\n") {
				moved = append(moved, strings.TrimPrefix(l, "  "))
			}
			continue
		case skip && strings.HasPrefix(line, "    "):
			continue
		}
		skip = false
		moved = append(moved, line)
	}
	if c := merge(strings.Join(moved, "\n")); groupOf(c, "10.77.0.4/32") != "block" {
		t.Errorf("after the guide's move, 10.77.0.4/32 is in group %q, not block", groupOf(c, "10.77.0.4/32"))
	}
}
