package ike

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikewire"
)

// testPKI is a CA and the end-entity certificates it issued, generated
// with crypto/x509 for the test.
type testPKI struct {
	ca    *x509.Certificate
	caKey crypto.Signer
}

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
)

// testKey returns a fresh private key of the kind named; RSA keys are
// generated once per test binary, which is slow enough.
func testKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "rsa", "rsa-pss":
		rsaKeyOnce.Do(func() { rsaKey, err = rsa.GenerateKey(rand.Reader, 2048) })
		k = rsaKey
	case "ecdsa-p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ecdsa-p521":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil || k == nil {
		t.Fatalf("generating a %s key: %v", kind, err)
	}
	return k
}

var serial int64

func newTestCA(t testing.TB, cn string) *testPKI {
	t.Helper()
	k := testKey(t, "ecdsa-p256")
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{Country: []string{"CH"}, Organization: []string{"goipsec"}, CommonName: cn},
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:         true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, caKey: k}
}

// issue returns an end-entity certificate for key with subject
// "C=CH, O=goipsec, CN=cn", and cn, email and ip as subjectAltNames.
func (p *testPKI) issue(t testing.TB, key crypto.Signer, cn, email string, ip net.IP) *x509.Certificate {
	t.Helper()
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(serial),
		Subject:        pkix.Name{Country: []string{"CH"}, Organization: []string{"goipsec"}, CommonName: cn},
		NotBefore:      time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:       time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		DNSNames:       []string{cn},
		EmailAddresses: []string{email},
		IPAddresses:    []net.IP{ip},
		KeyUsage:       x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// certPeers turns the PSK pair of peerPair into one that authenticates
// with certificates of kind issued by pki.
func certPeers(t testing.TB, pki *testPKI, kind string) (pa, pb Peer) {
	t.Helper()
	pa, pb = peerPair(t, "aes256gcm16-prfsha256-x25519", "aes256gcm16")
	ka, kb := testKey(t, kind), testKey(t, kind)
	if kind == "rsa" || kind == "rsa-pss" {
		kb = rsaKey // one RSA key serves both sides
	}
	for _, x := range []struct {
		p    *Peer
		key  crypto.Signer
		name string
		ip   net.IP
	}{{&pa, ka, "a.example", addrA.AsSlice()}, {&pb, kb, "b.example", addrB.AsSlice()}} {
		x.p.PSK = nil
		x.p.LocalAuth, x.p.RemoteAuth = AuthPubkey, AuthPubkey
		x.p.LocalKey = x.key
		x.p.LocalCerts = []*x509.Certificate{pki.issue(t, x.key, x.name, "ike@"+x.name, x.ip)}
		x.p.RemoteCAs = []*x509.Certificate{pki.ca}
		x.p.RSAPSS = kind == "rsa-pss"
	}
	return pa, pb
}

// checkUp checks that both sides established one IKE SA with one CHILD
// SA, and that each sees the other under the identity want.
func checkUp(t testing.TB, p *stepPair, wantA, wantB Identity) {
	t.Helper()
	checkKeys(t, p.a.inst, p.b.inst, 1)
	sa, sb := p.a.m.SAs(), p.b.m.SAs()
	if len(sa) != 1 || len(sb) != 1 || sa[0].State != StateEstablished || sb[0].State != StateEstablished {
		t.Fatalf("SAs %+v and %+v", sa, sb)
	}
	if !sa[0].RemoteID.Equal(wantB) || !sb[0].RemoteID.Equal(wantA) {
		t.Errorf("remote identities %s and %s, want %s and %s", sa[0].RemoteID, sb[0].RemoteID, wantB, wantA)
	}
}

// checkNothing checks that neither side kept an SA or installed one, and
// that both reported the failed authentication.
func checkNothing(t testing.TB, p *stepPair) {
	t.Helper()
	for _, nd := range []*node{p.a, p.b} {
		if n := len(nd.inst.live()); n != 0 {
			t.Errorf("%s has %d live CHILD SAs", nd.addr, n)
		}
		if len(nd.m.SAs()) != 0 {
			t.Errorf("%s kept an IKE SA: %+v", nd.addr, nd.m.SAs())
		}
		if evs := nd.events(); !hasEvent(evs, EventAuthFailed) {
			t.Errorf("%s events %v: no auth_failed", nd.addr, evs)
		}
	}
}

func TestPubkeyAuth(t *testing.T) {
	pki := newTestCA(t, "goipsec test CA")
	for _, kind := range []string{"rsa", "rsa-pss", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			pa, pb := certPeers(t, pki, kind)
			p := newStepPair(t, pa, pb, nil)
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			m1 := parse(t, p.net.deliver())
			if findNotify(m1.Payloads, ikewire.NotifySignatureHashAlgorithms) == nil {
				t.Error("IKE_SA_INIT request without SIGNATURE_HASH_ALGORITHMS (RFC 7427, Section 4)")
			}
			m2 := parse(t, p.net.deliver())
			cr := find[*ikewire.CertReq](m2.Payloads)
			h := sha1.Sum(pki.ca.RawSubjectPublicKeyInfo)
			if cr == nil || cr.Encoding != ikewire.CertX509Signature || !bytes.Equal(cr.Data, h[:]) {
				t.Errorf("IKE_SA_INIT response CERTREQ %+v, want SHA-1 of the CA's SubjectPublicKeyInfo %x (RFC 7296, Section 3.7)", cr, h)
			}
			p.net.run(20)
			checkUp(t, p, pa.LocalID, pb.LocalID)
		})
	}
}

