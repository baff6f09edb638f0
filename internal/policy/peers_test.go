package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/traffic"
)

// conns returns a configuration with the named connections (each with one
// child "net", one remote network each) and manual SAs, in the given order.
func conns(t *testing.T, manual []string, names ...string) *config.Config {
	t.Helper()
	var b strings.Builder
	if len(manual) > 0 {
		b.WriteString("manual_sas:\n")
		for i, m := range manual {
			b.WriteString("  - {name: " + m + ", local_addr: 192.0.2.1, remote_addr: 192.0.2.9, mode: transport, algorithm: aes128gcm16, " +
				"spi_out: 0x" + string(rune('1'+i)) + "001, spi_in: 0x" + string(rune('1'+i)) + "002, " +
				"key_out: 0x0102030405060708090a0b0c0d0e0f1011121314, key_in: 0x1102030405060708090a0b0c0d0e0f1011121314}\n")
		}
	}
	b.WriteString("connections:\n")
	for i, n := range names {
		net := "10." + string(rune('1'+i)) + ".0.0/16"
		b.WriteString("  " + n + ":\n    remote_addrs: [192.0.2." + string(rune('1'+i)) + "0]\n" +
			"    local: {auth: psk, id: gw}\n    remote: {auth: psk, id: " + n + "}\n" +
			"    children: {net: {local_ts: [10.0.0.0/16], remote_ts: [" + net + "]}, other: {local_ts: [10.0.0.0/16], remote_ts: [" + net + "]}}\n")
	}
	b.WriteString("secrets:\n  ike:\n")
	for _, n := range names {
		b.WriteString("    - {ids: [gw, " + n + "], secret: s3cr3t-s3cr3t}\n")
	}
	c, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func refsOf(s *Snapshot) map[string]uint32 {
	out := map[string]uint32{}
	for _, c := range s.Children {
		out[c.Conn+"/"+c.Child] = c.Ref
	}
	for _, m := range s.Manual {
		out["manual "+m.Name] = m.Ref
	}
	return out
}

// TestStableRefsInsertRemoveReorder checks item 1 of issue 7: a Ref belongs
// to a rule's name, kept across reloads that insert rules before it,
// remove others or reorder them, and never given to another name.
func TestStableRefsInsertRemoveReorder(t *testing.T) {
	s1, err := Compile(conns(t, []string{"m1", "m2"}, "alice", "bob"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r1 := refsOf(s1)
	// Insert a connection and a manual SA before the others, reorder.
	s2, err := Compile(conns(t, []string{"m0", "m2", "m1"}, "carol", "bob", "alice"), nil, s1)
	if err != nil {
		t.Fatal(err)
	}
	r2 := refsOf(s2)
	for _, k := range []string{"alice/net", "alice/other", "bob/net", "bob/other", "manual m1", "manual m2"} {
		if r1[k] == 0 || r1[k] != r2[k] {
			t.Errorf("%s: Ref %d before the reload, %d after", k, r1[k], r2[k])
		}
	}
	seen := map[uint32]string{}
	for k, r := range r1 {
		seen[r] = k
	}
	for _, k := range []string{"carol/net", "carol/other", "manual m0"} {
		if name, ok := seen[r2[k]]; ok {
			t.Errorf("%s got Ref %d, which was %s's", k, r2[k], name)
		}
		seen[r2[k]] = k
	}
	// The SPD rules carry the same Refs.
	for _, rule := range s2.Rules {
		if rule.Ref != 0 && rule.Ref != r2[rule.Name] && rule.Ref != r2["manual "+rule.Name] {
			t.Errorf("rule %s has Ref %d", rule.Name, rule.Ref)
		}
	}
	// Remove bob, then bring him back: a new Ref, never a reused one.
	s3, err := Compile(conns(t, nil, "alice"), nil, s2)
	if err != nil {
		t.Fatal(err)
	}
	if r3 := refsOf(s3); r3["alice/net"] != r1["alice/net"] {
		t.Errorf("alice/net changed Ref after bob's removal: %d, was %d", r3["alice/net"], r1["alice/net"])
	}
	s4, err := Compile(conns(t, nil, "dave", "alice"), nil, s3)
	if err != nil {
		t.Fatal(err)
	}
	r4 := refsOf(s4)
	for _, k := range []string{"dave/net", "dave/other"} {
		if name, ok := seen[r4[k]]; ok {
			t.Errorf("%s reuses Ref %d of %s", k, r4[k], name)
		}
	}
	if r4["alice/net"] != r1["alice/net"] {
		t.Error("alice/net lost its Ref")
	}
	// The peers' children carry the rule's Ref.
	for _, p := range s4.Peers {
		for _, ch := range p.Children {
			if ch.Ref != r4[p.Name+"/"+ch.Name] {
				t.Errorf("peer %s child %s: Ref %d, rule %d", p.Name, ch.Name, ch.Ref, r4[p.Name+"/"+ch.Name])
			}
		}
	}
}

// TestPADCompile checks item 3 of issue 7: the PAD holds each connection's
// remote identity, addresses and the selectors each child lets the peer
// claim; Authorize narrows a claim to them and refuses a claim outside.
func TestPADCompile(t *testing.T) {
	c, err := config.Parse("test.yaml", []byte(`
connections:
  site:
    remote_addrs: [192.0.2.2]
    local: {auth: psk, id: gw}
    remote: {auth: psk, id: site.example}
    children: {net: {local_ts: [10.0.0.0/16], remote_ts: [10.2.0.0/16]}}
  roadwarriors:
    remote_addrs: [198.51.100.0/24]
    local: {auth: psk, id: gw}
    remote: {auth: psk, id: "%any"}
    children:
      net: {local_ts: [10.0.0.0/16], remote_ts: [10.8.0.0/16]}
      host: {mode: transport, local_ts: [192.0.2.1/32], remote_ts: [198.51.100.0/24]}
secrets:
  ike:
    - {ids: [gw, site.example], secret: s3cr3t-s3cr3t}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.PAD.Entries) != 2 || s.PAD.Entries[0].Conn != "site" || !s.PAD.Entries[0].RemoteID.Equal(ike.ParseIdentity("site.example")) ||
		!s.PAD.Entries[1].RemoteID.IsAny() || len(s.PAD.Entries[1].Children) != 2 {
		t.Fatalf("PAD %+v", s.PAD)
	}
	site, rw := ike.ParseIdentity("site.example"), ike.ParseIdentity("carol.example")
	a2, a7 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("198.51.100.7")
	for _, tc := range []struct {
		conn  string
		id    ike.Identity
		addr  netip.Addr
		child string
		claim string
		want  string // "" for a refusal
	}{
		{"site", site, a2, "net", "10.2.0.0/16", "10.2.0.0/16"},
		{"site", site, a2, "net", "10.0.0.0/8", "10.2.0.0/16"},                 // narrowed to the entry
		{"site", site, a2, "net", "10.3.0.0/16", ""},                           // outside
		{"site", rw, a2, "net", "10.2.0.0/16", ""},                             // another identity
		{"site", site, a7, "net", "10.2.0.0/16", ""},                           // another address
		{"roadwarriors", rw, a7, "net", "10.8.1.0/24", "10.8.1.0/24"},          // any identity
		{"roadwarriors", rw, a7, "host", "198.51.100.0/24", "198.51.100.7/32"}, // its own address only
		{"roadwarriors", rw, a7, "host", "198.51.100.8/32", ""},
		{"roadwarriors", rw, a7, "nope", "10.8.1.0/24", ""},
	} {
		got, err := s.PAD.Authorize(tc.conn, tc.id, tc.addr, tc.child, traffic.MustParseSet(tc.claim))
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s %s %v %s claims %s: got %v, want a refusal", tc.conn, tc.id, tc.addr, tc.child, tc.claim, got)
		case tc.want != "" && (err != nil || !got.Equal(traffic.MustParseSet(tc.want))):
			t.Errorf("%s %s %v %s claims %s: got %v, %v, want %s", tc.conn, tc.id, tc.addr, tc.child, tc.claim, got, err, tc.want)
		}
	}
}

// TestPSKExactPairs checks item 4 of issue 7: a key is found only for the
// pair of identities its ids name (one id when both identities are the
// same); an entry with one id of two different identities matches nothing.
func TestPSKExactPairs(t *testing.T) {
	c, err := config.Parse("test.yaml", []byte(`
secrets:
  ike:
    - {ids: [gw, alice], secret: alice-key}
    - {ids: [bob], secret: bob-key}
    - {ids: [host1], secret: self-key}
`))
	if err != nil {
		t.Fatal(err)
	}
	psk := pskLookup(c.Secrets)
	id := ike.ParseIdentity
	for _, tc := range []struct {
		local, remote, want string
	}{
		{"gw", "alice", "alice-key"},
		{"alice", "gw", "alice-key"},
		{"gw", "bob", ""},     // bob's entry names only bob
		{"carol", "bob", ""},  // likewise
		{"gw", "mallory", ""}, // no entry for the pair
		{"host1", "host1", "self-key"},
		{"bob", "bob", "bob-key"},
	} {
		if got := string(psk(id(tc.local), id(tc.remote))); got != tc.want {
			t.Errorf("%s <-> %s: key %q, want %q", tc.local, tc.remote, got, tc.want)
		}
	}
	_, err = config.Parse("test.yaml", []byte("secrets:\n  ike:\n    - {secret: any-key}\n"))
	var ce *config.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "test.yaml:3: secrets.ike[0].ids: required") {
		t.Errorf("an entry without ids: %v, want a file:line error", err)
	}
}

// TestPSKLookupMany: with thousands of entries, the lookup (indexed by
// identity) finds each pair's key and the first entry wins, as a walk
// over the entries in file order would; distinguished names still match
// by meaning.
func TestPSKLookupMany(t *testing.T) {
	var b strings.Builder
	b.WriteString("secrets:\n  ike:\n")
	const n = 5000
	for i := range n {
		fmt.Fprintf(&b, "    - {ids: [gw.example, c%d.example], secret: key-%d}\n", i, i)
	}
	b.WriteString("    - {ids: [gw.example, c7.example], secret: shadowed}\n")
	b.WriteString("    - {ids: [gw.example, \"C=CH, O=Example, CN=moon\"], secret: dn-key}\n")
	c, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	psk := pskLookup(c.Secrets)
	id := ike.ParseIdentity
	for _, i := range []int{0, 7, 1234, n - 1} {
		if got, want := string(psk(id("gw.example"), id(fmt.Sprintf("c%d.example", i)))), fmt.Sprintf("key-%d", i); got != want {
			t.Errorf("c%d: key %q, want %q", i, got, want)
		}
	}
	if got := psk(id("c1.example"), id("c2.example")); got != nil {
		t.Errorf("c1 <-> c2: a key %q", got)
	}
	if got := string(psk(id("gw.example"), id("C=CH,O=Example,CN=moon"))); got != "dn-key" {
		t.Errorf("DN: key %q", got)
	}
}
