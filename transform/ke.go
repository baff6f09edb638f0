package transform

// Key exchange methods of IKEv2 (Transform Type 4, RFC 7296 Section 3.3.2;
// renamed by RFC 9370): finite-field Diffie-Hellman over the MODP groups of
// RFC 3526, elliptic-curve Diffie-Hellman over the NIST curves (RFC 5903)
// and Curve25519 (RFC 8031), and the ML-KEM key encapsulation mechanisms
// (FIPS 203) used as additional key exchanges (RFC 9370).

import (
	"crypto/ecdh"
	"crypto/mlkem"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"

	"github.com/goipsec/goipsec/iana"
)

// ErrInvalidKE is wrapped by Finish and KERespond when the peer's key
// exchange data is not acceptable: a wrong length, a MODP value outside
// 1 < y < p-1, a point not on the curve, an X25519 value that gives the
// all-zero shared secret, or an ML-KEM key that fails the FIPS 203 input
// checks (RFC 6989, Section 2; RFC 5903, Section 9; RFC 8031, Section 2).
// The IKE engine answers it with INVALID_SYNTAX (RFC 7296, Section 3.10.1).
var ErrInvalidKE = errors.New("transform: invalid key exchange data")

// KEInitiator is the state of the side that sends its key exchange data
// first: the initiator of IKE_SA_INIT, CREATE_CHILD_SA or IKE_INTERMEDIATE.
// For Diffie-Hellman methods it holds a private key and Public is the public
// value; for ML-KEM it holds a decapsulation key and Public is the
// encapsulation key (RFC 9370, Section 2.2.2). The responder answers with
// KERespond. A KEInitiator is not safe for concurrent use. Its String and
// GoString methods never show the private key.
type KEInitiator interface {
	// ID returns the key exchange method.
	ID() iana.KEID
	// Public returns the Key Exchange Data to send in the KE payload
	// (RFC 7296, Section 3.4). The caller must not modify it.
	Public() []byte
	// Finish takes the responder's Key Exchange Data and returns the shared
	// secret: g^ir for Diffie-Hellman, padded to the length of the group,
	// or the ML-KEM shared key. Errors wrap ErrInvalidKE.
	Finish(peerData []byte) (secret []byte, err error)
}

// NewKEInitiator generates a fresh key pair for method id, drawing the
// private key from rand (crypto/rand.Reader if rand is nil). The methods are
// MODP-2048, -3072 and -4096 (groups 14, 15, 16; RFC 3526), ECP-256, -384
// and -521 (groups 19, 20, 21; RFC 5903), Curve25519 (31; RFC 8031) and
// ML-KEM-768 and -1024 (36, 37; FIPS 203 through crypto/mlkem, seeded with
// 64 bytes from rand). Known methods this package does not implement wrap
// ErrNotImplemented, weak ones ErrWeak, others ErrUnknownSuite.
func NewKEInitiator(id iana.KEID, rand io.Reader) (KEInitiator, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	if err := keSupported(id); err != nil {
		return nil, err
	}
	switch {
	case modpGroupFor(id) != nil:
		g := modpGroupFor(id)
		x := make([]byte, g.expLen)
		for range 16 {
			if _, err := io.ReadFull(rand, x); err != nil {
				return nil, fmt.Errorf("transform: %s: reading randomness: %w", KEName(id), err)
			}
			k, err := newMODP(g, x)
			clear(x)
			if err == nil {
				return k, nil
			}
		}
	case id == iana.KEMLKEM768 || id == iana.KEMLKEM1024:
		seed := make([]byte, mlkem.SeedSize)
		defer clear(seed)
		if _, err := io.ReadFull(rand, seed); err != nil {
			return nil, fmt.Errorf("transform: %s: reading randomness: %w", KEName(id), err)
		}
		return newMLKEM(id, seed)
	default:
		c := ecCurves[id]
		b := make([]byte, c.scalarLen)
		defer clear(b)
		// Rejection sampling: a scalar of zero or of at least the order
		// of the curve is refused by NewPrivateKey, so draw again (FIPS
		// 186-5, Appendix A.2.2). X25519 accepts every 32-byte string.
		for range 64 {
			if _, err := io.ReadFull(rand, b); err != nil {
				return nil, fmt.Errorf("transform: %s: reading randomness: %w", KEName(id), err)
			}
			if id == iana.KEECP521 {
				b[0] &= 0x01 // 521 bits in 66 bytes
			}
			k, err := newEC(id, b)
			if err == nil {
				return k, nil
			}
		}
	}
	return nil, fmt.Errorf("transform: %s: the random source gave no valid private key", KEName(id))
}

