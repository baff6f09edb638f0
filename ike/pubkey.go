package ike

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"

	"github.com/goipsec/goipsec/ike/ikewire"
	"github.com/goipsec/goipsec/ike/keys"
)

// AuthMethod is how one side of an IKE SA authenticates in IKE_AUTH (RFC
// 7296, Section 2.15).
type AuthMethod uint8

// Authentication methods.
const (
	// AuthPSK authenticates with a pre-shared key (Peer.PSK). It is the
	// zero value.
	AuthPSK AuthMethod = iota
	// AuthPubkey authenticates with an X.509 certificate and a digital
	// signature (RFC 7296, Section 3.8; RFC 7427).
	AuthPubkey
)

// String returns "psk" or "pubkey", as swanctl.conf spells them.
func (m AuthMethod) String() string {
	switch m {
	case AuthPSK:
		return "psk"
	case AuthPubkey:
		return "pubkey"
	}
	return fmt.Sprintf("auth(%d)", uint8(m))
}

// Hash Algorithm Identifiers of the SIGNATURE_HASH_ALGORITHMS notification
// (RFC 7427, Section 4; IANA "IKEv2 Hash Algorithms").
const (
	hashSHA1     = 1
	hashSHA256   = 2
	hashSHA384   = 3
	hashSHA512   = 4
	hashIdentity = 5
)

// ourSigHashes are the hash algorithms this host verifies signatures with.
// SHA-1 is not among them (RFC 8247, Section 3.2).
var ourSigHashes = []uint16{hashSHA256, hashSHA384, hashSHA512, hashIdentity}

// maxCerts bounds the CERT payloads of one message that are examined.
const maxCerts = 8

// sigHashesNotify is the SIGNATURE_HASH_ALGORITHMS notification (RFC 7427,
// Section 4).
func sigHashesNotify() *ikewire.Notify {
	var b []byte
	for _, h := range ourSigHashes {
		b = binary.BigEndian.AppendUint16(b, h)
	}
	return &ikewire.Notify{Type: ikewire.NotifySignatureHashAlgorithms, Data: b}
}

// parseSigHashes returns the peer's SIGNATURE_HASH_ALGORITHMS, nil if it
// sent none.
func parseSigHashes(pl []ikewire.Payload) []uint16 {
	n := findNotify(pl, ikewire.NotifySignatureHashAlgorithms)
	if n == nil {
		return nil
	}
	out := []uint16{}
	for d := n.Data; len(d) >= 2 && len(out) < 32; d = d[2:] {
		out = append(out, binary.BigEndian.Uint16(d))
	}
	return out
}

func hasHash(hs []uint16, h uint16) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// usesPubkey reports whether either side of p authenticates with a
// certificate.
func (p *Peer) usesPubkey() bool {
	return p != nil && (p.LocalAuth == AuthPubkey || p.RemoteAuth == AuthPubkey)
}

// certReqs returns the CERTREQ payload naming the CAs that verify the
// peers ps, nil if none of them authenticates its peer with a certificate.
// Its data is the SHA-1 hashes of the CAs' SubjectPublicKeyInfo (RFC 7296,
// Section 3.7).
func certReqs(ps ...*Peer) []ikewire.Payload {
	var data []byte
	seen := map[[sha1.Size]byte]bool{}
	for _, p := range ps {
		if p == nil || p.RemoteAuth != AuthPubkey {
			continue
		}
		for _, ca := range p.RemoteCAs {
			h := sha1.Sum(ca.RawSubjectPublicKeyInfo)
			if !seen[h] {
				seen[h] = true
				data = append(data, h[:]...)
			}
		}
	}
	if len(data) == 0 {
		return nil
	}
	return []ikewire.Payload{&ikewire.CertReq{Encoding: ikewire.CertX509Signature, Data: data}}
}

// certPayloads returns the CERT payloads of this host's certificate chain,
// end-entity first (RFC 7296, Section 3.6, encoding 4).
func (p *Peer) certPayloads() []ikewire.Payload {
	var out []ikewire.Payload
	for _, c := range p.LocalCerts {
		out = append(out, &ikewire.Cert{Encoding: ikewire.CertX509Signature, Data: c.Raw})
	}
	return out
}

