package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFragmentTargets: a document is for the hosts one of whose targets
// it matches, label by label; without targets it is for every host.
func TestFragmentTargets(t *testing.T) {
	doc := func(targets string) []byte {
		return []byte(targets + "policies:\n  - {name: p, remote_ts: [10.9.0.0/16], action: discard}\n")
	}
	host := map[string]string{"role": "web", "site": "paris"}
	for _, tc := range []struct {
		targets string
		want    bool
	}{
		{"", true},
		{"targets: [{role: web}]\n", true},
		{"targets: [{role: web, site: paris}]\n", true},
		{"targets: [{role: web, site: rome}]\n", false},
		{"targets: [{role: db}, {site: paris}]\n", true},
		{"targets: [{env: prod}]\n", false},
	} {
		f, err := ParseFragment("etcd:/p/x", t.TempDir(), doc(tc.targets), host)
		if err != nil {
			t.Errorf("%q: %v", tc.targets, err)
			continue
		}
		if f.Selected != tc.want || tc.want && len(f.Policies) != 1 || !tc.want && len(f.Policies) != 0 {
			t.Errorf("%q: selected %v with %d policies, want %v", tc.targets, f.Selected, len(f.Policies), tc.want)
		}
	}
}

// TestFragmentRefusesSecretsAndHostSettings: inline secrets, manual SAs
// (whose keys are inline) and host settings never come from a document,
// and each refusal names the document, the line and the key.
func TestFragmentRefusesSecretsAndHostSettings(t *testing.T) {
	for _, tc := range []struct{ doc, key, reason string }{
		{"secrets:\n  ike:\n    - {ids: [a, b], secret: hunter2hunter2}\n", "secrets.ike[0].secret", "secrets never travel in policy documents"},
		{"manual_sas:\n  - {name: m}\n", "manual_sas", "secrets never travel in policy documents"},
		{"daemon: {socket: /tmp/x.sock}\n", "daemon", "host settings stay in the local configuration file"},
		{"policy_sources: {}\n", "policy_sources", "host settings"},
		{"policies:\n  - {name: p, action: allow}\n", "policies[0].action", ""},
		{"bogus: 1\n", "bogus", "unknown key"},
		{"targets: [{role: web}]\npolicies: [\n", "(syntax)", "YAML"},
	} {
		_, err := ParseFragment("etcd:/goipsec/policy/10-x", t.TempDir(), []byte(tc.doc), map[string]string{"role": "web"})
		if err == nil {
			t.Errorf("%q: accepted", tc.doc)
			continue
		}
		es := parseErrors(err)
		if len(es) == 0 || es[0].File != "etcd:/goipsec/policy/10-x" || es[0].Key != tc.key || es[0].Line == 0 || !strings.Contains(es[0].Reason, tc.reason) {
			t.Errorf("%q: %v; want key %s, a line, reason with %q", tc.doc, err, tc.key, tc.reason)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
}

// TestFragmentSecretFile: a document may name a secret file on the host,
// which is checked like the local file's.
func TestFragmentSecretFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "psk"), []byte("s3cret s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `connections:
  peer:
    remote_addrs: [192.0.2.2]
    local: {auth: psk, id: a}
    remote: {auth: psk, id: b}
    children:
      c: {local_ts: [10.1.0.0/16], remote_ts: [10.2.0.0/16]}
secrets:
  ike:
    - {ids: [a, b], secret_file: psk}
`
	f, err := ParseFragment("etcd:/p/psk", dir, []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	local, err := Parse(filepath.Join(dir, "goipsec.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Merge(local, []*Fragment{f})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Connections) != 1 || len(c.Secrets.IKE) != 1 || string(c.Secrets.IKE[0].Secret.Bytes()) != "s3cret s3cret" {
		t.Errorf("merged %d connections, %d secrets", len(c.Connections), len(c.Secrets.IKE))
	}
	// Without the secret the PSK connection is refused at the merge.
	f.Secrets = Secrets{}
	if _, err := Merge(local, []*Fragment{f}); err == nil || !strings.Contains(err.Error(), "etcd:/p/psk:4: connections.peer.local.auth: psk needs a secret") {
		t.Errorf("merge without the secret: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, "psk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFragment("etcd:/p/psk", dir, []byte(doc), nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("secret_file of mode 0644: %v", err)
	}
}

// TestMergeOrderAndClashes: the local file's policies come first, then
// the documents' in the order given; a name already in use is refused
// with the document's key and line.
func TestMergeOrderAndClashes(t *testing.T) {
	local, err := Parse("/etc/goipsec/goipsec.yaml", []byte("policies:\n  - {name: local, remote_ts: [10.1.0.0/16], action: bypass}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := mustFragment(t, "etcd:/p/10-a", "policies:\n  - {name: a, remote_ts: [10.2.0.0/16], action: discard}\n")
	b := mustFragment(t, "etcd:/p/20-b", "policies:\n  - {name: b, remote_ts: [10.3.0.0/16], action: discard}\n")
	c, err := Merge(local, []*Fragment{a, b})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range c.Policies {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "local,a,b" || len(local.Policies) != 1 {
		t.Errorf("merged policies %v, local now has %d", names, len(local.Policies))
	}
	clash := mustFragment(t, "etcd:/p/30-c", "\npolicies:\n  - {name: x, remote_ts: [10.4.0.0/16], action: discard}\n  - {name: local, remote_ts: [10.5.0.0/16], action: discard}\n")
	_, err = Merge(local, []*Fragment{a, clash})
	if err == nil || err.Error() != `etcd:/p/30-c:4: policies[1].name: name "local" is already used in /etc/goipsec/goipsec.yaml` {
		t.Errorf("clash: %v", err)
	}
}

// TestMergeGroups: a document's groups join the file's: prefixes of a group
// of the same name are added (the most specific prefix still decides), a
// new group appears, and a prefix already in another group, or another
// connection for a group, is refused.
func TestMergeGroups(t *testing.T) {
	local, err := Parse("/etc/goipsec/goipsec.yaml", []byte("groups:\n  clear: {prefixes: [10.77.0.9/32]}\n  block: {prefixes: [10.77.0.254/32]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	add := mustFragment(t, "etcd:/p/10-block", "groups:\n  block: {prefixes: [10.77.0.4/32]}\n")
	c, err := Merge(local, []*Fragment{add})
	if err != nil {
		t.Fatal(err)
	}
	g, ok := c.Group(GroupBlock)
	if !ok || len(g.Prefixes) != 2 || g.Prefixes[1].String() != "10.77.0.4/32" {
		t.Errorf("merged block group %+v", g)
	}
	if lg, _ := local.Group(GroupBlock); len(lg.Prefixes) != 1 {
		t.Errorf("Merge changed the local file's group: %+v", lg)
	}
	// A prefix in two groups is refused with the name and line of the
	// document that brought the second, whether the first is the local
	// file's or an earlier document's.
	dup := mustFragment(t, "etcd:/p/20-dup", "groups:\n  block: {prefixes: [10.77.0.9/32]}\n")
	if _, err := Merge(local, []*Fragment{dup}); err == nil || !strings.Contains(err.Error(), "etcd:/p/20-dup:2: groups.block.prefixes: prefix 10.77.0.9/32 is already in group clear (/etc/goipsec/goipsec.yaml)") {
		t.Errorf("a prefix in two groups: %v", err)
	}
	// A document's own group whose connection no document defines: the
	// error names that document.
	noConn := mustFragment(t, "etcd:/p/40-noconn", "# a typo\ngroups:\n  private: {prefixes: [10.77.1.0/24], connection: hostz}\n")
	if _, err := Merge(local, []*Fragment{noConn}); err == nil || !strings.Contains(err.Error(), `etcd:/p/40-noconn:3: groups.private.connection: no connection "hostz"`) {
		t.Errorf("a group without its connection: %v", err)
	}
	clear := mustFragment(t, "etcd:/p/30-clear", "# D is a printer\ngroups:\n  clear: {prefixes: [10.77.0.4/32]}\n")
	if _, err := Merge(local, []*Fragment{add, clear}); err == nil || !strings.Contains(err.Error(), "etcd:/p/30-clear:3: groups.clear.prefixes: prefix 10.77.0.4/32 is already in group block (etcd:/p/10-block)") {
		t.Errorf("a prefix in two documents' groups: %v", err)
	}
}

// mustFragment parses the policy document doc, named name, for a host
// without labels.
func mustFragment(t *testing.T, name, doc string) *Fragment {
	t.Helper()
	f, err := ParseFragment(name, "/etc/goipsec", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