// KERespond answers the initiator's Key Exchange Data peerData for method
// id: it returns the responder's Key Exchange Data and the shared secret.
// For Diffie-Hellman it generates a key pair from rand (crypto/rand.Reader
// if nil) and computes g^ir; for ML-KEM it encapsulates to the initiator's
// encapsulation key and returns the ciphertext (RFC 9370, Section 2.2.2).
// ML-KEM encapsulation draws its 32 random bytes from crypto/rand, whatever
// rand is, because crypto/mlkem offers derandomized encapsulation only for
// known-answer tests; tests that need it deterministic use
// testing/cryptotest.SetGlobalRandom. Errors about peerData wrap
// ErrInvalidKE.
func KERespond(id iana.KEID, peerData []byte, rand io.Reader) (ourData, secret []byte, err error) {
	if err := keSupported(id); err != nil {
		return nil, nil, err
	}
	if id == iana.KEMLKEM768 || id == iana.KEMLKEM1024 {
		return mlkemEncapsulate(id, peerData)
	}
	if want := KEDataLen(id, true); len(peerData) != want {
		// Checked before any work is spent on a key pair.
		return nil, nil, fmt.Errorf("%w: %s key exchange data is %d bytes, want %d", ErrInvalidKE, KEName(id), len(peerData), want)
	}
	k, err := NewKEInitiator(id, rand)
	if err != nil {
		return nil, nil, err
	}
	secret, err = k.Finish(peerData)
	if err != nil {
		return nil, nil, err
	}
	return k.Public(), secret, nil
}

// keKeywords are the strongSwan keywords of the implemented methods; the
// first one of each id is canonical.
var keKeywords = []struct {
	name string
	id   iana.KEID
}{
	{"modp2048", iana.KEMODP2048},
	{"modp3072", iana.KEMODP3072},
	{"modp4096", iana.KEMODP4096},
	{"ecp256", iana.KEECP256},
	{"ecp384", iana.KEECP384},
	{"ecp521", iana.KEECP521},
	{"x25519", iana.KECurve25519},
	{"curve25519", iana.KECurve25519},
	{"mlkem768", iana.KEMLKEM768},
	{"mlkem1024", iana.KEMLKEM1024},
	{"none", iana.KENone},
}

// unimplementedKE are strongSwan key exchange keywords that this package
// knows but does not implement, with the reason.
var unimplementedKE = map[string]string{
	"mlkem512":     "ML-KEM-512 (id 35): Go's crypto/mlkem implements only ML-KEM-768 and ML-KEM-1024",
	"modp6144":     "MODP-6144 (group 17)",
	"modp8192":     "MODP-8192 (group 18)",
	"modp2048s224": "MODP-2048 with 224-bit subgroup (group 23, RFC 8247 Section 2.4: SHOULD NOT)",
	"modp2048s256": "MODP-2048 with 256-bit subgroup (group 24, RFC 8247 Section 2.4: SHOULD NOT)",
	"ecp192":       "ECP-192 (group 25)",
	"ecp224":       "ECP-224 (group 26)",
	"ecp224bp":     "Brainpool ECP-224 (group 27)",
	"ecp256bp":     "Brainpool ECP-256 (group 28)",
	"ecp384bp":     "Brainpool ECP-384 (group 29)",
	"ecp512bp":     "Brainpool ECP-512 (group 30)",
	"x448":         "Curve448 (group 32)",
	"curve448":     "Curve448 (group 32)",
}

