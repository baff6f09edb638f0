package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/transform"
)

// keKeywords maps strongSwan's key exchange keywords to IANA IDs
// (RFC 7296, Section 3.3.2; RFC 8031 for x25519; ML-KEM per
// draft-ietf-ipsecme-ikev2-mlkem).
var keKeywords = map[string]iana.KEID{
	"modp2048":   iana.KEMODP2048,
	"modp3072":   iana.KEMODP3072,
	"modp4096":   iana.KEMODP4096,
	"ecp256":     iana.KEECP256,
	"ecp384":     iana.KEECP384,
	"ecp521":     iana.KEECP521,
	"x25519":     iana.KECurve25519,
	"curve25519": iana.KECurve25519,
	"mlkem512":   iana.KEMLKEM512,
	"mlkem768":   iana.KEMLKEM768,
	"mlkem1024":  iana.KEMLKEM1024,
}

// weakKE are keywords strongSwan knows that RFC 8247, Section 2.4 says not
// to use (or that are too weak to offer); they get a specific error.
var weakKE = map[string]bool{
	"modp768": true, "modp1024": true, "modp1024s160": true, "modp1536": true,
	"modp2048s224": true, "modp2048s256": true, "ecp192": true, "ecp224": true,
}

// IKE keyword classes for the syntactic check of IKE proposals. strongSwan
// accepts several algorithms of each class in one proposal.
var (
	ikeAEAD = keywordSet(
		"aes128gcm16", "aes192gcm16", "aes256gcm16", "aes128gcm12", "aes192gcm12", "aes256gcm12",
		"aes128gcm8", "aes192gcm8", "aes256gcm8",
		"aes128gcm128", "aes192gcm128", "aes256gcm128", "aes128gcm96", "aes192gcm96", "aes256gcm96",
		"aes128gcm64", "aes192gcm64", "aes256gcm64",
		"chacha20poly1305",
	)
	ikeCipher = keywordSet("aes", "aes128", "aes192", "aes256", "aes128ctr", "aes192ctr", "aes256ctr")
	ikeInteg  = keywordSet("sha1", "sha", "sha256", "sha2_256", "sha384", "sha2_384", "sha512", "sha2_512", "aesxcbc", "aescmac")
	ikePRF    = keywordSet("prfsha1", "prfsha256", "prfsha384", "prfsha512", "prfaesxcbc", "prfaescmac")
)

func keywordSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// parseIKEProposal checks an IKE proposal such as
// "aes256gcm16-prfsha256-x25519" or "aes128-sha256-modp2048" keyword by
// keyword (RFC 7296, Section 3.3: an AEAD takes no integrity algorithm, other
// ciphers need one; every IKE proposal has a PRF and a key exchange method).
func parseIKEProposal(text string) (IKEProposal, error) {
	p := IKEProposal{Text: text}
	lower := strings.ToLower(text)
	if lower == "default" {
		p.Default = true
		return p, nil
	}
	aead, cipher := false, false
	for _, kw := range strings.Split(lower, "-") {
		switch {
		case kw == "":
			return p, errors.New("empty keyword (two dashes in a row?)")
		case ikeAEAD[kw]:
			aead = true
			p.Encr = append(p.Encr, kw)
		case ikeCipher[kw]:
			cipher = true
			p.Encr = append(p.Encr, kw)
		case ikeInteg[kw]:
			p.Integ = append(p.Integ, kw)
		case ikePRF[kw]:
			p.PRF = append(p.PRF, kw)
		case isAddKE(kw):
			// RFC 9370, Section 2.2.1: Additional Key Exchange 1 to 7,
			// strongSwan's "ke1_mlkem768" and "ke1_none".
			id := iana.KENone
			if kw[4:] != "none" {
				var err error
				if id, err = keKeyword(kw[4:]); err != nil {
					return p, err
				}
			}
			p.AddKE[kw[2]-'1'] = append(p.AddKE[kw[2]-'1'], id)
		default:
			id, err := keKeyword(kw)
			if err != nil {
				return p, err
			}
			p.KE = append(p.KE, id)
		}
	}
	switch {
	case len(p.Encr) == 0:
		return p, errors.New("no encryption algorithm (such as aes256gcm16 or aes256)")
	case aead && cipher:
		return p, errors.New("mixes combined-mode (AEAD) and plain ciphers: write them as two proposals")
	case aead && len(p.Integ) > 0:
		return p, errors.New("an AEAD takes no integrity algorithm (RFC 7296, Section 3.3)")
	case cipher && len(p.Integ) == 0:
		return p, errors.New("a cipher needs an integrity algorithm (such as sha256)")
	case aead && len(p.PRF) == 0:
		return p, errors.New("an AEAD proposal needs a PRF (such as prfsha256)")
	case len(p.KE) == 0:
		return p, errors.New("no key exchange method (such as x25519 or modp2048)")
	}
	return p, nil
}

