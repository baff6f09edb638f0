package ike

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestIKEAuthReselectEnforcesProposals: IKE_SA_INIT chooses the suite with
// the first peer whose addresses match; when IKE_AUTH selects another peer
// by identity, the suite must be one that peer's proposals allow, or the
// responder refuses with AUTHENTICATION_FAILED.
func TestIKEAuthReselectEnforcesProposals(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	plain := pb
	plain.Name, plain.RemoteID = "plain", ParseIdentity("c.example")
	pq := pb
	pq.Name, pq.Proposals = "pq", mustIKE(t, "aes256gcm16-prfsha256-x25519-ke1_mlkem768")

	// A offers plain x25519 only: B picks it with "plain", then finds A is
	// "pq", which requires ML-KEM-768.
	logB := &lockedBuffer{}
	p := newStepPair(t, pa, pb, func(_, b *Config) { b.Logger = slog.New(slog.NewTextHandler(logB, nil)) })
	if err := p.b.m.SetPeers([]Peer{plain, pq}); err != nil {
		t.Fatal(err)
	}
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	if !strings.Contains(logB.String(), `not allowed by the proposals of peer \"pq\"`) {
		t.Errorf("B's log does not say why it refused:\n%s", logB.String())
	}
	checkNothing(t, p)

	// Offering the suite "pq" requires, A connects to "pq" (IKE_SA_INIT
	// skips "plain", whose proposals do not allow it).
	pa.Proposals = mustIKE(t, "aes256gcm16-prfsha256-x25519-ke1_mlkem768")
	p = newStepPair(t, pa, pb, nil)
	if err := p.b.m.SetPeers([]Peer{plain, pq}); err != nil {
		t.Fatal(err)
	}
	p.establish2(t)
	sb := p.b.m.SAs()
	if len(sb) != 1 || sb[0].Peer != "pq" || !strings.Contains(sb[0].Proposal, "ke1_mlkem768") {
		t.Fatalf("B: %+v", sb)
	}

	// An initiator whose suite came from its own proposals passes the
	// same check.
	x := p.a.m.anySession().sa
	if err := checkSuite(&pa, x); err != nil {
		t.Errorf("initiator: %v", err)
	}
	if err := checkSuite(&plain, x); err == nil {
		t.Error("a suite with ML-KEM-768 passed proposals without it")
	}
}

// establish2 runs IKE_SA_INIT, IKE_INTERMEDIATE and IKE_AUTH to the end.
func (p *stepPair) establish2(t testing.TB) {
	t.Helper()
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	checkKeys(t, p.a.inst, p.b.inst, 1)
}

// anySession returns one session of the manager (step tests only).
func (m *Manager) anySession() *session {
	m.mu.Lock()
	defer m.mu.Unlock()
	for a := range m.actors {
		return a.s
	}
	return nil
}

func TestIdentityMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, id string
		want        bool
	}{
		{"*.example.org", "gw.example.org", true},
		{"*.example.org", "a.b.EXAMPLE.org", true},
		{"*.example.org", "example.org", false},
		{"*.example.org", "gw.example.com", false},
		{"*.example.org", "ike@gw.example.org", false}, // another type
		{"*@example.org", "carol@example.org", true},
		{"*@example.org", "carol@sub.example.org", false},
		{"*@example.org", "example.org", false},
		{"@*", "anything.example", true},
		{"C=CH, O=Example, CN=*", "C=CH, O=Example, CN=moon", true},
		{"C=CH, O=Example, CN=*", "c=ch, o=EXAMPLE, cn=sun", true},
		{"C=CH, O=Example, CN=*", "C=CH, O=Other, CN=moon", false},
		{"C=CH, O=Example, CN=*", "C=CH, O=Example", false},
		{"C=CH, O=*, CN=*", "C=CH, O=X, CN=y", true},
		{"%any", "192.0.2.1", true},
		{"%any", "C=CH, CN=x", true},
		{"gw.example.org", "gw.example.org", true},
		{"gw.example.org", "*.example.org", false},
		{"", "192.0.2.1", false},
	} {
		if got := ParseIdentity(tc.pattern).Matches(ParseIdentity(tc.id)); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.id, got, tc.want)
		}
	}
	for _, bad := range []string{"gw.*.example.org", "**.example.org", "gw*", "ike@*.example.org", "C=CH, CN=moon*"} {
		if err := ParseIdentity(bad).CheckPattern(); err == nil {
			t.Errorf("CheckPattern(%q) accepted a malformed pattern", bad)
		} else if !strings.HasPrefix(err.Error(), "ike: ") {
			t.Errorf("error %q", err)
		}
		pa, _ := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
		pa.RemoteID = ParseIdentity(bad)
		m := NewManager(Config{}, &fakeInstaller{}, stepTransport{})
		if err := m.SetPeers([]Peer{pa}); err == nil {
			t.Errorf("SetPeers accepted RemoteID %q", bad)
		}
		m.Close()
	}
	for _, good := range []string{"*.example.org", "*@example.org", "C=CH, CN=*", "%any", "", "192.0.2.1", "@#0102"} {
		if err := ParseIdentity(good).CheckPattern(); err != nil {
			t.Errorf("CheckPattern(%q): %v", good, err)
		}
	}
}

