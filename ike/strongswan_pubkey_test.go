package ike

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/nstest"
	"github.com/goipsec/goipsec/internal/swantest"
)

func pemCert(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func pemKey(t *testing.T, k crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// swanPubkeyConn is strongSwan's side of connection "gi" authenticated
// with its certificate b.pem; ids empty mean the certificates' subjects.
func swanPubkeyConn(localID, remoteID string) string {
	line := func(k, v string) string {
		if v == "" {
			return ""
		}
		return fmt.Sprintf("      %s = %s\n", k, v)
	}
	return "connections {\n  gi {\n    version = 2\n    local_addrs = 192.0.2.2\n    remote_addrs = 192.0.2.1\n" +
		"    proposals = aes256gcm16-prfsha256-ecp256\n" +
		"    local {\n      auth = pubkey\n      certs = b.pem\n" + line("id", localID) + "    }\n" +
		"    remote {\n      auth = pubkey\n      cacerts = ca.pem\n" + line("id", remoteID) + "    }\n" +
		"    children {\n      net {\n        mode = tunnel\n        local_ts = 10.2.0.0/16\n        remote_ts = 10.1.0.0/16\n" +
		"        esp_proposals = aes256gcm16\n      }\n    }\n  }\n}\n"
}

// TestStrongSwanPubkey authenticates with certificates against strongSwan
// 5.9.8 in both roles: ECDSA P-256 with FQDN identities (subjectAltNames),
// RSA with the certificates' subjects as identities (ID_DER_ASN1_DN), and
// RSASSA-PSS on both sides with e-mail identities, Ed25519 with IP
// address identities.
// The certificates are generated here with crypto/x509 and given to charon
// in its x509/, x509ca/ and private/ folders. Needs root and strongSwan.
func TestStrongSwanPubkey(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: starts strongSwan")
	}
	for _, tc := range []struct {
		kind                  string
		swanLocal, swanRemote string // strongSwan's ids
		ourLocal, ourRemote   string
	}{
		{"ecdsa-p256", "b.example", "a.example", "a.example", "b.example"},
		{"rsa", "", "C=CH, O=goipsec, CN=a.example", "", "C=CH, O=goipsec, CN=b.example"},
		{"rsa-pss", "ike@b.example", "ike@a.example", "ike@a.example", "ike@b.example"},
		{"ed25519", "192.0.2.2", "192.0.2.1", "192.0.2.1", "192.0.2.2"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			pki := newTestCA(t, "goipsec test CA")
			pa, _ := certPeers(t, pki, tc.kind)
			kb := testKey(t, tc.kind)
			bCert := pki.issue(t, kb, "b.example", "ike@b.example", addrB.AsSlice())
			gi, sw := nstest.New(t, "gi"), nstest.New(t, "sw")
			nstest.Link(t, gi, "v0", []string{"192.0.2.1/24"}, sw, "v0", []string{"192.0.2.2/24"})
			sw.AddLoopbackAddr("10.2.0.1")
			ch := swantest.Start(t, sw, swantest.Config{
				// rsa_pss makes charon sign with RSASSA-PSS too.
				Charon: "charon {\n  retransmit_tries = 2\n  rsa_pss = " + map[bool]string{true: "yes", false: "no"}[tc.kind == "rsa-pss"] + "\n" + swanLog + "}",
				Conn:   swanPubkeyConn(tc.swanLocal, tc.swanRemote),
				Files: map[string]string{
					"x509ca/ca.pem": pemCert(pki.ca),
					"x509/b.pem":    pemCert(bCert),
					"private/b.key": pemKey(t, kb),
				},
			})
			t.Cleanup(func() {
				if os.Getenv("SWANLOG") != "" && !t.Failed() {
					t.Logf("charon log:\n%s", ch.Log())
				}
			})
			pa.Proposals = mustIKE(t, "aes256gcm16-prfsha256-ecp256")
			pa.LocalAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
			pa.RemoteAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")}
			pa.LocalID, pa.RemoteID = ParseIdentity(tc.ourLocal), ParseIdentity(tc.ourRemote)
			m, inst := giSide(t, gi, Config{}, 500)
			if err := m.SetPeers([]Peer{pa}); err != nil {
				t.Fatal(err)
			}
			up := func(who string) {
				t.Helper()
				if !nstest.WaitFor(10*time.Second, func() bool { return upWith(m, inst) }) {
					t.Fatalf("%s: no CHILD SA; SAs %+v", who, m.SAs())
				}
				spis, sas := swanSPIs(t, ch)
				for _, c := range inst.live() {
					if !spis[c.SPIIn] || !spis[c.SPIOut] {
						t.Errorf("%s: strongSwan does not list SPIs %08x/%08x: %+v", who, c.SPIIn, c.SPIOut, sas)
					}
				}
				if !slices.ContainsFunc(sas, func(s swantest.IKESA) bool { return s.State == "ESTABLISHED" }) {
					t.Errorf("%s: strongSwan has no ESTABLISHED IKE SA: %+v", who, sas)
				}
				want := ParseIdentity(tc.ourRemote)
				if want.IsZero() {
					want = Identity{Type: 9, Data: bCert.RawSubject}
				}
				if got := m.SAs()[0].RemoteID; !got.Equal(want) {
					t.Errorf("%s: remote identity %s, want %s", who, got, want)
				}
			}

			// goipsec initiates.
			if err := m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			up("goipsec initiator")
			checkChildKeys(t, ch, inst)
			if err := m.Terminate("b", ""); err != nil {
				t.Fatal(err)
			}
			if !nstest.WaitFor(10*time.Second, func() bool { return len(m.SAs()) == 0 && !swanEstablished(ch) }) {
				t.Fatalf("after our delete: %+v", m.SAs())
			}

			// strongSwan initiates.
			if _, err := ch.Initiate("net"); err != nil {
				t.Fatal(err)
			}
			up("goipsec responder")

			if tc.kind != "ecdsa-p256" {
				return
			}
			// We do not trust strongSwan's CA: we fail, tell strongSwan
			// (RFC 7296, Section 2.21.2), and neither side keeps an SA.
			if err := m.Terminate("b", ""); err != nil {
				t.Fatal(err)
			}
			if !nstest.WaitFor(10*time.Second, func() bool { return len(m.SAs()) == 0 && !swanEstablished(ch) }) {
				t.Fatalf("after our delete: %+v", m.SAs())
			}
			pa.RemoteCAs = []*x509.Certificate{newTestCA(t, "other CA").ca}
			if err := m.SetPeers([]Peer{pa}); err != nil {
				t.Fatal(err)
			}
			installs, _ := inst.counts()
			if err := m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			if !nstest.WaitFor(10*time.Second, func() bool {
				sas, err := ch.ListSAs()
				return err == nil && len(sas) == 0 && len(m.SAs()) == 0
			}) {
				sas, err := ch.ListSAs()
				t.Fatalf("after a failed authentication: ours %+v, strongSwan's %+v %v", m.SAs(), sas, err)
			}
			if n, _ := inst.counts(); n != installs {
				t.Error("a CHILD SA was installed")
			}
		})
	}
}