// authPayload returns this host's AUTH payload over the signed octets of
// RFC 7296, Section 2.15: with the pre-shared key, or signed with
// Peer.LocalKey.
func (s *session) authPayload(x *ikeSA, msg, nonce []byte, initiator bool, id ikewire.Identification, remote Identity) (*ikewire.Auth, error) {
	if s.peer.LocalAuth != AuthPubkey {
		psk := s.psk(s.localID, remote)
		if psk == nil {
			return nil, fmt.Errorf("ike: no pre-shared key for %s and %s", s.localID, remote)
		}
		return &ikewire.Auth{Method: ikewire.AuthSharedKeyMIC, Data: authData(x, psk, msg, nonce, initiator, id, s.intAuth())}, nil
	}
	if s.peer.LocalKey == nil || len(s.peer.LocalCerts) == 0 {
		return nil, fmt.Errorf("ike: peer %q: pubkey authentication needs LocalCerts and LocalKey", s.peer.Name)
	}
	octets := keys.SignedOctets(msg, nonce, x.keys.MACedID(initiator, id.Body()), s.intAuth()...)
	return signAuth(s.peer.LocalKey, s.peer.RSAPSS, s.sigHashes, octets, s.rand())
}

// verifyAuth checks the peer's AUTH payload and, for certificates, its
// CERT payloads and identity (RFC 7296, Section 2.15). msg and nonce are
// the peer's IKE_SA_INIT message and this host's nonce; id is the peer's
// identification payload.
func (s *session) verifyAuth(x *ikeSA, auth *ikewire.Auth, pl []ikewire.Payload, msg, nonce []byte, initiator bool, id ikewire.Identification, remote Identity) error {
	if s.peer.RemoteAuth != AuthPubkey {
		if auth.Method != ikewire.AuthSharedKeyMIC {
			return fmt.Errorf("%w: the peer (%s) authenticates with method %d, not a pre-shared key", ErrAuthFailed, remote, auth.Method)
		}
		psk := s.psk(s.localID, remote)
		if psk == nil || !hmacEqual(auth.Data, authData(x, psk, msg, nonce, initiator, id, s.intAuth())) {
			return fmt.Errorf("%w: the peer's (%s) AUTH payload does not verify", ErrAuthFailed, remote)
		}
		return nil
	}
	if auth.Method == ikewire.AuthSharedKeyMIC {
		return fmt.Errorf("%w: the peer (%s) uses a pre-shared key where a certificate is required", ErrAuthFailed, remote)
	}
	leaf, err := s.peerCert(pl)
	if err != nil {
		return fmt.Errorf("%w: the peer (%s): %v", ErrAuthFailed, remote, err)
	}
	if err := matchCert(remote, leaf); err != nil {
		return fmt.Errorf("%w: the peer (%s): %v", ErrAuthFailed, remote, err)
	}
	octets := keys.SignedOctets(msg, nonce, x.keys.MACedID(initiator, id.Body()), s.intAuth()...)
	if err := verifySig(leaf.PublicKey, auth.Method, auth.Data, octets); err != nil {
		return fmt.Errorf("%w: the peer's (%s) AUTH signature: %v", ErrAuthFailed, remote, err)
	}
	return nil
}

// peerCert parses the peer's CERT payloads (X.509 Certificate - Signature;
// others are ignored) and verifies the chain of the first, the end-entity
// certificate, to Peer.RemoteCAs (RFC 7296, Section 3.6).
func (s *session) peerCert(pl []ikewire.Payload) (*x509.Certificate, error) {
	var leaf *x509.Certificate
	inter := x509.NewCertPool()
	n := 0
	for _, c := range findAll[*ikewire.Cert](pl) {
		if c.Encoding != ikewire.CertX509Signature {
			continue
		}
		if n++; n > maxCerts {
			break
		}
		cert, err := x509.ParseCertificate(c.Data)
		if err != nil {
			return nil, fmt.Errorf("invalid certificate: %v", err)
		}
		if leaf == nil {
			leaf = cert
		} else {
			inter.AddCert(cert)
		}
	}
	if leaf == nil {
		return nil, errors.New("no X.509 certificate (CERT payload, encoding 4)")
	}
	roots := x509.NewCertPool()
	for _, ca := range s.peer.RemoteCAs {
		roots.AddCert(ca)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %v", subject(leaf), err)
	}
	if err := checkUsage(leaf); err != nil {
		return nil, fmt.Errorf("certificate %q: %v", subject(leaf), err)
	}
	return leaf, nil
}

// oidIPsecIKE is id-kp-ipsecIKE (RFC 4945, Section 5.1.3.12), which
// crypto/x509 does not name.
var oidIPsecIKE = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 17}

// oidKeyUsage is the KeyUsage extension (RFC 5280, Section 4.2.1.3).
var oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

