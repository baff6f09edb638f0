package policysource

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/internal/etcdtest"
)

// TestEtcdTLS: with cert, key and ca set, the source reads a cluster that
// serves clients over TLS and demands client certificates
// (--client-cert-auth); without the client certificate it cannot.
func TestEtcdTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, x509.KeyUsageCertSign
	})
	newCert(t, dir, "server", ca, caKey, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	})
	newCert(t, dir, "client", ca, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	f := func(name string) string { return filepath.Join(dir, name) }
	cl := etcdtest.StartTLS(t, 1, "127.0.0.1", "", &etcdtest.TLS{ServerCert: f("server.pem"), ServerKey: f("server.key"),
		ClientCA: f("ca.pem"), ClientCert: f("client.pem"), ClientKey: f("client.key")})
	cl.Put(prefix+"10-base", policyDoc("base", ""))

	e := config.EtcdSource{Endpoints: cl.Endpoints, Prefix: prefix, CertFile: f("client.pem"), KeyFile: f("client.key"),
		CAFile: f("ca.pem"), DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, Resync: time.Minute}
	get := func(e config.EtcdSource) ([]Document, error) {
		c, err := Dial(e)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		docs, _, err := c.Get(ctx, prefix)
		return docs, err
	}
	if docs, err := get(e); err != nil || len(docs) != 1 || docs[0].Key != prefix+"10-base" {
		t.Errorf("with the client certificate: %v, %v", docs, err)
	}
	e.CertFile, e.KeyFile = "", ""
	if docs, err := get(e); err == nil {
		t.Errorf("without a client certificate the cluster answered: %v", docs)
	}
}

// newCert writes NAME.pem and NAME.key (mode 0600) in dir: a certificate
// signed by parent (self-signed if nil), shaped by edit.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, edit func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	edit(tmpl)
	signer, signerKey := parent, parentKey
	if parent == nil {
		signer, signerKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
