package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The tests below hold the reference table (reference_test.go) to the
// decoder without a second list of keys: the decoder names the keys it
// knows in its "unknown key" error, and the kind of value it reads in its
// type errors, so each mapping and each key of the table is probed with a
// value the decoder refuses, and the reasons are compared with the table.

// probe returns a document that has v at the table path, and the key the
// decoder's errors name for that path: "<name>" becomes "x", "[]" the
// first item.
func probe(path string, v any) (doc []byte, key string) {
	if path != "" {
		segs := strings.Split(path, ".")
		for i := len(segs) - 1; i >= 0; i-- {
			name, list := strings.CutSuffix(segs[i], "[]")
			if list {
				v = []any{v}
			}
			if name == "<name>" {
				name = "x"
			}
			v = map[string]any{name: v}
		}
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b, strings.ReplaceAll(strings.ReplaceAll(path, "<name>", "x"), "[]", "[0]")
}

// parseErrors returns the *Error values of a Parse error.
func parseErrors(err error) []*Error {
	var out []*Error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, parseErrors(e)...)
		}
		return out
	}
	var e *Error
	if errors.As(err, &e) {
		out = append(out, e)
	}
	return out
}

// reasonAt parses doc and returns the reason of the error at key that
// starts with prefix, or else the first reason at key, or "".
func reasonAt(t *testing.T, doc []byte, key, prefix string) string {
	t.Helper()
	_, err := Parse("probe.yaml", doc)
	var at []string
	for _, e := range parseErrors(err) {
		if e.Key == key {
			if strings.HasPrefix(e.Reason, prefix) {
				return e.Reason
			}
			at = append(at, e.Reason)
		}
	}
	if len(at) == 0 {
		t.Errorf("no error at %s for\n%s\nerrors: %v", key, doc, err)
		return ""
	}
	return at[0]
}

// TestConfigReferenceKeysMatchParser: every key the decoder accepts is in
// the table, and every key in the table is one the decoder accepts, at
// every level of the file.
func TestConfigReferenceKeysMatchParser(t *testing.T) {
	for _, obj := range objectPaths() {
		doc, key := probe(obj, map[string]any{"zz_unknown": 1})
		if key != "" {
			key += "."
		}
		reason := reasonAt(t, doc, key+"zz_unknown", "unknown key")
		list, ok := strings.CutPrefix(reason, "unknown key (known keys: ")
		if !ok {
			t.Errorf("%q: reason %q", obj, reason)
			continue
		}
		known := strings.Split(strings.TrimSuffix(list, ")"), ", ")
		var documented []string
		for _, r := range children(obj) {
			documented = append(documented, r.name())
		}
		for _, k := range known {
			if !slices.Contains(documented, k) {
				t.Errorf("the parser accepts %s but the reference does not document it", strings.TrimPrefix(obj+"."+k, "."))
			}
		}
		for _, k := range documented {
			if !slices.Contains(known, k) {
				t.Errorf("the reference documents %s but the parser does not accept it", strings.TrimPrefix(obj+"."+k, "."))
			}
		}
	}
}

// TestConfigReferenceKindsMatchParser: the decoder reads each key as the
// kind the table says (a single value, a list or a mapping), with the enum
// values and the integer range the table says.
func TestConfigReferenceKindsMatchParser(t *testing.T) {
	for _, r := range reference {
		var v any = map[string]any{"zz": 1}
		want := "must be a single value, not a mapping"
		switch r.kind {
		case kList, kTS, kItems:
			want = "must be a list, not a mapping"
		case kMapping:
			v, want = "zz", "must be a mapping (key: value), not a single value"
		case kNames:
			v, want = "zz", "must be a mapping of names to settings, not a single value"
		}
		doc, key := probe(r.path, v)
		if got := reasonAt(t, doc, key, want); got != want {
			t.Errorf("%s (%s): the parser says %q, want %q", r.path, r.kind, got, want)
		}
		switch r.kind {
		case kEnum:
			doc, key := probe(r.path, "zz_bad")
			reason := reasonAt(t, doc, key, "must be ")
			list, ok := strings.CutSuffix(strings.TrimPrefix(reason, "must be "), `, not "zz_bad"`)
			if !ok {
				t.Errorf("%s: reason %q", r.path, reason)
				continue
			}
			if got := strings.Split(strings.Replace(list, " or ", ", ", 1), ", "); !slices.Equal(got, r.enum) {
				t.Errorf("%s: the parser takes %q, the reference says %q", r.path, got, r.enum)
			}
		case kInt:
			doc, key := probe(r.path, r.hi+1)
			want := "must be between " + strconv.FormatInt(r.lo, 10) + " and " + strconv.FormatInt(r.hi, 10) + ", not "
			if got := reasonAt(t, doc, key, want); !strings.HasPrefix(got, want) {
				t.Errorf("%s: the parser says %q, want the range %d to %d", r.path, got, r.lo, r.hi)
			}
		}
	}
}