// checkUsage applies the key usage policy to the peer's end-entity
// certificate. A KeyUsage extension, if present, must allow
// digitalSignature or nonRepudiation, with which AUTH is signed (RFC
// 4945, Section 5.1.3.2). A certificate without ExtendedKeyUsage is
// accepted; with one, it must include id-kp-ipsecIKE or
// anyExtendedKeyUsage (RFC 4945, Section 5.1.3.12), or serverAuth or
// clientAuth, which the gateway certificates of common CAs carry, as
// strongSwan accepts them. Any other purpose (code signing, e-mail
// protection, ...) is refused.
func checkUsage(c *x509.Certificate) error {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidKeyUsage) && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
			return errors.New("its KeyUsage allows neither digitalSignature nor nonRepudiation (RFC 4945, Section 5.1.3.2)")
		}
	}
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageAny, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth:
			return nil
		}
	}
	for _, o := range c.UnknownExtKeyUsage {
		if o.Equal(oidIPsecIKE) {
			return nil
		}
	}
	return errors.New("its ExtendedKeyUsage has none of ipsecIKE, serverAuth, clientAuth or anyExtendedKeyUsage (RFC 4945, Section 5.1.3.12)")
}

// matchCert checks that the identity the peer claims is in its
// certificate: the subject for ID_DER_ASN1_DN, a subjectAltName for the
// other types (RFC 7296, Section 3.5; RFC 4945, Section 3.1).
func matchCert(id Identity, c *x509.Certificate) error {
	switch id.Type {
	case ikewire.ID_DER_ASN1_DN:
		if dnEqual(id.Data, c.RawSubject) {
			return nil
		}
	case ikewire.ID_FQDN:
		for _, n := range c.DNSNames {
			if strings.EqualFold(n, string(id.Data)) {
				return nil
			}
		}
	case ikewire.ID_RFC822_ADDR:
		for _, n := range c.EmailAddresses {
			if strings.EqualFold(n, string(id.Data)) {
				return nil
			}
		}
	case ikewire.ID_IPV4_ADDR, ikewire.ID_IPV6_ADDR:
		for _, a := range c.IPAddresses {
			if a.Equal(net.IP(id.Data)) {
				return nil
			}
		}
	default:
		return fmt.Errorf("identity type %d cannot be matched to a certificate", id.Type)
	}
	return fmt.Errorf("identity %s is not in its certificate %q", id, subject(c))
}

// subject returns a certificate's subject in strongSwan's syntax.
func subject(c *x509.Certificate) string {
	return Identity{Type: ikewire.ID_DER_ASN1_DN, Data: c.RawSubject}.String()
}

// Object identifiers of signature algorithms (RFC 7427, Appendix A; RFC
// 8420 for Ed25519).
var (
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidRSAPSS          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// pssParams is RSASSA-PSS-params (RFC 4055, Section 3.1); the trailer
// field keeps its default.
type pssParams struct {
	Hash       pkix.AlgorithmIdentifier `asn1:"explicit,tag:0"`
	MGF        pkix.AlgorithmIdentifier `asn1:"explicit,tag:1"`
	SaltLength int                      `asn1:"explicit,tag:2"`
}

// hashInfo maps a hash to its IKEv2 number, OIDs and crypto.Hash.
type hashInfo struct {
	ike                  uint16
	h                    crypto.Hash
	rsa, ecdsa, digestID asn1.ObjectIdentifier
}

var hashInfos = []hashInfo{
	{hashSHA256, crypto.SHA256, oidSHA256WithRSA, oidECDSAWithSHA256, oidSHA256},
	{hashSHA384, crypto.SHA384, oidSHA384WithRSA, oidECDSAWithSHA384, oidSHA384},
	{hashSHA512, crypto.SHA512, oidSHA512WithRSA, oidECDSAWithSHA512, oidSHA512},
}

func digest(h crypto.Hash, b []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(b)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(b)
		return d[:]
	default:
		d := sha512.Sum512(b)
		return d[:]
	}
}

func nullParams() asn1.RawValue { return asn1.NullRawValue }

