package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/transform"
)

// TestProposalsParsedOnce: config keeps no keyword table of its own; it
// stores what transform's parsers return for every proposal, so the engine
// gets exactly what --check accepted.
func TestProposalsParsedOnce(t *testing.T) {
	c, err := Parse("f.yaml", []byte(`connections:
  c:
    remote_addrs: [192.0.2.2]
    proposals: [aes256gcm16-prfsha384-x25519-ke1_mlkem768, aes128-sha256-modp3072, default]
    local: {auth: psk, id: a}
    remote: {auth: psk, id: b}
    children:
      x: {local_ts: 10.0.0.0/8, remote_ts: 10.1.0.0/16, esp_proposals: [aes128gcm16-ecp256-esn, aes256-sha384]}
      y: {local_ts: 10.0.0.0/8, remote_ts: 10.2.0.0/16, mode: transport, ah_proposals: [sha256-x25519]}
secrets:
  ike:
    - {ids: [a, b], secret: s3cr3t-s3cr3t}
`))
	if err != nil {
		t.Fatal(err)
	}
	conn := c.Connections[0]
	for _, p := range conn.Proposals {
		if p.Default {
			if !reflect.DeepEqual(p.Parsed, transform.IKEProposal{}) {
				t.Errorf("default IKE proposal parsed as %+v", p.Parsed)
			}
			continue
		}
		want, err := transform.ParseIKEProposal(p.Text)
		if err != nil || !reflect.DeepEqual(p.Parsed, want) {
			t.Errorf("IKE proposal %q: stored %+v, transform parses %+v (%v)", p.Text, p.Parsed, want, err)
		}
	}
	if len(conn.Proposals) != 3 || !conn.Proposals[2].Default {
		t.Errorf("IKE proposals %+v", conn.Proposals)
	}
	for _, ch := range conn.Children {
		parse := transform.ParseESPProposal
		if ch.Name == "y" {
			parse = transform.ParseAHProposal
		}
		for _, p := range ch.Proposals {
			want, err := parse(p.Text)
			if err != nil || !reflect.DeepEqual(p.Parsed, want) {
				t.Errorf("child %s proposal %q: stored %+v, transform parses %+v (%v)", ch.Name, p.Text, p.Parsed, want, err)
			}
		}
	}
}

// TestCheckRefusesProposalsTheEngineCannotRun: keywords that config's own
// table used to accept and the engine then refused at start (AES-CMAC,
// AES-CTR for IKE, strongSwan's long GCM names) now fail --check, with
// the file and line.
func TestCheckRefusesProposalsTheEngineCannotRun(t *testing.T) {
	for _, tc := range []struct{ proposal, want string }{
		{"aes256-aescmac-prfsha256-x25519", `f.yaml:3: connections.c.proposals[0]: not implemented: AES-CMAC-96 (RFC 4494) ("aescmac" in IKE proposal "aes256-aescmac-prfsha256-x25519")`},
		{"aes128ctr-sha256-x25519", `f.yaml:3: connections.c.proposals[0]: not implemented: AES-CTR for IKE SAs`},
	} {
		_, err := Parse("f.yaml", []byte("connections:\n  c:\n    proposals: ["+tc.proposal+"]\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s", tc.proposal, err, tc.want)
		}
	}
}