// exampleDir writes the files the examples read into a new directory.
func exampleDir(t *testing.T) string {
	dir := t.TempDir()
	for _, e := range refExamples {
		for _, f := range e.files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("s3cret example\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// walkExample calls fn for every key of the example's YAML tree n (the
// object at table path obj) with the table path and the value node.
func walkExample(t *testing.T, n *yaml.Node, obj string, fn func(path string, v *yaml.Node)) {
	idx := refIndex()
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		path, v := n.Content[i].Value, n.Content[i+1]
		if obj != "" {
			path = obj + "." + path
		}
		fn(path, v)
		r, ok := idx[path]
		if !ok {
			t.Errorf("example key %s is not in the reference", path)
			continue
		}
		switch r.kind {
		case kMapping:
			walkExample(t, v, path, fn)
		case kNames:
			for j := 1; j < len(v.Content); j += 2 {
				walkExample(t, v.Content[j], path+".<name>", fn)
			}
		case kItems:
			for _, item := range v.Content {
				walkExample(t, item, path+"[]", fn)
			}
		}
	}
}

func exampleRoot(t *testing.T, text string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("an example is not strict YAML: %v", err)
	}
	return &doc
}

// TestConfigReferenceExamples: each complete example parses; between them
// they use every key the parser does not always refuse; and each key's
// example value, put in place of the value in the first complete example
// that has the key, parses too.
func TestConfigReferenceExamples(t *testing.T) {
	dir := exampleDir(t)
	name := filepath.Join(dir, "goipsec.yaml")
	used := map[string]int{}
	for i, e := range refExamples {
		if _, err := Parse(name, []byte(e.text)); err != nil {
			t.Errorf("example %q: %v", e.title, err)
		}
		doc := exampleRoot(t, e.text)
		walkExample(t, doc.Content[0], "", func(path string, _ *yaml.Node) {
			if _, ok := used[path]; !ok {
				used[path] = i
			}
		})
	}
	for _, r := range reference {
		i, ok := used[r.path]
		if r.refused || !ok {
			if !r.refused {
				t.Errorf("%s: no complete example uses it", r.path)
			}
			continue
		}
		if r.example == "" {
			continue
		}
		doc := exampleRoot(t, refExamples[i].text)
		var val yaml.Node
		if err := yaml.Unmarshal([]byte(r.example), &val); err != nil {
			t.Errorf("%s: example %q is not YAML: %v", r.path, r.example, err)
			continue
		}
		done := false
		walkExample(t, doc.Content[0], "", func(path string, v *yaml.Node) {
			if path == r.path && !done {
				*v = *val.Content[0]
				done = true
			}
		})
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(name, b); err != nil {
			t.Errorf("%s: example %q in %q: %v", r.path, r.example, refExamples[i].title, err)
		}
	}
}

// TestConfigReferenceDefaults parses a file that leaves out every optional
// key and compares what Parse filled in with the defaults of the table.
// The daemon.ike defaults are the IKE engine's (ike.Config), which config
// passes on as zero; the others not read here are descriptions ("%any",
// "the IP address").
func TestConfigReferenceDefaults(t *testing.T) {
	c, err := Parse("defaults.yaml", []byte(`connections:
  c:
    local: {certs: [a.pem]}
    remote: {cacerts: [ca.pem]}
    children:
      x: {local_ts: [10.1.0.0/16], remote_ts: [10.2.0.0/16]}
manual_sas:
  - {name: m, local_addr: 192.0.2.1, remote_addr: 192.0.2.2, local_ts: [10.1.0.0/16], remote_ts: [10.2.0.0/16],
     spi_out: 0x1001, spi_in: 0x2001, algorithm: aes256gcm16, key_out: `+keyOutHex+`, key_in: `+keyInHex+`}
policy_sources:
  etcd: {endpoints: [http://127.0.0.1:2379]}
`))
	if err != nil {
		t.Fatal(err)
	}
	conn, child, m := c.Connections[0], c.Connections[0].Children[0], c.ManualSAs[0]
	etcd := c.PolicySources.Etcd
	got := map[string]string{
		"daemon.socket":                                    c.Daemon.Socket,
		"daemon.state_dir":                                 c.Daemon.StateDir,
		"daemon.tun.name":                                  c.Daemon.TUN.Name,
		"daemon.tun.mtu":                                   strconv.Itoa(c.Daemon.TUN.MTU),
		"daemon.log.level":                                 strings.ToLower(c.Daemon.Log.Level.String()),
		"daemon.log.format":                                c.Daemon.Log.Format,
		"daemon.on_stop":                                   c.Daemon.OnStop.String(),
		"connections.<name>.version":                       strconv.Itoa(conn.Version),
		"connections.<name>.proposals":                     conn.Proposals[0].Text,
		"connections.<name>.encap":                         strconv.FormatBool(conn.Encap),
		"connections.<name>.rekey_time":                    durText(conn.RekeyTime),
		"connections.<name>.local.auth":                    conn.Local.Method.String(),
		"connections.<name>.remote.auth":                   conn.Remote.Method.String(),
		"connections.<name>.dpd_action":                    conn.DPDAction.String(),
		"connections.<name>.close_action":                  conn.CloseAction.String(),
		"connections.<name>.unique":                        conn.Unique.String(),
		"connections.<name>.children.<name>.mode":          child.Mode.String(),
		"connections.<name>.children.<name>.esp_proposals": child.Proposals[0].Text,
		"connections.<name>.children.<name>.start_action":  child.StartAction.String(),
		"connections.<name>.children.<name>.rekey_time":    durText(child.RekeyTime),
		"connections.<name>.children.<name>.replay_window": strconv.Itoa(child.ReplayWindow),
		"manual_sas[].protocol":                            m.Protocol.String(),
		"manual_sas[].mode":                                m.Mode.String(),
		"manual_sas[].esn":                                 strconv.FormatBool(m.ESN),
		"manual_sas[].replay_window":                       strconv.Itoa(m.ReplayWindow),
		"policy_sources.etcd.prefix":                       etcd.Prefix,
		"policy_sources.etcd.dial_timeout":                 durText(etcd.DialTimeout),
		"policy_sources.etcd.request_timeout":              durText(etcd.RequestTimeout),
		"policy_sources.etcd.resync":                       durText(etcd.Resync),
		"policy_sources.etcd.cache":                        strings.Replace(etcd.Cache, c.Daemon.StateDir, "daemon.state_dir", 1),
	}
	poc, _ := Parse("groups.yaml", []byte(`connections:
  c:
    remote_addrs: [10.77.0.0/24]
    local: {certs: [a.pem]}
    remote: {cacerts: [ca.pem]}
    children:
      x: {mode: transport}
groups:
  private-or-clear: {prefixes: [10.77.0.0/24], connection: c}
`))
	if poc != nil {
		g := poc.Groups[0]
		got["groups.private-or-clear.fallback_timeout"] = durText(g.FallbackTimeout)
		got["groups.private-or-clear.fallback_time"] = strings.TrimSuffix(g.FallbackTime.String(), "0s")
		if ch := poc.Connections[0].Children[0]; ch.LocalTS == nil && ch.RemoteTS == nil {
			got["connections.<name>.children.<name>.local_ts"] = "dynamic (transport mode)"
			got["connections.<name>.children.<name>.remote_ts"] = "dynamic (transport mode)"
		}
	} else {
		t.Error("the private-or-clear defaults example does not parse")
	}
	described := []string{
		"connections.<name>.local_addrs", "connections.<name>.remote_addrs", "connections.<name>.dpd_delay",
		"connections.<name>.local.id", "connections.<name>.remote.id", "manual_sas[].encap",
		"manual_sas[].local_ts", "manual_sas[].remote_ts", "policies[].local_ts", "policies[].remote_ts",
	}
	// The lifetimes that follow from others are checked by
	// TestLifetimeDefaults.
	described = append(described, "connections.<name>.over_time", "connections.<name>.rand_time",
		"connections.<name>.reauth_time", "connections.<name>.dpd_timeout",
		"connections.<name>.children.<name>.life_time", "connections.<name>.children.<name>.rand_time",
		"connections.<name>.children.<name>.rekey_bytes", "connections.<name>.children.<name>.life_bytes",
		"connections.<name>.children.<name>.rekey_packets", "connections.<name>.children.<name>.life_packets")
	for _, sub := range LogSubsystems {
		// A subsystem without a level of its own logs at daemon.log.level.
		described = append(described, "daemon.log.subsystems."+sub)
	}
	for _, r := range reference {
		if r.def == "" {
			continue
		}
		v, ok := got[r.path]
		switch {
		case ok && v != r.def:
			t.Errorf("%s: Parse fills in %q, the reference says %q", r.path, v, r.def)
		case !ok && !strings.HasPrefix(r.path, "daemon.ike.") && !slices.Contains(described, r.path):
			t.Errorf("%s: default %q is checked nowhere: add it here", r.path, r.def)
		}
	}
	if !m.UDPEncap || conn.DPDDelay != 0 || len(conn.LocalAddrs)+len(conn.RemoteAddrs) != 0 {
		t.Errorf("encap %v, dpd_delay %v, addrs %v %v: not the defaults the reference describes", m.UDPEncap, conn.DPDDelay, conn.LocalAddrs, conn.RemoteAddrs)
	}
}