// TestRemoteIDPatterns: a responder selects a peer by the initiator's
// identity, exact first, then a pattern, then %any; patterns work on the
// initiator too.
func TestRemoteIDPatterns(t *testing.T) {
	pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	peer := func(name, remote string) Peer {
		p := pb
		p.Name, p.RemoteID = name, ParseIdentity(remote)
		return p
	}
	for _, tc := range []struct {
		name    string
		localA  string
		peers   []Peer
		want    string // B's peer, "" for a refusal
		remoteA string // A's RemoteID
	}{
		{"exact wins", "a.example", []Peer{peer("any", "%any"), peer("pat", "*.example"), peer("exact", "a.example")}, "exact", "b.example"},
		{"pattern before any", "a.example", []Peer{peer("any", "%any"), peer("pat", "*.example")}, "pat", "b.example"},
		{"any", "x.other", []Peer{peer("pat", "*.example"), peer("any", "%any")}, "any", "b.example"},
		{"no match", "x.other", []Peer{peer("pat", "*.example")}, "", "b.example"},
		{"email pattern", "carol@a.example", []Peer{peer("pat", "*@a.example")}, "pat", "b.example"},
		{"initiator pattern", "a.example", []Peer{peer("exact", "a.example")}, "exact", "*.example"},
		{"initiator any", "a.example", []Peer{peer("exact", "a.example")}, "exact", "%any"},
		{"initiator pattern mismatch", "a.example", []Peer{peer("exact", "a.example")}, "", "*.other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := pa
			a.LocalID, a.RemoteID = ParseIdentity(tc.localA), ParseIdentity(tc.remoteA)
			p := newStepPair(t, a, pb, nil)
			if err := p.b.m.SetPeers(tc.peers); err != nil {
				t.Fatal(err)
			}
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			if tc.want == "" {
				checkNothing(t, p)
				return
			}
			checkKeys(t, p.a.inst, p.b.inst, 1)
			if sb := p.b.m.SAs(); len(sb) != 1 || sb[0].Peer != tc.want {
				t.Fatalf("B chose %+v, want peer %q", sb, tc.want)
			}
		})
	}
}

