// Package testca makes a certificate authority and host certificates for
// tests and examples: ECDSA P-256 keys, each host certificate with the
// host's IP addresses in its subjectAltName (RFC 4945, Section 5.1.3.6), so
// that a peer's IKE identity, its address, is bound to the address it
// speaks from. The files are PEM, keys mode 0600, as ipsecd reads them.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// CA is a certificate authority whose files live in Dir.
type CA struct {
	// Dir holds ca.pem and the hosts' NAME.pem and NAME.key.
	Dir string
	// Cert is the CA's certificate, written to ca.pem.
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

// New creates a CA named name and writes its certificate to dir/ca.pem.
func New(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testca: %w", err)
	}
	tmpl := template(name)
	tmpl.IsCA, tmpl.KeyUsage = true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("testca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testca: %w", err)
	}
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return &CA{Dir: dir, Cert: cert, key: key}, nil
}

// Path returns the path of file name in the CA's directory.
func (ca *CA) Path(name string) string { return filepath.Join(ca.Dir, name) }

// Host issues a certificate for the host name with addrs in its
// subjectAltName and writes NAME.pem and NAME.key (mode 0600).
func (ca *CA) Host(name string, addrs ...netip.Addr) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("testca: %w", err)
	}
	tmpl := template(name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	for _, a := range addrs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("testca: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("testca: %w", err)
	}
	if err := writePEM(ca.Path(name+".pem"), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writePEM(ca.Path(name+".key"), "PRIVATE KEY", pk, 0o600)
}

func template(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + serial.Add(1)), Subject: pkix.Name{CommonName: cn, Organization: []string{"goipsec test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), BasicConstraintsValid: true,
	}
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("testca: %w", err)
	}
	return os.Chmod(path, mode)
}