// TestPubkeyDNIdentity uses the certificates' subjects as identities:
// zero LocalIDs, and RemoteIDs written as strongSwan writes DNs.
func TestPubkeyDNIdentity(t *testing.T) {
	pki := newTestCA(t, "goipsec test CA")
	pa, pb := certPeers(t, pki, "ecdsa-p256")
	pa.LocalID, pb.LocalID = Identity{}, Identity{}
	pa.RemoteID = ParseIdentity("C=CH, O=goipsec, CN=b.example")
	pb.RemoteID = ParseIdentity("c=ch,o=GOIPSEC,cn=A.EXAMPLE")
	p := newStepPair(t, pa, pb, nil)
	p.establish(t)
	checkUp(t, p, Identity{Type: ikewire.ID_DER_ASN1_DN, Data: pa.LocalCerts[0].RawSubject},
		Identity{Type: ikewire.ID_DER_ASN1_DN, Data: pb.LocalCerts[0].RawSubject})
	if got := p.a.m.SAs()[0].RemoteID.String(); got != "C=CH, O=goipsec, CN=b.example" {
		t.Errorf("remote identity %q", got)
	}
}

// TestPubkeyMixed authenticates A with a certificate and B with a PSK.
func TestPubkeyMixed(t *testing.T) {
	pki := newTestCA(t, "goipsec test CA")
	pa, pb := certPeers(t, pki, "ed25519")
	pa.RemoteAuth, pa.PSK = AuthPSK, pskFunc("correct horse battery staple")
	pb.LocalAuth, pb.PSK = AuthPSK, pskFunc("correct horse battery staple")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	checkUp(t, p, pa.LocalID, pb.LocalID)
}

func TestPubkeyWrongCA(t *testing.T) {
	pki, other := newTestCA(t, "goipsec test CA"), newTestCA(t, "other CA")
	for _, side := range []string{"responder", "initiator"} {
		t.Run(side, func(t *testing.T) {
			pa, pb := certPeers(t, pki, "ecdsa-p256")
			if side == "responder" {
				pb.RemoteCAs = []*x509.Certificate{other.ca} // B cannot verify A
			} else {
				pa.RemoteCAs = []*x509.Certificate{other.ca} // A cannot verify B
			}
			p := newStepPair(t, pa, pb, nil)
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			checkNothing(t, p)
		})
	}
}

func TestPubkeyIdentityMismatch(t *testing.T) {
	pki := newTestCA(t, "goipsec test CA")
	for _, tc := range []struct {
		name string
		id   Identity
	}{
		{"fqdn", ParseIdentity("c.example")},
		{"dn", ParseIdentity("C=CH, O=goipsec, CN=c.example")},
		{"ip", ParseIdentity("192.0.2.99")},
		{"email", ParseIdentity("ike@c.example")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pa, pb := certPeers(t, pki, "ecdsa-p256")
			pa.LocalID, pb.RemoteID = tc.id, tc.id // B expects what A claims, but A's certificate does not say so
			p := newStepPair(t, pa, pb, nil)
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			checkNothing(t, p)
		})
	}
	// The SANs and the subject of A's certificate do match.
	for _, id := range []string{"192.0.2.1", "ike@a.example", "C=CH, O=goipsec, CN=a.example"} {
		pa, pb := certPeers(t, pki, "ecdsa-p256")
		pa.LocalID, pb.RemoteID = ParseIdentity(id), ParseIdentity(id)
		p := newStepPair(t, pa, pb, nil)
		if err := p.a.m.Initiate("b", "net", nil); err != nil {
			t.Fatal(err)
		}
		p.net.run(20)
		checkUp(t, p, pa.LocalID, pb.LocalID)
	}
}

