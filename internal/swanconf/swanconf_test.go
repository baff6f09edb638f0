package swanconf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/config"
)

// copyTestdata copies testdata into a temporary directory and adds what
// strongSwan's swanctl directory would hold next to features.conf: the
// host certificate, its private key (mode 0600, which git cannot keep)
// and a CA certificate.
func copyTestdata(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir("testdata", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, strings.TrimPrefix(p, "testdata"))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{"x509/gwCert.pem", 0o644}, {"x509ca/caCert.pem", 0o644}, {"private/gwKey.pem", 0o600}} {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not parsed by --check\n"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// convert converts a testdata file and checks that config accepts the
// result where it is meant to be written.
func convert(t *testing.T, dir, name string) *Result {
	t.Helper()
	res, err := ConvertFile(filepath.Join(dir, name), Options{})
	if err != nil {
		t.Fatalf("ConvertFile(%s): %v", name, err)
	}
	if _, err := config.Parse(filepath.Join(dir, "goipsec.yaml"), res.YAML); err != nil {
		t.Fatalf("config.Parse refuses the conversion of %s: %v\n%s", name, err, res.YAML)
	}
	return res
}

func notesText(res *Result) string {
	var b strings.Builder
	for _, n := range res.Notes {
		b.WriteString(n.String() + "\n")
	}
	return b.String()
}

func TestConvertPSKSiteFull(t *testing.T) {
	dir := copyTestdata(t)
	res := convert(t, dir, "psk-site.conf")
	if len(res.Notes) != 0 {
		t.Errorf("notes for a fully convertible file:\n%s", notesText(res))
	}
	want, err := os.ReadFile("testdata/psk-site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(res.YAML) != string(want) {
		t.Errorf("YAML:\n%s\nwant:\n%s", res.YAML, want)
	}
	c, err := config.Parse(filepath.Join(dir, "goipsec.yaml"), res.YAML)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(c.Secrets.IKE[0].Secret.Bytes()); got != `a "quoted" test secret` {
		t.Errorf("secret not carried over exactly (%d bytes)", len(got))
	}
}

// TestConvertFeaturesNotes checks the line-by-line report on a file using
// pools, EAP, updown, an unsupported proposal, dynamic selectors of a
// roadwarrior, includes and section references.
func TestConvertFeaturesNotes(t *testing.T) {
	dir := copyTestdata(t)
	res := convert(t, dir, "features.conf")
	want := `features.conf:3: connections.base: a connection without children has nothing for goipsec to protect; dropped
features.conf:13: connections.hosts.pools: address pools are not implemented in goipsec; dropped
features.conf:22: connections.hosts.children.host.updown: updown scripts are not implemented in goipsec; dropped
features.conf:42: connections.rw.children.net.remote_ts: "dynamic" stands for an address that is not one fixed IP (remote_addrs); goipsec needs explicit selectors; child dropped
features.conf:49: connections.rw.children.lan.esp_proposals: "3des-md5": goipsec: weak algorithm refused (RFC 8247): ESP proposal "3des-md5": 3DES (RFC 8247, Section 2.1: MAY, but 64-bit blocks; not implemented) is refused; dropped
features.conf:50: connections.rw.children.lan.start_action: "trap|start": goipsec takes one start action; trap used
features.conf:58: pools.rw_pool: address pools are not implemented in goipsec; dropped
features.conf:69: secrets.eap-user: EAP and XAuth secrets are not used by goipsec; dropped
eap.conf:9: connections.eap.remote.auth: EAP authentication is not implemented in goipsec; connection dropped
`
	if got := notesText(res); got != want {
		t.Errorf("notes:\n%s\nwant:\n%s", got, want)
	}
	if res.Connections != 2 || res.Policies != 1 || res.Secrets != 1 {
		t.Errorf("wrote %d connections, %d policies, %d secrets; want 2, 1, 1", res.Connections, res.Policies, res.Secrets)
	}
}

func TestConvertPoolsDropped(t *testing.T) {
	res := convertString(t, `connections { rw {
  local_addrs = 192.0.2.1
  remote_addrs = 192.0.2.9
  pools = vpn
  local { auth = psk
    id = a }
  remote { auth = psk
    id = b }
  children { c { local_ts = 10.0.0.0/8
    remote_ts = 10.9.0.0/16 } }
} }
pools { vpn { addrs = 10.9.0.0/16 } }
secrets { ike { id-1 = a
  id-2 = b
  secret = s3cret-value } }
`)
	got := notesText(res)
	for _, w := range []string{
		"swanctl.conf:4: connections.rw.pools: address pools are not implemented in goipsec; dropped",
		"swanctl.conf:12: pools.vpn: address pools are not implemented in goipsec; dropped",
	} {
		if !strings.Contains(got, w+"\n") {
			t.Errorf("notes lack %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "s3cret") {
		t.Error("a note shows the secret")
	}
}

// convertString converts a swanctl.conf given as text (written to a
// temporary swanctl.conf) and checks config accepts the result.
func convertString(t *testing.T, text string) *Result {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "swanctl.conf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return convert(t, dir, "swanctl.conf")
}

// TestConvertSecretsListBothIDs: a secret naming one identity, or none,
// is written with both identities of the connection using it; for a peer
// accepted as %any, with the peer the secret names (strongSwan would use
// ike-a for a peer calling itself one.example on rw too).
func TestConvertSecretsListBothIDs(t *testing.T) {
	res := convertString(t, `connections {
  a { local_addrs = 192.0.2.1
      remote_addrs = 192.0.2.2
      local { auth = psk
        id = one.example }
      remote { auth = psk
        id = two.example }
      children { c { local_ts = 10.1.0.0/16
        remote_ts = 10.2.0.0/16 } } }
  rw { local_addrs = 192.0.2.1
      local { auth = psk
        id = gw.example }
      remote { auth = psk
        id = %any }
      children { c { local_ts = 10.1.0.0/16
        remote_ts = 10.3.0.0/16 } } }
}
secrets {
  ike-a { id = one.example
    secret = first }
  ike-rw { id = carol.example
    secret = second }
}
`)
	want := `secrets:
  ike:
    - ids: ["one.example", "two.example"]
      secret: "first"
    - ids: ["gw.example", "one.example"]
      secret: "first"
    - ids: ["gw.example", "carol.example"]
      secret: "second"
`
	if !strings.HasSuffix(string(res.YAML), want) {
		t.Errorf("YAML:\n%s\nwant it to end with:\n%s", res.YAML, want)
	}
	if !strings.Contains(string(res.YAML), `id: "%any"`) {
		t.Errorf("the %%any remote id is not kept:\n%s", res.YAML)
	}
	if len(res.Notes) != 0 {
		t.Errorf("notes:\n%s", notesText(res))
	}
}

// TestConvertDynamicTS: "dynamic" (the default) becomes the side's single
// IKE address, with the protocol and port kept.
func TestConvertDynamicTS(t *testing.T) {
	res := convertString(t, `connections { h {
  local_addrs = 192.0.2.1
  remote_addrs = 2001:db8::2
  local { auth = psk }
  remote { auth = psk }
  children { c { mode = transport
     remote_ts = dynamic[tcp/80] } } } }
secrets { ike { secret = 0sc2VjcmV0 } }
`)
	for _, w := range []string{`local_ts: ["192.0.2.1/32"]`, `remote_ts: ["2001:db8::2/128[tcp/80]"]`, `ids: ["192.0.2.1", "2001:db8::2"]`} {
		if !strings.Contains(string(res.YAML), w) {
			t.Errorf("YAML lacks %s:\n%s", w, res.YAML)
		}
	}
}

// TestConvertRefusedProposalDropped: what goipsec's parser refuses is
// dropped item by item, and the child goes when nothing is left of it.
func TestConvertRefusedProposalDropped(t *testing.T) {
	res := convertString(t, `connections { a {
  remote_addrs = 192.0.2.2
  local_addrs = 192.0.2.1
  proposals = 3des-md5-modp1024, aes128-sha256-x25519
  local { auth = psk }
  remote { auth = psk }
  children {
    only-3des { local_ts = 10.1.0.0/16
      remote_ts = 10.2.0.0/16
      ah_proposals = md5 }
    ok { local_ts = 10.1.0.0/16
      remote_ts = 10.3.0.0/16 } } } }
secrets { ike { secret = x } }
`)
	got := notesText(res)
	for _, w := range []string{
		`swanctl.conf:4: connections.a.proposals: "3des-md5-modp1024": goipsec: weak algorithm refused (RFC 8247): IKE proposal "3des-md5-modp1024": 3DES (RFC 8247, Section 2.1: MAY, but 64-bit blocks; not implemented) is refused; dropped`,
		`swanctl.conf:10: connections.a.children.only-3des.ah_proposals: "md5": goipsec:`,
		`swanctl.conf:8: connections.a.children.only-3des: nothing left of ah_proposals; dropped`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("notes lack %q:\n%s", w, got)
		}
	}
	if strings.Contains(string(res.YAML), "3des") || !strings.Contains(string(res.YAML), "ok:") || !strings.Contains(string(res.YAML), "aes128-sha256-x25519") {
		t.Errorf("YAML:\n%s", res.YAML)
	}
}

// TestConvertRekeyTimeZeroReported: strongSwan's rekey_time = 0 (never)
// is not written, since goipsec reads 0 as its default; 30s stays.
func TestConvertRekeyTimeZeroReported(t *testing.T) {
	res := convertString(t, `connections { a {
  local_addrs = 192.0.2.1
  remote_addrs = 192.0.2.2
  rekey_time = 0
  local { auth = psk }
  remote { auth = psk }
  children { c { local_ts = 10.1.0.0/16
    remote_ts = 10.2.0.0/16
    rekey_time = 0s } } } }
secrets { ike { secret = x } }
`)
	want := `swanctl.conf:4: connections.a.rekey_time: 0 disables rekeying in strongSwan; goipsec always rekeys, by default every 4h; dropped
swanctl.conf:9: connections.a.children.c.rekey_time: 0 disables rekeying in strongSwan; goipsec always rekeys, by default every 1h; dropped
`
	if got := notesText(res); got != want {
		t.Errorf("notes:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(string(res.YAML), "rekey_time") {
		t.Errorf("YAML:\n%s", res.YAML)
	}
}

func TestConvertIKEv1Dropped(t *testing.T) {
	res := convertString(t, `connections { old { version = 1
  children { c { local_ts = 10.0.0.0/8 } } } }
`)
	if got := notesText(res); got != "swanctl.conf:1: connections.old.version: IKEv1 is not supported by goipsec; connection dropped\n" {
		t.Errorf("notes:\n%s", got)
	}
	if res.Connections != 0 {
		t.Errorf("%d connections written", res.Connections)
	}
}

func TestParseSettingsSyntax(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "inc.conf"), []byte("x = from include\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `# comment
a {
   k = v1, v2 # trailing comment
   q = "two\nlines with # and } \"quoted\""
   empty =
   include inc.conf
   b { k = inner }
}
a { k = later }  # the later value wins, sections merge
c : a.b {
   own = 1
}
`
	root, err := Parse(filepath.Join(dir, "swanctl.conf"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a := root.Sub("a")
	for key, want := range map[string]string{"k": "later", "q": "two\nlines with # and } \"quoted\"", "empty": "", "x": "from include"} {
		if s := a.Get(key); s == nil || s.Value != want {
			t.Errorf("a.%s = %+v, want %q", key, s, want)
		}
	}
	if s := a.Sub("b").Get("k"); s == nil || s.Value != "inner" || s.Pos.Line != 7 {
		t.Errorf("a.b.k = %+v", s)
	}
	c := root.Sub("c")
	if c.Get("k") == nil || c.Get("own") == nil {
		t.Errorf("c does not inherit from a.b: %+v", c.Settings)
	}
	if got := List(" a, b ,,c "); strings.Join(got, "|") != "a|b|c" {
		t.Errorf("List = %q", got)
	}
	for _, bad := range []string{"a {", "}", "a { k }", `a = "open`, "a : missing { }"} {
		if _, err := Parse("swanctl.conf", []byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "swanconf: ") {
			t.Errorf("Parse(%q) = %v, want a swanconf error", bad, err)
		}
	}
}

// TestStrongSwanScenarios converts every swanctl.conf below the directory
// in SWANCONF_CORPUS (for example strongSwan's testing/tests, which is GPL
// and so not in this repository) and checks that each converts without
// error into YAML that config accepts. It reports the counts.
func TestStrongSwanScenarios(t *testing.T) {
	root := os.Getenv("SWANCONF_CORPUS")
	if root == "" {
		t.Skip("SWANCONF_CORPUS is not set")
	}
	var full, partial, none, failed int
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "swanctl.conf" {
			return err
		}
		res, err := ConvertFile(p, Options{})
		switch {
		case err != nil:
			failed++
			t.Errorf("%s: %v", p, err)
		case res.Connections+res.Policies == 0:
			none++
		case len(res.Notes) > 0:
			partial++
		default:
			full++
		}
		if err == nil {
			if _, err := config.Parse(filepath.Join(filepath.Dir(p), "goipsec.yaml"), res.YAML); err != nil {
				t.Errorf("%s: config refuses the conversion: %v", p, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full %d, partial %d, nothing converted %d, failed %d", full, partial, none, failed)
}

// FuzzParse: the settings parser never panics, and what it parses
// converts without panicking into YAML that config accepts.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/psk-site.conf", "testdata/features.conf", "testdata/broken.conf"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("a : b { }\nb : a { }\n"))
	f.Add([]byte(`a { k = "x\`))
	dir := f.TempDir()
	file := filepath.Join(dir, "swanctl.conf")
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte("include")) {
			return // includes read other files; covered by the unit tests
		}
		root, err := Parse(file, data)
		if err != nil {
			return
		}
		res, err := Convert(root, Options{})
		if err != nil {
			return // the converter gave up, saying so
		}
		if _, err := config.Parse(filepath.Join(dir, "goipsec.yaml"), res.YAML); err != nil {
			t.Fatalf("config refuses the conversion: %v\n%s", err, res.YAML)
		}
	})
}