// ParseKE returns the key exchange method named by a strongSwan keyword,
// case insensitively: modp2048, modp3072, modp4096, ecp256, ecp384, ecp521,
// x25519 (or curve25519), mlkem768, mlkem1024, or none (KENone, "no PFS"
// in a Child SA proposal). Weak groups (modp768, modp1024, modp1536,
// modp1024s160) wrap ErrWeak; mlkem512 and other known methods that are not
// implemented wrap ErrNotImplemented; anything else ErrUnknownSuite.
func ParseKE(keyword string) (iana.KEID, error) {
	tok := strings.ToLower(strings.TrimSpace(keyword))
	for _, k := range keKeywords {
		if k.name == tok {
			return k.id, nil
		}
	}
	if why, ok := weakKeywords[tok]; ok && strings.HasPrefix(tok, "modp") {
		return 0, fmt.Errorf("%w: key exchange %q: %s is refused", ErrWeak, keyword, why)
	}
	if why, ok := unimplementedKE[tok]; ok {
		return 0, fmt.Errorf("%w: key exchange %q: %s", ErrNotImplemented, keyword, why)
	}
	return 0, fmt.Errorf("%w %q: not a key exchange keyword", ErrUnknownSuite, keyword)
}

// KEName returns the canonical strongSwan keyword of a key exchange method,
// such as "x25519" or "mlkem768", or "ke" and the number for others.
func KEName(id iana.KEID) string {
	for _, k := range keKeywords {
		if k.id == id {
			return k.name
		}
	}
	switch id {
	case 1:
		return "modp768"
	case 2:
		return "modp1024"
	case 5:
		return "modp1536"
	case iana.KEMLKEM512:
		return "mlkem512"
	}
	return fmt.Sprintf("ke%d", id)
}

// keSupported returns nil if this package implements method id.
func keSupported(id iana.KEID) error {
	switch id {
	case iana.KEMODP2048, iana.KEMODP3072, iana.KEMODP4096,
		iana.KEECP256, iana.KEECP384, iana.KEECP521, iana.KECurve25519,
		iana.KEMLKEM768, iana.KEMLKEM1024:
		return nil
	case 1, 2, 5, 22:
		return fmt.Errorf("%w: key exchange method %d (%s) is refused (RFC 8247, Section 2.4)", ErrWeak, id, KEName(id))
	case iana.KEMLKEM512:
		return fmt.Errorf("%w: %s", ErrNotImplemented, unimplementedKE["mlkem512"])
	case 17, 18, 23, 24, 25, 26, 27, 28, 29, 30, 32:
		return fmt.Errorf("%w: key exchange method %d", ErrNotImplemented, id)
	case iana.KENone:
		return fmt.Errorf("transform: key exchange method NONE has no key exchange data")
	}
	return fmt.Errorf("%w: key exchange method %d", ErrUnknownSuite, id)
}

// KEDataLen returns the length of the Key Exchange Data of a KE payload for
// method id, sent by the initiator or by the responder: the length of the
// prime for MODP (RFC 7296, Section 3.4), twice the coordinate length for
// ECP (RFC 5903, Section 7), 32 for Curve25519 (RFC 8031, Section 3), the
// encapsulation key (initiator) or ciphertext (responder) for ML-KEM (FIPS
// 203, Section 8). It returns 0 for methods this package does not
// implement.
func KEDataLen(id iana.KEID, initiator bool) int {
	if g := modpGroupFor(id); g != nil {
		return g.size
	}
	if c, ok := ecCurves[id]; ok {
		return c.pubLen
	}
	switch id {
	case iana.KEMLKEM768:
		if initiator {
			return mlkem.EncapsulationKeySize768
		}
		return mlkem.CiphertextSize768
	case iana.KEMLKEM1024:
		if initiator {
			return mlkem.EncapsulationKeySize1024
		}
		return mlkem.CiphertextSize1024
	}
	return 0
}

// keString is what the String and GoString methods of every KEInitiator
// return: the method, never the key.
func keString(id iana.KEID) string { return "transform.KEInitiator(" + KEName(id) + ", <redacted>)" }

// --- MODP (finite-field Diffie-Hellman) ---

// modpGroup is a MODP group of RFC 3526 with generator 2.
type modpGroup struct {
	id     iana.KEID
	p      *big.Int
	pMinus *big.Int // p-1
	size   int      // length of p in bytes
	expLen int      // length of the private exponent in bytes
}

