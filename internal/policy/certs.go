package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ike"
)

// pubkeyAuth fills p's certificate authentication from the connection's
// local and remote sections: the certificates (the first file's first
// certificate is the end-entity one), the private key and the CAs. Errors
// name the file.
func pubkeyAuth(p *ike.Peer, c config.Connection) error {
	if c.Local.Method == config.AuthPubkey {
		p.LocalAuth = ike.AuthPubkey
		for _, f := range c.Local.Certs {
			certs, err := readCerts(f)
			if err != nil {
				return err
			}
			p.LocalCerts = append(p.LocalCerts, certs...)
		}
		if len(p.LocalCerts) == 0 {
			return errors.New("local.certs: no certificate")
		}
		if c.Local.Key == "" {
			return errors.New("local.key is required for auth: pubkey (the private key of the first certificate)")
		}
		key, err := readKey(c.Local.Key)
		if err != nil {
			return err
		}
		if !samePublic(key.Public(), p.LocalCerts[0].PublicKey) {
			return fmt.Errorf("%s: the private key does not belong to the certificate %q", c.Local.Key, p.LocalCerts[0].Subject)
		}
		p.LocalKey = key
	}
	if c.Remote.Method == config.AuthPubkey {
		p.RemoteAuth = ike.AuthPubkey
		// Certificates in remote.certs are trusted as they are, like
		// the CAs (a peer's own certificate as its trust anchor).
		for _, f := range append(append([]string(nil), c.Remote.CACerts...), c.Remote.Certs...) {
			certs, err := readCerts(f)
			if err != nil {
				return err
			}
			p.RemoteCAs = append(p.RemoteCAs, certs...)
		}
		if len(p.RemoteCAs) == 0 {
			return errors.New("remote.cacerts: no certificate")
		}
	}
	return nil
}

// readCerts reads the certificates of a PEM file (every CERTIFICATE block)
// or of a DER file (one certificate).
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	var out []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if out == nil {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("%s: neither a PEM CERTIFICATE nor a DER certificate", path)
		}
		out = append(out, c)
	}
	return out, nil
}

// readKey reads a private key: PEM or DER, PKCS#8, PKCS#1 (RSA) or SEC 1
// (EC). The key's bytes are never part of an error.
func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
	}
	var k any
	if k, err = x509.ParsePKCS8PrivateKey(der); err != nil {
		if k, err = x509.ParsePKCS1PrivateKey(der); err != nil {
			if k, err = x509.ParseECPrivateKey(der); err != nil {
				return nil, fmt.Errorf("%s: not a PKCS#8, PKCS#1 or SEC 1 private key", path)
			}
		}
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%s: unsupported private key type %T", path, k)
}

func samePublic(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
