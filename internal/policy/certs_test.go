package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ike"
)

// writeCert creates a certificate for key signed by parent (self-signed
// when parent is nil) and writes it as PEM.
func writeCert(t *testing.T, path string, key crypto.Signer, cn string, parent *x509.Certificate, pkey crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: parent == nil, BasicConstraintsValid: true, DNSNames: []string{cn},
	}
	if parent == nil {
		parent, pkey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), pkey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func writeKey(t *testing.T, path string, key crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestIKEPeersPubkey(t *testing.T) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	gwKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := writeCert(t, filepath.Join(dir, "ca.pem"), caKey, "CA", nil, nil)
	gw := writeCert(t, filepath.Join(dir, "gw.pem"), gwKey, "gw.example", ca, caKey)
	writeKey(t, filepath.Join(dir, "gw.key"), gwKey)
	writeKey(t, filepath.Join(dir, "other.key"), otherKey)
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "ipsecd.yaml")
	parse := func(local, remote string) *config.Config {
		t.Helper()
		c, err := config.Parse(cfgPath, []byte("connections:\n  c:\n    remote_addrs: [192.0.2.2]\n    local: "+local+"\n    remote: "+remote+
			"\n    children: {x: {local_ts: 10.0.0.0/8, remote_ts: 10.1.0.0/16}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	refs := func(string, string) uint32 { return 1 }
	ps, err := ikePeers(parse("{auth: pubkey, certs: [gw.pem], key: gw.key, id: gw.example}", "{auth: pubkey, cacerts: [ca.pem]}"), refs)
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0]
	if p.LocalAuth != ike.AuthPubkey || p.RemoteAuth != ike.AuthPubkey || len(p.LocalCerts) != 1 || !p.LocalCerts[0].Equal(gw) ||
		len(p.RemoteCAs) != 1 || !p.RemoteCAs[0].Equal(ca) || p.LocalKey == nil || p.PSK != nil {
		t.Errorf("peer %+v", p)
	}
	for _, tc := range []struct{ local, remote, want string }{
		{"{auth: pubkey, certs: [gw.pem], key: other.key}", "{auth: pubkey, cacerts: [ca.pem]}",
			"policy: connection c: " + filepath.Join(dir, "other.key") + ": the private key does not belong to the certificate"},
		{"{auth: pubkey, certs: [gw.pem]}", "{auth: pubkey, cacerts: [ca.pem]}", "policy: connection c: local.key is required"},
		{"{auth: pubkey, certs: [junk.pem], key: gw.key}", "{auth: pubkey, cacerts: [ca.pem]}",
			"policy: connection c: " + filepath.Join(dir, "junk.pem") + ": neither"},
		{"{auth: pubkey, certs: [gw.pem], key: gw.key}", "{auth: pubkey, cacerts: [missing.pem]}",
			"policy: connection c: open " + filepath.Join(dir, "missing.pem")},
		{"{auth: pubkey, certs: [gw.pem], key: gw.key}", "{auth: pubkey, cacerts: [gw.key]}",
			"policy: connection c: " + filepath.Join(dir, "gw.key") + ": neither"},
	} {
		_, err := ikePeers(parse(tc.local, tc.remote), refs)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s %s: got %v\nwant %s", tc.local, tc.remote, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("the error shows key material: %v", err)
		}
	}
}