func keKeyword(kw string) (iana.KEID, error) {
	if id, ok := keKeywords[kw]; ok {
		return id, nil
	}
	if weakKE[kw] {
		return 0, fmt.Errorf("key exchange method %q is too weak (RFC 8247, Section 2.4)", kw)
	}
	return 0, fmt.Errorf("unknown keyword %q", kw)
}

// parseChildProposal parses an ESP or AH proposal: a suite that
// transform.ParseESP or transform.ParseAH accepts ("aes256gcm16",
// "aes128-sha256", "sha256"), then optional key exchange methods for PFS and
// "esn" or "noesn" (RFC 7296, Section 3.3.2, transform type 5).
func parseChildProposal(text string, ah bool) (ChildProposal, error) {
	p := ChildProposal{Text: text}
	lower := strings.ToLower(text)
	if lower == "default" {
		p.Default, p.NoESN = true, true
		return p, nil
	}
	kws := strings.Split(lower, "-")
	parse := transform.ParseESP
	if ah {
		parse = transform.ParseAH
	}
	// The suite is the longest prefix of one or two keywords the transform
	// package accepts (a cipher and its integrity algorithm, or one).
	extra := len(kws) > 1 && childExtra(kws[1])
	var err2 error
	n := 0
	if len(kws) >= 2 {
		var s transform.Suite
		if s, err2 = parse(kws[0] + "-" + kws[1]); err2 == nil {
			p.Suite, n = s, 2
		}
	}
	if n == 0 {
		s, err1 := parse(kws[0])
		switch {
		case err1 != nil && (err2 == nil || extra):
			return p, trimPkg(err1)
		case err1 != nil:
			return p, trimPkg(err2)
		case err2 != nil && !extra && !errors.Is(err2, transform.ErrUnknownSuite):
			return p, trimPkg(err2)
		}
		p.Suite, n = s, 1
	}
	for _, kw := range kws[n:] {
		switch kw {
		case "esn":
			p.ESN = true
		case "noesn":
			p.NoESN = true
		case "":
			return p, errors.New("empty keyword (two dashes in a row?)")
		default:
			if isAddKE(kw) {
				// RFC 9370, Section 2.2.3: additional key exchanges of a
				// CHILD SA created or rekeyed with CREATE_CHILD_SA.
				id := iana.KENone
				if kw[4:] != "none" {
					var err error
					if id, err = keKeyword(kw[4:]); err != nil {
						return p, err
					}
				}
				p.AddKE[kw[2]-'1'] = append(p.AddKE[kw[2]-'1'], id)
				continue
			}
			id, err := keKeyword(kw)
			if err != nil {
				return p, fmt.Errorf("%w after the suite %s: expected key exchange methods, esn or noesn (one suite per proposal)", err, p.Suite.Name)
			}
			p.KE = append(p.KE, id)
		}
	}
	if !p.ESN {
		p.NoESN = true
	}
	for _, l := range p.AddKE {
		if len(l) > 0 && len(p.KE) == 0 {
			// RFC 9370, Section 2.2.4: the additional key exchanges
			// follow the first, SK(0), of CREATE_CHILD_SA.
			return p, errors.New("additional key exchanges (keN_) need a key exchange method for PFS (such as x25519)")
		}
	}
	return p, nil
}

// isAddKE reports whether kw is an Additional Key Exchange keyword,
// strongSwan's "ke1_mlkem768" or "ke1_none" (RFC 9370, Section 2.2.1).
func isAddKE(kw string) bool {
	return len(kw) > 4 && strings.HasPrefix(kw, "ke") && kw[2] >= '1' && kw[2] <= '7' && kw[3] == '_'
}

// childExtra reports whether kw may follow the suite in a child proposal.
func childExtra(kw string) bool {
	_, ok := keKeywords[kw]
	return ok || weakKE[kw] || kw == "esn" || kw == "noesn" || isAddKE(kw)
}

func trimPkg(err error) error { return errors.New(strings.TrimPrefix(err.Error(), "transform: ")) }
