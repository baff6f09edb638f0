// Package keys is the IKEv2 key schedule of RFC 7296, Sections 2.13 to 2.18,
// with the additional key exchanges of RFC 9370, typed by stage so that a
// key cannot be used where it does not belong:
//
//	SKEYSEED  = prf(Ni | Nr, g^ir)                        NewSKEYSEED
//	          = prf(SK_d (old), g^ir (new) | Ni | Nr)     (*IKESAKeys).Rekey
//	IKESAKeys = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)     SKEYSEED.Derive
//	          after an additional key exchange            (*IKESAKeys).AddKE
//	ChildKeys = prf+(SK_d, [g^ir (new) |] Ni | Nr)        (*IKESAKeys).Child
//	AUTH      = prf(prf(secret, "Key Pad for IKEv2"), SignedOctets)   PSKAuth
//
// SK_d and SK_pi/SK_pr never leave the package: they are used only through
// the methods that RFC 7296 defines for them. SK_e and SK_a are handed out
// for the SK payload. Key values print as "<redacted>" with fmt and log/slog.
//
// The package does no I/O and keeps no global state; its values are
// immutable after construction and safe for concurrent use, except Destroy
// and DropAuth.
package keys

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/transform"
)

// redacted is what every key type prints.
const redacted = "<redacted>"

// maxPRFPlusIterations is the limit of prf+: its counter is one octet
// (RFC 7296, Section 2.13).
const maxPRFPlusIterations = 255

// PRFPlus returns the first n bytes of prf+(key, seed) = T1 | T2 | ... with
// T1 = prf(key, seed | 0x01) and Tk = prf(key, Tk-1 | seed | k) (RFC 7296,
// Section 2.13). n may be at most 255 times the PRF's output size.
func PRFPlus(prf transform.PRF, key, seed []byte, n int) ([]byte, error) {
	if prf.Size() == 0 {
		return nil, errors.New("keys: invalid PRF")
	}
	if n < 0 || n > maxPRFPlusIterations*prf.Size() {
		return nil, fmt.Errorf("keys: prf+ cannot produce %d bytes with %s: at most 255 iterations of %d bytes (RFC 7296, Section 2.13)", n, prf, prf.Size())
	}
	out := make([]byte, 0, n+prf.Size())
	var t []byte
	for i := 1; len(out) < n; i++ {
		t = prf.Sum(key, t, seed, []byte{byte(i)})
		out = append(out, t...)
	}
	clear(out[n:cap(out)])
	return out[:n:n], nil
}

// Suite is the set of transforms negotiated for an IKE SA that the key
// schedule needs: the PRF, the encryption algorithm and, unless it is an
// AEAD, the integrity algorithm (IntegNone for AEADs).
type Suite struct {
	PRF   iana.PRFID
	Encr  transform.EncrAlg
	Integ iana.IntegID
}

// lengths returns the PRF and the lengths of SK_e and SK_a, or an error for
// a suite that cannot protect an IKE SA.
func (s Suite) lengths() (prf transform.PRF, eLen, aLen int, err error) {
	prf, err = transform.NewPRF(s.PRF)
	if err != nil {
		return transform.PRF{}, 0, 0, fmt.Errorf("keys: %w", err)
	}
	eLen = s.Encr.KeyLen()
	if eLen == 0 {
		return transform.PRF{}, 0, 0, fmt.Errorf("keys: encryption %s cannot protect an IKE SA", s.Encr)
	}
	switch {
	case s.Encr.AEAD() && s.Integ != iana.IntegNone:
		return transform.PRF{}, 0, 0, fmt.Errorf("keys: %s is a combined-mode algorithm and takes no integrity algorithm (RFC 7296, Section 3.3)", s.Encr)
	case s.Encr.AEAD():
		// RFC 5282, Section 7.1: AEADs use no SK_ai/SK_ar.
	default:
		aLen = transform.IntegKeyLen(s.Integ)
		if aLen == 0 {
			return transform.PRF{}, 0, 0, fmt.Errorf("keys: %s needs an integrity algorithm, got transform %d", s.Encr, s.Integ)
		}
	}
	return prf, eLen, aLen, nil
}