// TestEmptyRemoteIDMeansAddress: a zero RemoteID accepts only the
// ID_IPV4_ADDR of the address the peer speaks from, on both sides, as the
// configuration documents ("empty means the IP address").
func TestEmptyRemoteIDMeansAddress(t *testing.T) {
	for _, tc := range []struct {
		name           string
		localA, localB string // A's and B's LocalIDs; B's RemoteID and A's are empty
		up             bool
	}{
		{"addresses", "", "", true},
		{"explicit addresses", "192.0.2.1", "192.0.2.2", true},
		{"initiator claims a name", "a.example", "", false},
		{"initiator claims another address", "192.0.2.99", "", false},
		{"responder claims a name", "", "b.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pa, pb := peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
			pa.LocalID, pb.LocalID = ParseIdentity(tc.localA), ParseIdentity(tc.localB)
			pa.RemoteID, pb.RemoteID = Identity{}, Identity{}
			// The key belongs to the pair of addresses: both sides look it
			// up with the other's IP address as its identity.
			byAddr := func(peer netip.Addr) func(Identity, Identity) []byte {
				return func(local, remote Identity) []byte {
					if remote.Equal(AddrIdentity(peer)) {
						return []byte("pair of addresses")
					}
					return nil
				}
			}
			pa.PSK, pb.PSK = byAddr(addrB), byAddr(addrA)
			p := connect(t, pa, pb)
			if !tc.up {
				checkNothing(t, p)
				return
			}
			checkUp(t, p, AddrIdentity(addrA), AddrIdentity(addrB))
		})
	}
	// With certificates, the address must also be in the certificate.
	pki := newTestCA(t, "goipsec test CA")
	pa, pb := certPeers(t, pki, "ecdsa-p256")
	pa.LocalID, pb.RemoteID = ParseIdentity("192.0.2.1"), Identity{}
	p := connect(t, pa, pb)
	checkUp(t, p, AddrIdentity(addrA), pb.LocalID)

	pa, pb = certPeers(t, pki, "ecdsa-p256")
	pa.LocalCerts[0] = pki.issue(t, pa.LocalKey, "a.example", "ike@a.example", net.IP{192, 0, 2, 77})
	pa.LocalID, pb.RemoteID = ParseIdentity("192.0.2.1"), Identity{}
	p = connect(t, pa, pb)
	checkNothing(t, p)
}

// TestPeerCertificateUsage: the peer's end-entity certificate is accepted
// without ExtendedKeyUsage or with ipsecIKE, serverAuth, clientAuth or
// anyExtendedKeyUsage, and refused with only other purposes or with a
// KeyUsage that allows no signature.
func TestPeerCertificateUsage(t *testing.T) {
	pki := newTestCA(t, "goipsec test CA")
	for _, tc := range []struct {
		name    string
		ku      x509.KeyUsage
		eku     []x509.ExtKeyUsage
		unknown []asn1.ObjectIdentifier
		ok      bool
	}{
		{"no eku", x509.KeyUsageDigitalSignature, nil, nil, true},
		{"no key usage", 0, nil, nil, true},
		{"ipsecIKE", x509.KeyUsageDigitalSignature, nil, []asn1.ObjectIdentifier{oidIPsecIKE}, true},
		{"serverAuth", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil, true},
		{"clientAuth", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, true},
		{"any", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, nil, true},
		{"nonRepudiation", x509.KeyUsageContentCommitment, nil, nil, true},
		{"codeSigning", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, nil, false},
		{"emailProtection", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageTimeStamping}, nil, false},
		{"keyEncipherment only", x509.KeyUsageKeyEncipherment, nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pa, pb := certPeers(t, pki, "ecdsa-p256")
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(int64(1000 + len(tc.name))),
				Subject:      pkix.Name{Country: []string{"CH"}, Organization: []string{"goipsec"}, CommonName: "a.example"},
				NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
				NotAfter:     time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
				DNSNames:     []string{"a.example"},
				KeyUsage:     tc.ku, ExtKeyUsage: tc.eku, UnknownExtKeyUsage: tc.unknown,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.ca, pa.LocalKey.Public(), pki.caKey)
			if err != nil {
				t.Fatal(err)
			}
			if pa.LocalCerts[0], err = x509.ParseCertificate(der); err != nil {
				t.Fatal(err)
			}
			p := connect(t, pa, pb)
			if tc.ok {
				checkUp(t, p, pa.LocalID, pb.LocalID)
				return
			}
			checkNothing(t, p)
			if err := checkUsage(pa.LocalCerts[0]); err == nil || !strings.Contains(err.Error(), "RFC 4945") {
				t.Errorf("checkUsage: %v", err)
			}
		})
	}
}

// connect makes a step pair of pa and pb and runs A's Initiate to the end.
func connect(t *testing.T, pa, pb Peer) *stepPair {
	t.Helper()
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	return p
}