func newMODPGroup(id iana.KEID, hexP string, expBits int) *modpGroup {
	p, ok := new(big.Int).SetString(hexP, 16)
	if !ok {
		panic("transform: bad MODP prime")
	}
	return &modpGroup{
		id:     id,
		p:      p,
		pMinus: new(big.Int).Sub(p, big.NewInt(1)),
		size:   (p.BitLen() + 7) / 8,
		expLen: expBits / 8,
	}
}

// The MODP groups of RFC 3526, Sections 3, 4 and 5. Their private exponents
// have twice the bits of the group's strength, the upper end of the range
// of RFC 3526, Section 8 (2048: 320 bits, 3072: 424, 4096: 480), which is
// enough for these safe primes (RFC 3526, Section 8).
var (
	modp2048 = newMODPGroup(iana.KEMODP2048, primeMODP2048, 320)
	modp3072 = newMODPGroup(iana.KEMODP3072, primeMODP3072, 424)
	modp4096 = newMODPGroup(iana.KEMODP4096, primeMODP4096, 480)
)

// RFC 3526 primes (Sections 3, 4 and 5), big-endian hex.
const (
	primeMODP2048 = "" +
		"ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
		"020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
		"4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
		"ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
		"98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
		"9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
		"e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
		"3995497cea956ae515d2261898fa051015728e5a8aacaa68ffffffffffffffff"
	primeMODP3072 = "" +
		"ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
		"020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
		"4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
		"ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
		"98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
		"9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
		"e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
		"3995497cea956ae515d2261898fa051015728e5a8aaac42dad33170d04507a33" +
		"a85521abdf1cba64ecfb850458dbef0a8aea71575d060c7db3970f85a6e1e4c7" +
		"abf5ae8cdb0933d71e8c94e04a25619dcee3d2261ad2ee6bf12ffa06d98a0864" +
		"d87602733ec86a64521f2b18177b200cbbe117577a615d6c770988c0bad946e2" +
		"08e24fa074e5ab3143db5bfce0fd108e4b82d120a93ad2caffffffffffffffff"
	primeMODP4096 = "" +
		"ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
		"020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
		"4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
		"ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
		"98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
		"9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
		"e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
		"3995497cea956ae515d2261898fa051015728e5a8aaac42dad33170d04507a33" +
		"a85521abdf1cba64ecfb850458dbef0a8aea71575d060c7db3970f85a6e1e4c7" +
		"abf5ae8cdb0933d71e8c94e04a25619dcee3d2261ad2ee6bf12ffa06d98a0864" +
		"d87602733ec86a64521f2b18177b200cbbe117577a615d6c770988c0bad946e2" +
		"08e24fa074e5ab3143db5bfce0fd108e4b82d120a92108011a723c12a787e6d7" +
		"88719a10bdba5b2699c327186af4e23c1a946834b6150bda2583e9ca2ad44ce8" +
		"dbbbc2db04de8ef92e8efc141fbecaa6287c59474e6bc05d99b2964fa090c3a2" +
		"233ba186515be7ed1f612970cee2d7afb81bdd762170481cd0069127d5b05aa9" +
		"93b4ea988d8fddc186ffb7dc90a6c08f4df435c934063199ffffffffffffffff"
)

func modpGroupFor(id iana.KEID) *modpGroup {
	switch id {
	case iana.KEMODP2048:
		return modp2048
	case iana.KEMODP3072:
		return modp3072
	case iana.KEMODP4096:
		return modp4096
	}
	return nil
}

// modpKE is a MODP Diffie-Hellman key pair.
//
// It computes with math/big, which is not constant-time: the time of the
// modular exponentiations depends on the private exponent, which leaks
// information about it to an attacker that can time many of them. The
// exponent is fresh for every exchange (RFC 7296, Section 2.12 allows reuse;
// this package never reuses), which limits what one key can leak. Prefer
// the elliptic-curve methods, which are constant-time; the default
// proposals list MODP last.
type modpKE struct {
	g   *modpGroup
	x   *big.Int // private exponent
	pub []byte   // g^x mod p, padded to the length of p
}