// signAuth signs the octets with key and returns the AUTH payload: the
// Digital Signature method of RFC 7427 (Section 3) with the first SHA-2
// hash the peer announced (SHA-256 if it announced none), or for ECDSA,
// unless the peer announced the curve's hash, the method of RFC 4754.
func signAuth(key crypto.Signer, pss bool, peerHashes []uint16, octets []byte, rnd io.Reader) (*ikewire.Auth, error) {
	var alg pkix.AlgorithmIdentifier
	var h crypto.Hash
	var opts crypto.SignerOpts
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		// RFC 8420, Section 2: Ed25519 signs the octets themselves.
		alg = pkix.AlgorithmIdentifier{Algorithm: oidEd25519}
		opts = crypto.Hash(0)
	case *ecdsa.PublicKey:
		hi, classic, err := ecdsaHash(pub.Curve)
		if err != nil {
			return nil, err
		}
		if !hasHash(peerHashes, hi.ike) {
			// RFC 7427, Section 4: unless the peer announced the curve's
			// hash, use the method of RFC 4754, whose signature is r || s.
			sig, err := key.Sign(rnd, digest(hi.h, octets), hi.h)
			if err != nil {
				return nil, fmt.Errorf("ike: signing AUTH: %w", err)
			}
			raw, err := ecdsaRaw(sig, pub.Curve)
			if err != nil {
				return nil, err
			}
			return &ikewire.Auth{Method: classic, Data: raw}, nil
		}
		alg, h, opts = pkix.AlgorithmIdentifier{Algorithm: hi.ecdsa}, hi.h, hi.h
	case *rsa.PublicKey:
		hi := hashInfos[0]
		if peerHashes != nil {
			ok := false
			for _, c := range hashInfos {
				if hasHash(peerHashes, c.ike) {
					hi, ok = c, true
					break
				}
			}
			if !ok {
				return nil, errors.New("ike: the peer accepts no SHA-2 hash for RSA signatures")
			}
		}
		h, opts = hi.h, hi.h
		alg = pkix.AlgorithmIdentifier{Algorithm: hi.rsa, Parameters: nullParams()}
		if pss {
			// RFC 7427, Appendix A.4: RSASSA-PSS with MGF1 of the same
			// hash and a salt as long as the hash.
			hashAlg := pkix.AlgorithmIdentifier{Algorithm: hi.digestID, Parameters: nullParams()}
			mgfParams, err := asn1.Marshal(hashAlg)
			if err != nil {
				return nil, err
			}
			params, err := asn1.Marshal(pssParams{
				Hash:       hashAlg,
				MGF:        pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mgfParams}},
				SaltLength: hi.h.Size(),
			})
			if err != nil {
				return nil, err
			}
			alg = pkix.AlgorithmIdentifier{Algorithm: oidRSAPSS, Parameters: asn1.RawValue{FullBytes: params}}
			opts = &rsa.PSSOptions{SaltLength: hi.h.Size(), Hash: hi.h}
		}
	default:
		return nil, fmt.Errorf("ike: unsupported private key type %T", pub)
	}
	algDER, err := asn1.Marshal(alg)
	if err != nil || len(algDER) > 255 {
		return nil, fmt.Errorf("ike: encoding the signature algorithm: %v", err)
	}
	msg := octets
	if h != 0 {
		msg = digest(h, octets)
	}
	sig, err := key.Sign(rnd, msg, opts)
	if err != nil {
		return nil, fmt.Errorf("ike: signing AUTH: %w", err)
	}
	// RFC 7427, Section 3: length of the AlgorithmIdentifier, the
	// AlgorithmIdentifier, the signature.
	data := append([]byte{byte(len(algDER))}, algDER...)
	return &ikewire.Auth{Method: ikewire.AuthDigitalSignature, Data: append(data, sig...)}, nil
}

// ecdsaHash returns the hash that goes with a curve and its RFC 4754
// authentication method (RFC 4754, Section 3).
func ecdsaHash(c elliptic.Curve) (hashInfo, ikewire.AuthMethod, error) {
	switch c {
	case elliptic.P256():
		return hashInfos[0], ikewire.AuthECDSA256, nil
	case elliptic.P384():
		return hashInfos[1], ikewire.AuthECDSA384, nil
	case elliptic.P521():
		return hashInfos[2], ikewire.AuthECDSA521, nil
	}
	return hashInfo{}, 0, fmt.Errorf("ike: unsupported ECDSA curve %s", c.Params().Name)
}

type ecdsaSig struct{ R, S *big.Int }

// ecdsaRaw converts a DER ECDSA-Sig-Value into r || s of the curve's size
// (RFC 4754, Section 7).
func ecdsaRaw(der []byte, c elliptic.Curve) ([]byte, error) {
	var sig ecdsaSig
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) != 0 {
		return nil, errors.New("ike: invalid ECDSA signature encoding")
	}
	n := (c.Params().BitSize + 7) / 8
	out := make([]byte, 2*n)
	sig.R.FillBytes(out[:n])
	sig.S.FillBytes(out[n:])
	return out, nil
}

