package daemon

import (
	"slices"
	"testing"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/iana"
)

// hybrid makes the child of an ikeConfig rekey with x25519 and ML-KEM-768
// (aes256gcm16-x25519-ke1_mlkem768; RFC 9370).
func hybrid(c *config.Config) *config.Config {
	p := &c.Connections[0].Children[0].Proposals[0]
	p.Text += "-x25519-ke1_mlkem768"
	p.Parsed.KE = []iana.KEID{iana.KECurve25519}
	p.Parsed.AddKE[0] = []iana.KEID{iana.KEMLKEM768}
	return c
}

// TestSAsListEveryKE: the control API reports every key exchange of a
// hybrid CHILD SA, first in "ke" and all in "kes".
func TestSAsListEveryKE(t *testing.T) {
	nw, inw := conntest.NewNetwork(1024), &ikeNet{}
	const psk = "correct horse battery staple"
	a := newIKEPeer(t, nw, inw, "a", hybrid(ikeConfig(t, "a", "none", psk)))
	newIKEPeer(t, nw, inw, "b", hybrid(ikeConfig(t, "b", "none", psk)))
	if err := a.d.Initiate(t.Context(), "net/lan"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the CHILD SA", func() bool {
		sas, _ := a.d.SAs(t.Context())
		return len(sas.ChildSAs) == 1
	})
	// The IKE_AUTH CHILD SA has no key exchange of its own; its rekey
	// (CREATE_CHILD_SA) has both.
	if err := a.d.Rekey(t.Context(), "net/lan"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			sas, _ := a.d.SAs(t.Context())
			t.Logf("SAs: %+v", sas)
		}
	}()
	waitFor(t, "a rekeyed hybrid CHILD SA", func() bool {
		sas, _ := a.d.SAs(t.Context())
		for _, c := range sas.ChildSAs {
			if c.KE != "" {
				if c.KE != "x25519" || !slices.Equal(c.KEs, []string{"x25519", "mlkem768"}) {
					t.Fatalf("CHILD SA %s: ke %q, kes %q", c.Name, c.KE, c.KEs)
				}
				return true
			}
		}
		return false
	})
}