// newMODP makes the key pair with private exponent x (big-endian), which
// must be at least 2.
func newMODP(g *modpGroup, x []byte) (*modpKE, error) {
	k := &modpKE{g: g, x: new(big.Int).SetBytes(x)}
	if k.x.Cmp(big.NewInt(1)) <= 0 || k.x.Cmp(g.pMinus) >= 0 {
		return nil, fmt.Errorf("transform: %s: private exponent out of range", KEName(g.id))
	}
	y := new(big.Int).Exp(big.NewInt(2), k.x, g.p)
	k.pub = y.FillBytes(make([]byte, g.size))
	return k, nil
}

func (k *modpKE) ID() iana.KEID    { return k.g.id }
func (k *modpKE) Public() []byte   { return k.pub }
func (k *modpKE) String() string   { return keString(k.g.id) }
func (k *modpKE) GoString() string { return keString(k.g.id) }

// Finish checks the peer's public value y and returns y^x mod p, padded with
// zeros to the length of p (RFC 7296, Section 2.14). y must be exactly as
// long as p (RFC 7296, Section 3.4) and 1 < y < p-1 (RFC 6989, Section 2.1:
// for the safe-prime groups of RFC 3526 this range check is all that is
// needed; it excludes the elements of order 1 and 2).
func (k *modpKE) Finish(peer []byte) ([]byte, error) {
	g := k.g
	if len(peer) != g.size {
		return nil, fmt.Errorf("%w: %s key exchange data is %d bytes, want %d", ErrInvalidKE, KEName(g.id), len(peer), g.size)
	}
	y := new(big.Int).SetBytes(peer)
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(g.pMinus) >= 0 {
		return nil, fmt.Errorf("%w: %s public value is not in the range 1 < y < p-1 (RFC 6989, Section 2.1)", ErrInvalidKE, KEName(g.id))
	}
	s := new(big.Int).Exp(y, k.x, g.p)
	return s.FillBytes(make([]byte, g.size)), nil
}

// --- ECP and Curve25519 (crypto/ecdh) ---

// ecCurve describes one elliptic-curve method.
type ecCurve struct {
	curve     func() ecdh.Curve
	scalarLen int // private key length
	pubLen    int // Key Exchange Data length
}

var ecCurves = map[iana.KEID]ecCurve{
	iana.KEECP256:     {ecdh.P256, 32, 64},   // RFC 5903, Section 7
	iana.KEECP384:     {ecdh.P384, 48, 96},   // RFC 5903, Section 7
	iana.KEECP521:     {ecdh.P521, 66, 132},  // RFC 5903, Section 7
	iana.KECurve25519: {ecdh.X25519, 32, 32}, // RFC 8031, Section 3
}

// ecKE is an ECDH key pair.
type ecKE struct {
	id   iana.KEID
	priv *ecdh.PrivateKey
	pub  []byte
}

// newEC makes the key pair with the private scalar priv (big-endian for the
// NIST curves, as SEC 1; the raw 32 bytes for X25519, RFC 7748 Section 5).
func newEC(id iana.KEID, priv []byte) (*ecKE, error) {
	c := ecCurves[id]
	sk, err := c.curve().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("transform: %s: %w", KEName(id), err)
	}
	pub := sk.PublicKey().Bytes()
	if id != iana.KECurve25519 {
		// RFC 5903, Section 7: x || y without the 0x04 of SEC 1.
		pub = pub[1:]
	}
	return &ecKE{id: id, priv: sk, pub: pub}, nil
}

func (k *ecKE) ID() iana.KEID    { return k.id }
func (k *ecKE) Public() []byte   { return k.pub }
func (k *ecKE) String() string   { return keString(k.id) }
func (k *ecKE) GoString() string { return keString(k.id) }