// TestPubkeyNoCert checks that a pubkey responder refuses a PSK initiator.
func TestPubkeyNoCert(t *testing.T) {
	pki := newTestCA(t, "goipsec test CA")
	pa, pb := certPeers(t, pki, "ecdsa-p256")
	pa.LocalAuth, pa.PSK = AuthPSK, pskFunc("x")
	p := newStepPair(t, pa, pb, nil)
	if err := p.a.m.Initiate("b", "net", nil); err != nil {
		t.Fatal(err)
	}
	p.net.run(20)
	checkNothing(t, p)
}

// TestSignatureMethods checks signing and verification of every method,
// and that RFC 4754 signatures are r || s verifiable by crypto/ecdsa.
func TestSignatureMethods(t *testing.T) {
	octets := []byte("signed octets of RFC 7296, Section 2.15")
	for _, kind := range []string{"rsa", "rsa-pss", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519"} {
		k := testKey(t, kind)
		for _, hs := range [][]uint16{ourSigHashes, nil, {hashSHA384, hashSHA512, hashIdentity}} {
			a, err := signAuth(k, kind == "rsa-pss", hs, octets, rand.Reader)
			if err != nil {
				t.Errorf("%s %v: %v", kind, hs, err)
				continue
			}
			if err := verifySig(k.Public(), a.Method, a.Data, octets); err != nil {
				t.Errorf("%s %v: method %d: %v", kind, hs, a.Method, err)
			}
			if err := verifySig(k.Public(), a.Method, a.Data, append(octets, 0)); err == nil {
				t.Errorf("%s %v: a signature of other octets verifies", kind, hs)
			}
		}
	}
	// RFC 4754, Section 7: method 9 is r || s over SHA-256 on P-256.
	k := testKey(t, "ecdsa-p256").(*ecdsa.PrivateKey)
	a, err := signAuth(k, false, nil, octets, rand.Reader)
	if err != nil || a.Method != ikewire.AuthECDSA256 || len(a.Data) != 64 {
		t.Fatalf("classic ECDSA: %+v %v", a, err)
	}
	d := sha256.Sum256(octets)
	if !ecdsa.Verify(&k.PublicKey, d[:], new(big.Int).SetBytes(a.Data[:32]), new(big.Int).SetBytes(a.Data[32:])) {
		t.Error("crypto/ecdsa does not verify our method 9 signature")
	}
	// RFC 7427, Appendix A.3.1: the AlgorithmIdentifier of
	// ecdsa-with-SHA256 (length byte first).
	a, _ = signAuth(k, false, ourSigHashes, octets, rand.Reader)
	want := []byte{0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
	if a.Method != ikewire.AuthDigitalSignature || !bytes.HasPrefix(a.Data, want) {
		t.Errorf("ECDSA P-256 AUTH data starts %x, want %x", a.Data[:13], want)
	}
	// RFC 7427, Appendix A.1.1: sha256WithRSAEncryption.
	a, _ = signAuth(testKey(t, "rsa"), false, ourSigHashes, octets, rand.Reader)
	want = []byte{0x0f, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00}
	if !bytes.HasPrefix(a.Data, want) {
		t.Errorf("RSA AUTH data starts %x, want %x", a.Data[:16], want)
	}
	// RFC 8420, Section 2: Ed25519's AlgorithmIdentifier.
	a, _ = signAuth(testKey(t, "ed25519"), false, ourSigHashes, octets, rand.Reader)
	want = []byte{0x07, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}
	if !bytes.HasPrefix(a.Data, want) {
		t.Errorf("Ed25519 AUTH data starts %x, want %x", a.Data[:8], want)
	}
	// RFC 8247, Section 3.2: RSA with SHA-1 is refused, in either method.
	rk := testKey(t, "rsa").(*rsa.PrivateKey)
	h1 := sha1.Sum(octets)
	sig, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA1, h1[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := verifySig(rk.Public(), ikewire.AuthRSASig, sig, octets); err == nil {
		t.Error("method 1 (RSA with SHA-1) verified")
	}
	sha1RSA := []byte{0x0d, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00}
	sha1RSA[0] = byte(len(sha1RSA) - 1)
	if err := verifySig(rk.Public(), ikewire.AuthDigitalSignature, append(sha1RSA, sig...), octets); err == nil {
		t.Error("sha1WithRSAEncryption verified")
	}
	// Malformed AUTH data fails without panicking.
	for _, d := range [][]byte{nil, {0}, {0xff, 0x30}, {2, 0x30, 0x00}, {3, 0x30, 0x01, 0x06, 1, 2}} {
		if err := verifySig(rk.Public(), ikewire.AuthDigitalSignature, d, octets); err == nil {
			t.Errorf("AUTH data %x verified", d)
		}
	}
}

// TestDistinguishedNames checks DN identities against encoding/asn1's
// encoding of the same names.
func TestDistinguishedNames(t *testing.T) {
	want, err := asn1.Marshal(pkix.Name{Country: []string{"CH"}, Organization: []string{"strongSwan"}, CommonName: "moon.strongswan.org"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	id := ParseIdentity("C=CH, O=strongSwan, CN=moon.strongswan.org")
	if id.Type != ikewire.ID_DER_ASN1_DN || !bytes.Equal(id.Data, want) {
		t.Fatalf("ParseIdentity = %d %x, want DN %x", id.Type, id.Data, want)
	}
	if got := id.String(); got != "C=CH, O=strongSwan, CN=moon.strongswan.org" {
		t.Errorf("String() = %q", got)
	}
	// The same name with UTF8String values and other case is equal; other
	// orders and values are not.
	utf8, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("ch")}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("STRONGSWAN")}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("moon.strongswan.org")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !id.Equal(Identity{Type: ikewire.ID_DER_ASN1_DN, Data: utf8}) {
		t.Error("a DN with UTF8String values differs")
	}
	for _, s := range []string{"O=strongSwan, C=CH, CN=moon.strongswan.org", "C=CH, O=strongSwan, CN=sun.strongswan.org", "C=CH, O=strongSwan"} {
		if id.Equal(ParseIdentity(s)) {
			t.Errorf("%q equals %q", s, id)
		}
	}
	if !dnEqual(want, want) || dnEqual(want, []byte{0x30}) || dnEqual(append(want[:len(want):len(want)], 0), want[:len(want)-1]) {
		t.Error("dnEqual on malformed input")
	}
	if got := ParseIdentity("X=1, CN=y"); got.Type == ikewire.ID_DER_ASN1_DN {
		t.Error("an unknown attribute parsed as a DN")
	}
}

// FuzzAuthData feeds arbitrary AUTH payloads and distinguished names to
// the verifier and the DN code: they must fail cleanly, never panic.
func FuzzAuthData(f *testing.F) {
	octets := []byte("signed octets")
	var pubs []any
	for _, kind := range []string{"rsa", "ecdsa-p256", "ecdsa-p384", "ed25519"} {
		k := testKey(f, kind)
		pubs = append(pubs, k.Public())
		for _, hs := range [][]uint16{ourSigHashes, nil} {
			for _, pss := range []bool{false, true} {
				// Valid signatures of other octets: the structure is
				// right, the signature is not.
				if a, err := signAuth(k, pss, hs, []byte("other octets"), rand.Reader); err == nil {
					f.Add(uint8(a.Method), a.Data)
				}
			}
		}
	}
	dn, _ := parseDN("C=CH, O=goipsec, CN=a.example")
	f.Add(uint8(0), dn)
	f.Fuzz(func(t *testing.T, method uint8, data []byte) {
		for _, pub := range pubs {
			if verifySig(pub, ikewire.AuthMethod(method), data, octets) == nil {
				t.Fatalf("method %d data %x verified", method, data)
			}
		}
		dnEqual(data, dn)
		dnString(data)
		matchCert(Identity{Type: ikewire.ID_DER_ASN1_DN, Data: data}, &x509.Certificate{RawSubject: dn})
	})
}
