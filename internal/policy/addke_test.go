package policy

import (
	"path/filepath"
	"testing"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/ike"
)

// TestIKEPeersAddKE: IKE proposals with additional key exchanges (RFC 9370,
// strongSwan's "ke1_mlkem768") reach the engine.
func TestIKEPeersAddKE(t *testing.T) {
	ps := pskPeers(t, "aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke2_none-ke2_ecp256, aes256gcm16-prfsha384-mlkem1024",
		"x: {local_ts: 10.0.0.0/8, remote_ts: 10.1.0.0/16}", nil)
	if len(ps) != 1 || len(ps[0].Proposals) != 2 {
		t.Fatalf("peers %+v", ps)
	}
	p := ps[0].Proposals[0]
	if len(p.AddKE[0]) != 1 || p.AddKE[0][0] != iana.KEMLKEM768 || len(p.AddKE[1]) != 2 || p.AddKE[1][0] != iana.KENone || p.AddKE[1][1] != iana.KEECP256 {
		t.Errorf("AddKE %v", p.AddKE)
	}
	if q := ps[0].Proposals[1]; len(q.KE) != 1 || q.KE[0] != iana.KEMLKEM1024 {
		t.Errorf("ML-KEM-only proposal: KE %v", q.KE)
	}
}

// TestIKEPeersChildAddKE: ESP proposals with additional key exchanges for
// CHILD SAs made with CREATE_CHILD_SA (RFC 9370, Section 2.2.3) reach the
// engine, which accepts them.
func TestIKEPeersChildAddKE(t *testing.T) {
	ps := pskPeers(t, "aes256gcm16-prfsha256-x25519",
		"x: {local_ts: 10.0.0.0/8, remote_ts: 10.1.0.0/16, esp_proposals: [aes256gcm16-x25519-ke1_mlkem768-ke2_none-ke2_ecp256]}", nil)
	if len(ps) != 1 || len(ps[0].Children) != 1 || len(ps[0].Children[0].Proposals) != 1 {
		t.Fatalf("peers %+v", ps)
	}
	p := ps[0].Children[0].Proposals[0]
	if len(p.KE) != 1 || p.KE[0] != iana.KECurve25519 || len(p.AddKE[0]) != 1 || p.AddKE[0][0] != iana.KEMLKEM768 ||
		len(p.AddKE[1]) != 2 || p.AddKE[1][0] != iana.KENone || p.AddKE[1][1] != iana.KEECP256 {
		t.Errorf("KE %v AddKE %v", p.KE, p.AddKE)
	}
}

// TestIKEPeersUseParsedProposals: the peers get the proposals config parsed,
// not a second parse of their text.
func TestIKEPeersUseParsedProposals(t *testing.T) {
	ps := pskPeers(t, "aes256gcm16-prfsha256-x25519", "x: {local_ts: 10.0.0.0/8, remote_ts: 10.1.0.0/16, esp_proposals: [aes128gcm16-ecp256]}",
		func(c *config.Config) {
			conn := &c.Connections[0]
			conn.Proposals[0].Text = "not parsed again"
			conn.Children[0].Proposals[0].Text = "not parsed again"
		})
	if got := ps[0].Proposals[0].String(); got != "aes256gcm16-prfsha256-x25519" {
		t.Errorf("IKE proposal %s", got)
	}
	if got := ps[0].Children[0].Proposals[0].String(); got != "aes128gcm16-ecp256" {
		t.Errorf("ESP proposal %s", got)
	}
}

// pskPeers parses a configuration of one PSK connection c to 192.0.2.2
// with the given IKE proposals and children, and returns its IKE peers.
func pskPeers(t *testing.T, proposals, children string, edit func(*config.Config)) []ike.Peer {
	t.Helper()
	c, err := config.Parse(filepath.Join(t.TempDir(), "ipsecd.yaml"), []byte("connections:\n  c:\n    remote_addrs: [192.0.2.2]\n"+
		"    proposals: ["+proposals+"]\n"+
		"    local: {auth: psk, id: a}\n    remote: {auth: psk, id: b}\n"+
		"    children: {"+children+"}\n"+
		"secrets:\n  ike:\n    - {ids: [a, b], secret: s3cr3t-s3cr3t}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(c)
	}
	ps, err := ikePeers(c, func(string, string) uint32 { return 1 })
	if err != nil {
		t.Fatal(err)
	}
	return ps
}