// Finish checks the peer's public value and returns the shared secret. For
// the NIST curves the value is x || y (RFC 5903, Section 7), the point must
// be on the curve (crypto/ecdh checks; RFC 6989, Section 2.3 and RFC 5903,
// Section 9) and the secret is the x coordinate alone, fixed length
// (RFC 5903, Section 7). For Curve25519 the value is the 32-byte
// u-coordinate and an all-zero secret, from a low-order point, is refused
// (RFC 8031, Section 2).
func (k *ecKE) Finish(peer []byte) ([]byte, error) {
	c := ecCurves[k.id]
	if len(peer) != c.pubLen {
		return nil, fmt.Errorf("%w: %s key exchange data is %d bytes, want %d", ErrInvalidKE, KEName(k.id), len(peer), c.pubLen)
	}
	enc := peer
	if k.id != iana.KECurve25519 {
		enc = make([]byte, 1+len(peer))
		enc[0] = 4 // SEC 1, Section 2.3.3: uncompressed point
		copy(enc[1:], peer)
	}
	pk, err := c.curve().NewPublicKey(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %s public value is not a point on the curve (RFC 6989, Section 2.3)", ErrInvalidKE, KEName(k.id))
	}
	s, err := k.priv.ECDH(pk)
	if err != nil {
		if k.id == iana.KECurve25519 {
			return nil, fmt.Errorf("%w: x25519 public value is a low-order point (all-zero shared secret, RFC 8031 Section 2)", ErrInvalidKE)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidKE, KEName(k.id), err)
	}
	return s, nil
}

// --- ML-KEM (crypto/mlkem) ---

// mlkemKE is an ML-KEM decapsulation key: the initiator's side of a KEM
// used as a key exchange (RFC 9370, Section 2.2.2).
type mlkemKE struct {
	id  iana.KEID
	dk  any // *mlkem.DecapsulationKey768 or *mlkem.DecapsulationKey1024
	pub []byte
}

// newMLKEM derives the decapsulation key from the 64-byte seed d || z
// (FIPS 203, Algorithm 16 ML-KEM.KeyGen_internal).
func newMLKEM(id iana.KEID, seed []byte) (*mlkemKE, error) {
	k := &mlkemKE{id: id}
	switch id {
	case iana.KEMLKEM768:
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			return nil, fmt.Errorf("transform: mlkem768: %w", err)
		}
		k.dk, k.pub = dk, dk.EncapsulationKey().Bytes()
	case iana.KEMLKEM1024:
		dk, err := mlkem.NewDecapsulationKey1024(seed)
		if err != nil {
			return nil, fmt.Errorf("transform: mlkem1024: %w", err)
		}
		k.dk, k.pub = dk, dk.EncapsulationKey().Bytes()
	default:
		return nil, keSupported(id)
	}
	return k, nil
}

func (k *mlkemKE) ID() iana.KEID    { return k.id }
func (k *mlkemKE) Public() []byte   { return k.pub }
func (k *mlkemKE) String() string   { return keString(k.id) }
func (k *mlkemKE) GoString() string { return keString(k.id) }

// Finish decapsulates the responder's ciphertext. Only its length is
// checked: a wrong ciphertext of the right length yields an unrelated
// secret (implicit rejection, FIPS 203 Section 6.3), and the exchange then
// fails at AUTH.
func (k *mlkemKE) Finish(ct []byte) ([]byte, error) {
	if want := KEDataLen(k.id, false); len(ct) != want {
		return nil, fmt.Errorf("%w: %s ciphertext is %d bytes, want %d", ErrInvalidKE, KEName(k.id), len(ct), want)
	}
	var (
		s   []byte
		err error
	)
	switch dk := k.dk.(type) {
	case *mlkem.DecapsulationKey768:
		s, err = dk.Decapsulate(ct)
	case *mlkem.DecapsulationKey1024:
		s, err = dk.Decapsulate(ct)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidKE, KEName(k.id), err)
	}
	return s, nil
}

// mlkemEncapsulate checks the initiator's encapsulation key (length and the
// modulus check of FIPS 203, Section 7.2) and encapsulates to it.
func mlkemEncapsulate(id iana.KEID, ek []byte) (ct, secret []byte, err error) {
	if want := KEDataLen(id, true); len(ek) != want {
		return nil, nil, fmt.Errorf("%w: %s encapsulation key is %d bytes, want %d", ErrInvalidKE, KEName(id), len(ek), want)
	}
	switch id {
	case iana.KEMLKEM768:
		k, err := mlkem.NewEncapsulationKey768(ek)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: mlkem768 encapsulation key: %v", ErrInvalidKE, err)
		}
		secret, ct = k.Encapsulate()
	case iana.KEMLKEM1024:
		k, err := mlkem.NewEncapsulationKey1024(ek)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: mlkem1024 encapsulation key: %v", ErrInvalidKE, err)
		}
		secret, ct = k.Encapsulate()
	}
	return ct, secret, nil
}