// SKEYSEED is the secret from which the keys of one IKE SA are derived
// (RFC 7296, Section 2.14). The zero value is invalid.
type SKEYSEED struct {
	b []byte
}

// NewSKEYSEED returns SKEYSEED = prf(Ni | Nr, g^ir) for a new IKE SA
// (RFC 7296, Section 2.14), where gir is the shared secret of the
// IKE_SA_INIT key exchange (as transform returns it: padded to the group's
// length). For AES-XCBC-PRF-128 only the first 64 bits of Ni and of Nr form
// the key, as Section 2.14 requires for PRFs with fixed key sizes. Ni and
// Nr are the nonces without payload headers.
func NewSKEYSEED(prf iana.PRFID, ni, nr, gir []byte) (SKEYSEED, error) {
	p, err := transform.NewPRF(prf)
	if err != nil {
		return SKEYSEED{}, fmt.Errorf("keys: %w", err)
	}
	if len(gir) == 0 {
		return SKEYSEED{}, errors.New("keys: empty shared secret")
	}
	if prf == iana.PRFAES128XCBC {
		if len(ni) < 8 || len(nr) < 8 {
			return SKEYSEED{}, fmt.Errorf("keys: nonces of %d and %d bytes are too short (RFC 7296, Section 2.10: at least 16)", len(ni), len(nr))
		}
		ni, nr = ni[:8], nr[:8]
	}
	return SKEYSEED{b: p.Sum(concat(ni, nr), gir)}, nil
}

// Derive returns the keys of the IKE SA: {SK_d | SK_ai | SK_ar | SK_ei |
// SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) with the
// suite's PRF (RFC 7296, Section 2.14; for a rekeyed SA the new SA's PRF,
// Section 2.18). SK_d, SK_pi and SK_pr are as long as the PRF's output;
// SK_a as the integrity algorithm's key, and absent for AEADs; SK_e as the
// encryption key plus, for AES-GCM and ChaCha20-Poly1305, the 4-byte salt
// (RFC 5282, Section 7.1; RFC 7634, Section 4). The nonces and SPIs are
// copied and kept for AddKE.
func (s SKEYSEED) Derive(suite Suite, ni, nr, spii, spir []byte) (*IKESAKeys, error) {
	if len(s.b) == 0 {
		return nil, errors.New("keys: zero SKEYSEED; get one from NewSKEYSEED or Rekey")
	}
	if len(spii) != 8 || len(spir) != 8 {
		return nil, fmt.Errorf("keys: IKE SPIs must be 8 bytes, got %d and %d (RFC 7296, Section 3.1)", len(spii), len(spir))
	}
	prf, eLen, aLen, err := suite.lengths()
	if err != nil {
		return nil, err
	}
	seed := concat(ni, nr, spii, spir)
	n := 3*prf.Size() + 2*aLen + 2*eLen
	km, err := PRFPlus(prf, s.b, seed, n)
	if err != nil {
		return nil, err
	}
	k := &IKESAKeys{suite: suite, prf: prf, seed: seed, nonces: len(ni) + len(nr), niLen: len(ni)}
	take := func(l int) []byte {
		b := km[:l:l]
		km = km[l:]
		return b
	}
	k.d = take(prf.Size())
	k.ai, k.ar = take(aLen), take(aLen)
	k.ei, k.er = take(eLen), take(eLen)
	k.pi, k.pr = take(prf.Size()), take(prf.Size())
	return k, nil
}

// String returns "<redacted>".
func (s SKEYSEED) String() string { return redacted }

