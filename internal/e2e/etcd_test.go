package e2e

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ctlapi"
	"github.com/goipsec/goipsec/internal/etcdtest"
	"github.com/goipsec/goipsec/internal/nstest"
)

// TestEtcdPolicy: two ipsecd hosts take policy from an etcd cluster of
// three members (Debian's etcd-server, in A's namespace on 192.0.2.1) and
// enforce it. A document for role=a discards 10.2.0.53 in front of the
// tunnel's PROTECT rule, one for role=b gives B a rule of its own; moving
// the discard to 10.2.0.54 in etcd takes effect on A (the time is logged);
// a malformed document is refused and shown by ipsecctl status while the
// policy stays; with every member killed the policy stays in force, and a
// restarted A starts from its cache with the same policy.
func TestEtcdPolicy(t *testing.T) {
	requireBins(t)
	const prefix = "/goipsec/policy/"
	source := func(role string) string {
		return "policy_sources:\n  etcd:\n    endpoints: [http://192.0.2.1:23790, http://192.0.2.1:23791, http://192.0.2.1:23792]\n" +
			"    labels: [role=" + role + "]\n    resync: 2s\n    dial_timeout: 2s\n    request_timeout: 2s\n"
	}
	p := newPair(t, spec{name: "etcd", protocol: "esp", mode: "tunnel", encap: "udp", alg: "aes256gcm16"}, source("a"))
	bconf, err := os.ReadFile(p.b.conf)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.b.conf, string(bconf)+source("b"))
	cl := etcdtest.Start(t, 3, "192.0.2.1", p.a.ns.Name)
	block := func(addr string) string {
		return "targets: [{role: a}]\npolicies:\n  - {name: etcd-block, remote_ts: [\"" + addr + "/32\"], action: discard}\n"
	}
	cl.Put(prefix+"10-block", block("10.2.0.53"))
	cl.Put(prefix+"20-b", "targets: [{role: b}]\npolicies:\n  - {name: etcd-b, remote_ts: [\"10.1.0.99/32\"], action: discard}\n")
	for _, a := range []string{"10.2.0.53", "10.2.0.54"} {
		p.b.ns.AddLoopbackAddr(a)
	}
	p.start(t)
	dot53, dot54 := netip.MustParseAddr("10.2.0.53"), netip.MustParseAddr("10.2.0.54")

	rule := func(h *host, name string) (ctlapi.Policy, bool) {
		var pol ctlapi.Policies
		h.ctlJSON(t, &pol, "policies")
		i := slices.IndexFunc(pol.Policies, func(p ctlapi.Policy) bool { return p.Name == name })
		if i < 0 {
			return ctlapi.Policy{}, false
		}
		return pol.Policies[i], true
	}
	if r, ok := rule(p.a, "etcd-block"); !ok || r.Action != ctlapi.ActionDiscard || !strings.Contains(strings.Join(r.RemoteTS, ","), "10.2.0.53") {
		t.Fatalf("A's policies lack etcd-block for 10.2.0.53: %+v", r)
	}
	if _, ok := rule(p.b, "etcd-b"); !ok {
		t.Errorf("B's policies lack its own document's etcd-b")
	}
	if _, ok := rule(p.b, "etcd-block"); ok {
		t.Errorf("B took A's document")
	}
	enforced := func(blocked, open netip.Addr) {
		t.Helper()
		mustPing(t, p.a.ns, p.a.inner, open, 2)
		// A reply would come within milliseconds: wait 1 s, not ping's 5.
		out, _ := p.a.ns.Run("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "-I", p.a.inner.String(), blocked.String())
		if m := receivedRE.FindStringSubmatch(out); m == nil || m[2] != "0" {
			t.Errorf("ping %s: replies through the discard rule from etcd\n%s", blocked, out)
		}
	}
	enforced(dot53, dot54)
	if r, _ := rule(p.a, "etcd-block"); r.Hits < 2 {
		t.Errorf("etcd-block has %d hits, want at least 2", r.Hits)
	}

	// A change in etcd takes effect on A.
	start := time.Now()
	cl.Put(prefix+"10-block", block("10.2.0.54"))
	var took time.Duration
	if !nstest.WaitFor(10*time.Second, func() bool {
		r, ok := rule(p.a, "etcd-block")
		took = time.Since(start)
		return ok && strings.Contains(strings.Join(r.RemoteTS, ","), "10.2.0.54")
	}) {
		t.Fatalf("the moved discard rule did not reach A within 10 s")
	}
	t.Logf("etcd put to A's SPD (ipsecctl policies polled): %v", took)
	enforced(dot54, dot53)

	// A malformed document is refused and reported; the policy stays.
	cl.Put(prefix+"30-bad", "targets: [{role: a}]\npolicies:\n  - {name: bad, remote_ts: [10.9.0.0/33], action: discard}\n")
	var src ctlapi.PolicySource
	if !nstest.WaitFor(10*time.Second, func() bool {
		st := p.a.status(t)
		if len(st.PolicySources) == 1 {
			src = st.PolicySources[0]
		}
		return src.Refused > 0
	}) || !strings.Contains(src.LastError, prefix+"30-bad:3: policies[0].remote_ts[0]") {
		t.Errorf("A's status after a malformed document: %+v", src)
	}
	out, err := p.a.ctl(context.Background(), "status")
	if err != nil || !strings.Contains(string(out), "30-bad") || !strings.Contains(string(out), "1 refused") {
		t.Errorf("ipsecctl status does not show the refusal: %v\n%s", err, out)
	}
	enforced(dot54, dot53)

	// Every member killed: the policy stays, and A restarted now starts
	// from its cache.
	for _, m := range cl.Members {
		m.Kill()
	}
	if !nstest.WaitFor(15*time.Second, func() bool {
		st := p.a.status(t)
		return len(st.PolicySources) == 1 && !st.PolicySources[0].Connected
	}) {
		t.Errorf("A's status still says connected with every etcd member down")
	}
	enforced(dot54, dot53)
	p.a.proc.Stop()
	p.a.proc = p.a.ns.Start(ipsecd(), "-c", p.a.conf)
	if !nstest.WaitFor(30*time.Second, func() bool { _, err := p.a.ctl(context.Background(), "status"); return err == nil }) {
		t.Fatalf("A did not come back without etcd\n%s", p.a.proc.Output)
	}
	st := p.a.status(t)
	if len(st.PolicySources) != 1 || !st.PolicySources[0].FromCache {
		t.Errorf("A restarted without etcd: %+v", st.PolicySources)
	}
	enforced(dot54, dot53)
	p.a.checkAlive(t)
	p.b.checkAlive(t)
}
