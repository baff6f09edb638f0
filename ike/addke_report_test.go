package ike

import (
	"testing"

	"github.com/goipsec/goipsec/iana"
)

// TestChildSAReportsAddKE checks that a hybrid CHILD SA (RFC 9370) reports
// every key exchange it ran, to the Installer and in Manager.SAs, so that
// "ipsecctl sas" can show them all.
func TestChildSAReportsAddKE(t *testing.T) {
	const esp = "aes256gcm16-x25519-ke1_mlkem768-ke2_ecp256"
	pa, pb := childAddKEPair(t, esp, esp)
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	if err := p.a.m.Initiate("b", "host", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	checkKeys(t, p.a.inst, p.b.inst, 2)
	want := [7]iana.KEID{iana.KEMLKEM768, iana.KEECP256}
	for _, nd := range []*node{p.a, p.b} {
		found := false
		for _, sa := range nd.m.SAs() {
			for _, c := range sa.Children {
				if c.KE == iana.KENone {
					continue // the IKE_AUTH CHILD SA
				}
				found = true
				if c.KE != iana.KECurve25519 || c.AddKE != want {
					t.Errorf("CHILD SA %s: KE %d, AddKE %v; want %d, %v", c.Child, c.KE, c.AddKE, iana.KECurve25519, want)
				}
			}
		}
		if !found {
			t.Error("no CHILD SA with a key exchange")
		}
	}
}