// Format writes "<redacted>" for every verb, so that no fmt verb prints
// the secret.
func (s SKEYSEED) Format(f fmt.State, _ rune) { f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer and returns "<redacted>".
func (s SKEYSEED) LogValue() slog.Value { return slog.StringValue(redacted) }

// IKESAKeys are the keys of one IKE SA. Get them from SKEYSEED.Derive or
// AddKE. They are immutable and safe for concurrent use (except Destroy).
type IKESAKeys struct {
	suite  Suite
	prf    transform.PRF
	seed   []byte // Ni | Nr | SPIi | SPIr
	nonces int    // len(Ni) + len(Nr), the prefix of seed
	niLen  int

	d, ai, ar, ei, er, pi, pr []byte
}

// Suite returns the transforms the keys were derived for.
func (k *IKESAKeys) Suite() Suite { return k.suite }

// SKei returns SK_ei, the encryption key (and salt, for AEADs) of the
// messages the original initiator sends (RFC 7296, Section 2.14). The
// caller must not modify it.
func (k *IKESAKeys) SKei() []byte { return k.ei }

// SKer returns SK_er, the encryption key of the messages the original
// responder sends.
func (k *IKESAKeys) SKer() []byte { return k.er }

// SKai returns SK_ai, the integrity key of the messages the original
// initiator sends; nil for AEADs.
func (k *IKESAKeys) SKai() []byte { return k.ai }

// SKar returns SK_ar, the integrity key of the messages the original
// responder sends; nil for AEADs.
func (k *IKESAKeys) SKar() []byte { return k.ar }

// MACedID returns prf(SK_pi, RestOfInitIDPayload) if initiator is true, and
// prf(SK_pr, RestOfRespIDPayload) if it is false (RFC 7296, Section 2.15):
// idPayloadBody is the ID payload without its 4-byte generic header,
// starting with the ID Type. initiator names the original initiator of the
// IKE SA, whose ID it is.
// After DropAuth it returns nil.
func (k *IKESAKeys) MACedID(initiator bool, idPayloadBody []byte) []byte {
	if k.pi == nil {
		return nil
	}
	return k.prf.Sum(k.skp(initiator), idPayloadBody)
}

// IntAuth returns prf(SK_pi, data...) if initiator is true, prf(SK_pr,
// data...) otherwise: the IntAuth chain of the IKE_INTERMEDIATE exchange,
// IntAuth_[i|r]N = prf(SK_p[i|r], IntAuth_[i|r]N-1 | IntAuth_[i|r]N_A |
// IntAuth_[i|r]N_P), computed with the keys in force when message N was
// sent (RFC 9242, Section 3.3.1). After DropAuth it returns nil.
func (k *IKESAKeys) IntAuth(initiator bool, data ...[]byte) []byte {
	if k.pi == nil {
		return nil
	}
	return k.prf.Sum(k.skp(initiator), data...)
}

// DropAuth overwrites with zeros and forgets what only the initial
// exchanges use: SK_pi and SK_pr, which only AUTH (RFC 7296, Section 2.15)
// and IKE_INTERMEDIATE's IntAuth (RFC 9242, Section 3.3.1) take, and the
// nonces and SPIs that AddKE derives from (RFC 9370, Section 2.2.2). The
// other keys move to a buffer of their own length. Call it once the IKE SA
// is authenticated (or, for the successor of a rekey, which does not
// authenticate, once derived): an established IKE SA keeps only SK_d
// (RFC 7296, Sections 2.17 and 2.18) and the SK_e and SK_a keys.
// Afterwards MACedID and IntAuth return nil and AddKE fails. Copies that
// callers made of the keys (SKei and the like) are overwritten as well.
func (k *IKESAKeys) DropAuth() {
	if k.pi == nil {
		return
	}
	keep := [][]byte{k.d, k.ai, k.ar, k.ei, k.er}
	km := concat(keep...)
	for i, b := range keep {
		keep[i], km = km[:len(b):len(b)], km[len(b):]
		clear(b)
	}
	k.d, k.ai, k.ar, k.ei, k.er = keep[0], keep[1], keep[2], keep[3], keep[4]
	clear(k.pi)
	clear(k.pr)
	clear(k.seed)
	k.pi, k.pr, k.seed, k.nonces, k.niLen = nil, nil, nil, 0, 0
}

func (k *IKESAKeys) skp(initiator bool) []byte {
	if initiator {
		return k.pi
	}
	return k.pr
}

// Rekey returns the SKEYSEED of the IKE SA that replaces this one in a
// CREATE_CHILD_SA exchange: prf(SK_d (old), g^ir (new) | Ni | Nr), with this
// (old) SA's PRF (RFC 7296, Section 2.18). With additional key exchanges
// secrets are the shared secrets in order and the nonces follow the first:
// prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)) (RFC 9370, Section
// 2.2.4). A key exchange is required (Section 2.18: MUST NOT propose NONE).
// ni and nr are the nonces of the rekeying exchange. Derive the new keys
// with the new SA's suite and SPIs.
func (k *IKESAKeys) Rekey(ni, nr []byte, secrets ...[]byte) (SKEYSEED, error) {
	if len(secrets) == 0 || len(secrets[0]) == 0 {
		return SKEYSEED{}, errors.New("keys: rekeying an IKE SA requires a new key exchange (RFC 7296, Section 2.18)")
	}
	return SKEYSEED{b: k.prf.Sum(k.d, rekeyData(ni, nr, secrets)...)}, nil
}

// rekeyData returns [SK(0) |] Ni | Nr [| SK(1) | ... | SK(n)], the data of
// RFC 7296, Sections 2.17 and 2.18, extended by RFC 9370, Section 2.2.4.
func rekeyData(ni, nr []byte, secrets [][]byte) [][]byte {
	out := make([][]byte, 0, len(secrets)+2)
	if len(secrets) > 0 {
		out = append(out, secrets[0])
	}
	out = append(out, ni, nr)
	if len(secrets) > 1 {
		out = append(out, secrets[1:]...)
	}
	return out
}

// AddKE returns the keys that replace these after an additional key
// exchange of IKE_INTERMEDIATE (RFC 9370, Section 2.2.2):
//
//	SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)
//	{SK_d(n) | SK_ai(n) | ... | SK_pr(n)} = prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr)
//
// with the nonces and SPIs of the IKE SA and the same suite.
func (k *IKESAKeys) AddKE(secret []byte) (*IKESAKeys, error) {
	if len(secret) == 0 {
		return nil, errors.New("keys: empty shared secret")
	}
	if k.seed == nil {
		return nil, errors.New("keys: AddKE after DropAuth: the IKE SA's initial exchanges are over")
	}
	ni, nr := k.seed[:k.niLen], k.seed[k.niLen:k.nonces]
	s := SKEYSEED{b: k.prf.Sum(k.d, secret, ni, nr)}
	spis := k.seed[k.nonces:]
	return s.Derive(k.suite, ni, nr, spis[:8], spis[8:])
}

// Child returns the keys of a Child SA of suite s (from transform.ParseESP
// or transform.ParseAH, or transform.SuiteFor): KEYMAT = prf+(SK_d, Ni |
// Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) with a key exchange for perfect
// forward secrecy (RFC 7296, Section 2.17), or with the shared secrets of
// several key exchanges in order, prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... |
// SK(n)) (RFC 9370, Section 2.2.4). ni and nr are the nonces of the exchange that creates the Child
// SA: of IKE_SA_INIT for the first one, of CREATE_CHILD_SA after.
func (k *IKESAKeys) Child(s transform.Suite, ni, nr []byte, secrets ...[]byte) (*ChildKeys, error) {
	l := s.KeyLen()
	if l == 0 {
		return nil, fmt.Errorf("keys: invalid Child SA suite %q", s.Name)
	}
	for _, sec := range secrets {
		if len(sec) == 0 {
			return nil, errors.New("keys: empty shared secret")
		}
	}
	seed := concat(rekeyData(ni, nr, secrets)...)
	km, err := PRFPlus(k.prf, k.d, seed, 2*l)
	clear(seed)
	if err != nil {
		return nil, err
	}
	// Section 2.17: the keys of the SA carrying data from the initiator to
	// the responder come first, each as encryption key then integrity key,
	// which is the layout of transform.Suite.KeyLen.
	return &ChildKeys{suite: s, i: km[:l:l], r: km[l:]}, nil
}

// Destroy overwrites the keys with zeros. The keys must not be used after.
// Other copies made by callers (of SKei and the like) are not affected.
func (k *IKESAKeys) Destroy() {
	for _, b := range [][]byte{k.d, k.ai, k.ar, k.ei, k.er, k.pi, k.pr} {
		clear(b)
	}
}

// String returns "<redacted>".
func (k IKESAKeys) String() string { return redacted }

// Format writes "<redacted>" for every verb.
func (k IKESAKeys) Format(f fmt.State, _ rune) { f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer and returns "<redacted>".
func (k IKESAKeys) LogValue() slog.Value { return slog.StringValue(redacted) }

// ChildKeys are the keys of one Child SA: the KEYMAT of each direction, laid
// out as transform.Suite.NewESP and NewAH take it. "Initiator" is the
// initiator of the exchange that created the Child SA, which may differ
// from the IKE SA's original initiator.
type ChildKeys struct {
	suite transform.Suite
	i, r  []byte
}

// Suite returns the suite the keys are for.
func (c *ChildKeys) Suite() transform.Suite { return c.suite }

// InitiatorToResponder returns the KEYMAT of the SA that carries traffic
// from the exchange's initiator to its responder: the initiator's outbound
// SA and the responder's inbound SA. The caller must not modify it.
func (c *ChildKeys) InitiatorToResponder() []byte { return c.i }

// ResponderToInitiator returns the KEYMAT of the SA that carries traffic
// from the exchange's responder to its initiator.
func (c *ChildKeys) ResponderToInitiator() []byte { return c.r }

// Outbound returns the KEYMAT of our outbound SA; initiator says whether we
// initiated the exchange that created the Child SA.
func (c *ChildKeys) Outbound(initiator bool) []byte {
	if initiator {
		return c.i
	}
	return c.r
}

// Inbound returns the KEYMAT of our inbound SA; initiator says whether we
// initiated the exchange that created the Child SA.
func (c *ChildKeys) Inbound(initiator bool) []byte { return c.Outbound(!initiator) }

// Destroy overwrites the keys with zeros.
func (c *ChildKeys) Destroy() { clear(c.i); clear(c.r) }

// String returns "<redacted>".
func (c ChildKeys) String() string { return redacted }

// Format writes "<redacted>" for every verb.
func (c ChildKeys) Format(f fmt.State, _ rune) { f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer and returns "<redacted>".
func (c ChildKeys) LogValue() slog.Value { return slog.StringValue(redacted) }

// keyPad is the fixed string of the shared-key AUTH computation (RFC 7296,
// Section 2.15), without a terminating NUL.
const keyPad = "Key Pad for IKEv2"

// SignedOctets returns the octets that AUTH covers (RFC 7296, Section 2.15):
// the first message this side sent (IKE_SA_INIT request or response, whole
// and as sent), the peer's nonce data (Nr for the initiator, Ni for the
// responder), and this side's MACedID. After IKE_INTERMEDIATE exchanges,
// intAuth is IntAuth_iN | IntAuth_rN | IKE_AUTH_MID, appended last (RFC
// 9242, Section 3.3.2).
func SignedOctets(realMessage, nonce, macedID []byte, intAuth ...[]byte) []byte {
	return concat(append([][]byte{realMessage, nonce, macedID}, intAuth...)...)
}

// PSKAuth returns the AUTH data of Shared Key Message Integrity Code
// authentication: prf(prf(secret, "Key Pad for IKEv2"), signedOctets), with
// the IKE SA's PRF (RFC 7296, Section 2.15). Compare it with the received
// AUTH data with crypto/subtle.ConstantTimeCompare.
func PSKAuth(prf transform.PRF, secret, signedOctets []byte) []byte {
	k := prf.Sum(secret, []byte(keyPad))
	defer clear(k)
	return prf.Sum(k, signedOctets)
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