// verifySig verifies an AUTH payload's signature of the octets with the
// peer's public key. It accepts the Digital Signature method (RFC 7427)
// with SHA-2 hashes, RSASSA-PSS and Ed25519, and the ECDSA methods of RFC
// 4754. RSA with SHA-1 (method 1 and SHA-1 algorithm identifiers) is
// refused (RFC 8247, Sections 3.2 and 3.3).
func verifySig(pub any, m ikewire.AuthMethod, data, octets []byte) error {
	switch m {
	case ikewire.AuthECDSA256, ikewire.AuthECDSA384, ikewire.AuthECDSA521:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("method %d needs an ECDSA key, the certificate has %T", m, pub)
		}
		hi, classic, err := ecdsaHash(k.Curve)
		if err != nil {
			return err
		}
		if classic != m {
			return fmt.Errorf("method %d does not match the certificate's curve %s", m, k.Curve.Params().Name)
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		if len(data) != 2*n {
			return errors.New("wrong signature length")
		}
		r, s := new(big.Int).SetBytes(data[:n]), new(big.Int).SetBytes(data[n:])
		if !ecdsa.Verify(k, digest(hi.h, octets), r, s) {
			return errors.New("invalid signature")
		}
		return nil
	case ikewire.AuthRSASig:
		return errors.New("method 1 (RSA with SHA-1) is refused (RFC 8247, Section 3.2); use the Digital Signature method (RFC 7427)")
	case ikewire.AuthDigitalSignature:
	default:
		return fmt.Errorf("authentication method %d is not implemented", m)
	}
	if len(data) < 1 || len(data) < 1+int(data[0]) {
		return errors.New("truncated Digital Signature AUTH data")
	}
	algDER, sig := data[1:1+int(data[0])], data[1+int(data[0]):]
	var alg pkix.AlgorithmIdentifier
	if rest, err := asn1.Unmarshal(algDER, &alg); err != nil || len(rest) != 0 {
		return errors.New("invalid signature AlgorithmIdentifier")
	}
	switch {
	case alg.Algorithm.Equal(oidEd25519):
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("Ed25519 signature, but the certificate has %T", pub)
		}
		if !ed25519.Verify(k, octets, sig) {
			return errors.New("invalid signature")
		}
		return nil
	case alg.Algorithm.Equal(oidRSAPSS):
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("RSASSA-PSS signature, but the certificate has %T", pub)
		}
		var p pssParams
		if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return errors.New("invalid RSASSA-PSS parameters")
		}
		hi, ok := hashByDigestOID(p.Hash.Algorithm)
		if !ok {
			return fmt.Errorf("RSASSA-PSS with hash %s is not accepted", p.Hash.Algorithm)
		}
		var mgfHash pkix.AlgorithmIdentifier
		if !p.MGF.Algorithm.Equal(oidMGF1) {
			return errors.New("RSASSA-PSS mask generation function is not MGF1")
		}
		if rest, err := asn1.Unmarshal(p.MGF.Parameters.FullBytes, &mgfHash); err != nil || len(rest) != 0 || !mgfHash.Algorithm.Equal(hi.digestID) {
			return errors.New("RSASSA-PSS MGF1 hash differs from the message hash")
		}
		if p.SaltLength < 0 || p.SaltLength > k.Size() {
			return errors.New("invalid RSASSA-PSS salt length")
		}
		if err := rsa.VerifyPSS(k, hi.h, digest(hi.h, octets), sig, &rsa.PSSOptions{SaltLength: p.SaltLength, Hash: hi.h}); err != nil {
			return errors.New("invalid signature")
		}
		return nil
	}
	for _, hi := range hashInfos {
		switch {
		case alg.Algorithm.Equal(hi.rsa):
			k, ok := pub.(*rsa.PublicKey)
			if !ok {
				return fmt.Errorf("RSA signature, but the certificate has %T", pub)
			}
			if err := rsa.VerifyPKCS1v15(k, hi.h, digest(hi.h, octets), sig); err != nil {
				return errors.New("invalid signature")
			}
			return nil
		case alg.Algorithm.Equal(hi.ecdsa):
			k, ok := pub.(*ecdsa.PublicKey)
			if !ok {
				return fmt.Errorf("ECDSA signature, but the certificate has %T", pub)
			}
			if !ecdsa.VerifyASN1(k, digest(hi.h, octets), sig) {
				return errors.New("invalid signature")
			}
			return nil
		}
	}
	return fmt.Errorf("signature algorithm %s is not accepted (SHA-1 is refused, RFC 8247)", alg.Algorithm)
}

func hashByDigestOID(o asn1.ObjectIdentifier) (hashInfo, bool) {
	for _, hi := range hashInfos {
		if o.Equal(hi.digestID) {
			return hi, true
		}
	}
	return hashInfo{}, false
}

func hmacEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

func anyPubkey(ps []*Peer) bool {
	for _, p := range ps {
		if p.usesPubkey() {
			return true
		}
	}
	return false
}
