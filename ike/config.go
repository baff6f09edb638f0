package ike

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/iana"
	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// Config configures a Manager, the way tls.Config configures crypto/tls. The
// zero value of every field means its default. A Config must not be
// modified after it is passed to NewManager (NewManager keeps a copy).
type Config struct {
	// Now returns the current time; nil means time.Now. Timers of the
	// engine's goroutines use the durations Now implies.
	Now func() time.Time
	// Rand is the source of SPIs, nonces, IVs and private keys; nil means
	// crypto/rand.Reader.
	Rand io.Reader
	// Logger receives the engine's logs; nil means slog.Default(). Key
	// material is never logged.
	Logger *slog.Logger

	// LocalAddr returns the source address to use towards remote when a
	// peer's LocalAddrs name no single address; the daemon can ask the
	// routing table. nil, or an error, leaves the address unspecified for
	// the Transport to choose, which makes NAT detection see a NAT (RFC
	// 7296, Section 2.23) and so UDP encapsulation. It is called with the
	// Manager's lock held and must not call the Manager.
	LocalAddr func(remote netip.Addr) (netip.Addr, error)

	// Port is the IKE port (default 500) and NATTPort the port of UDP
	// encapsulation (default 4500, RFC 3948). Messages sent from NATTPort
	// carry the 4-byte non-ESP marker, which the engine adds and strips
	// (RFC 3948, Section 2.2).
	Port, NATTPort uint16

	// RetransmitTimeout, RetransmitBase and RetransmitTries set the
	// retransmission schedule of requests: retransmission n (from 0) is
	// sent RetransmitTimeout * RetransmitBase^n after the previous send,
	// and after RetransmitTries retransmissions and one more timeout the
	// peer is declared dead (RFC 7296, Section 2.1). Defaults are
	// strongSwan's: 4 s, 1.8 and 5.
	RetransmitTimeout time.Duration
	RetransmitBase    float64
	RetransmitTries   int

	// HalfOpenTimeout is how long a responder keeps an IKE SA whose
	// IKE_AUTH has not completed (default 30 s). An initiator gives up
	// when its retransmissions are exhausted.
	HalfOpenTimeout time.Duration
	// CookieThreshold is the number of half-open responder IKE SAs above
	// which IKE_SA_INIT requests must carry a COOKIE (RFC 7296, Section
	// 2.6). Zero means the default, 10; a negative value means never.
	// Cookies are also demanded before MaxHalfOpen or
	// MaxHalfOpenPerSource turns a request away, so that requests from
	// spoofed addresses, which cannot return the cookie, cost a stateless
	// reply and never take a slot.
	CookieThreshold int
	// MaxHalfOpen bounds half-open responder IKE SAs; requests beyond it
	// (with a valid cookie, when cookies are on) are dropped. Zero means
	// 1000.
	MaxHalfOpen int
	// MaxHalfOpenPerSource bounds the half-open responder IKE SAs of one
	// source: one IPv4 address, or one IPv6 /64 (the smallest prefix a
	// host usually gets, RFC 7421). Requests beyond it are dropped, so one
	// source cannot fill MaxHalfOpen. Zero means 5 (strongSwan's
	// block_threshold); negative means no per-source limit.
	MaxHalfOpenPerSource int
	// CookieSecretLifetime is how long the secret that COOKIE values are
	// made with is used before a new one is drawn; cookies made with the
	// previous secret are still accepted for one more lifetime, told
	// apart by the version byte that starts every cookie (RFC 7296,
	// Section 2.6). Zero means 1 minute; negative never rotates.
	CookieSecretLifetime time.Duration

	// FragmentSize is the largest IKE message (without IP and UDP
	// headers) sent unfragmented once both peers announced
	// IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383). Zero means 1232.
	FragmentSize int
	// KeepaliveInterval is the interval of NAT keepalives (RFC 3948,
	// Section 2.3) sent when this host is behind a NAT. Zero means 20 s;
	// negative disables them.
	KeepaliveInterval time.Duration

	// EventBuffer is the capacity of the Events channel (default 256).
	// Events that do not fit are dropped, never waited for.
	EventBuffer int

	// AuthorizeTS, if not nil, is the Peer Authorization Database (RFC
	// 4301, Section 4.4.3): given the peer configuration's name, the
	// peer's authenticated identity and address, the child and the
	// selectors the peer claims for its side of a CHILD SA (TSi for a
	// responder, TSr for an initiator, already narrowed to the child's
	// configuration), it returns the part of them the peer may have, or an
	// error if none. A responder narrows to what it returns and answers
	// TS_UNACCEPTABLE when nothing is left; an initiator refuses an answer
	// that claims more (RFC 7296, Section 2.9). nil lets a peer claim
	// whatever its child configuration allows. It is called from the
	// engine's goroutines, possibly concurrently, and must not call the
	// Manager.
	AuthorizeTS func(peer string, id Identity, addr netip.Addr, child string, remoteTS traffic.Set) (traffic.Set, error)
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Port == 0 {
		c.Port = iana.PortIKE
	}
	if c.NATTPort == 0 {
		c.NATTPort = iana.PortNATT
	}
	if c.RetransmitTimeout <= 0 {
		c.RetransmitTimeout = 4 * time.Second
	}
	if c.RetransmitBase < 1 {
		c.RetransmitBase = 1.8
	}
	if c.RetransmitTries <= 0 {
		c.RetransmitTries = 5
	}
	if c.HalfOpenTimeout <= 0 {
		c.HalfOpenTimeout = 30 * time.Second
	}
	if c.CookieThreshold == 0 {
		c.CookieThreshold = 10
	}
	if c.MaxHalfOpen <= 0 {
		c.MaxHalfOpen = 1000
	}
	if c.MaxHalfOpenPerSource == 0 {
		c.MaxHalfOpenPerSource = 5
	}
	if c.CookieSecretLifetime == 0 {
		c.CookieSecretLifetime = time.Minute
	}
	if c.FragmentSize <= 0 {
		c.FragmentSize = 1232
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 20 * time.Second
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 256
	}
	return c
}

// Peer is the configuration of the IKE SAs with one peer: a swanctl.conf
// connection. The zero value of a field means its default.
type Peer struct {
	// Name identifies the peer in Initiate, Terminate, events and SAs.
	Name string
	// LocalAddrs and RemoteAddrs are the addresses this host and the peer
	// may use; empty means any. To initiate, the engine uses the first
	// single-address prefix of each (a /32 or /128); a responder accepts
	// IKE_SA_INIT requests whose destination lies in LocalAddrs and whose
	// source lies in RemoteAddrs.
	LocalAddrs, RemoteAddrs []netip.Prefix
	// RemotePort is the peer's IKE port to initiate to; zero means
	// Config.Port.
	RemotePort uint16
	// Proposals are the IKE proposals in order of preference; empty means
	// transform.DefaultIKEProposals().
	Proposals []transform.IKEProposal
	// LocalID is this host's identity (RFC 7296, Section 3.5); the zero
	// value means its certificate's subject with LocalAuth AuthPubkey, its
	// IP address otherwise. RemoteID is the identity the peer must
	// claim; the zero value accepts any.
	LocalID, RemoteID Identity
	// PSK returns the pre-shared key shared by the two identities, or nil
	// if there is none (authentication then fails). It is called from the
	// engine's goroutines and must be safe for concurrent use.
	PSK func(local, remote Identity) []byte
	// LocalAuth is how this host authenticates, RemoteAuth how the peer
	// must; the zero value is AuthPSK (RFC 7296, Section 2.15).
	LocalAuth, RemoteAuth AuthMethod
	// LocalCerts is this host's certificate chain for LocalAuth
	// AuthPubkey, sent in CERT payloads: the end-entity certificate first,
	// then intermediates (RFC 7296, Section 3.6). With a zero LocalID the
	// identity is the end-entity certificate's subject.
	LocalCerts []*x509.Certificate
	// LocalKey is the private key of LocalCerts[0], which signs AUTH (RFC
	// 7427): RSA, ECDSA (P-256, P-384, P-521) or Ed25519. The engine only
	// calls its Sign method, possibly concurrently.
	LocalKey crypto.Signer
	// RSAPSS makes an RSA LocalKey sign with RSASSA-PSS instead of
	// PKCS#1 v1.5 (RFC 7427, Appendix A.4; RFC 8247, Section 3.2).
	RSAPSS bool
	// RemoteCAs are the trust anchors for RemoteAuth AuthPubkey: the
	// peer's end-entity certificate must chain to one of them, and their
	// public keys are named in CERTREQ payloads (RFC 7296, Section 3.7).
	RemoteCAs []*x509.Certificate
	// Encap forces UDP encapsulation of IKE and ESP (port NATTPort) even
	// when no NAT is detected, as strongSwan's encap=yes does: the engine
	// sends a NAT_DETECTION_SOURCE_IP that cannot match (RFC 7296,
	// Section 2.23).
	Encap bool
	// DPDDelay is the interval of liveness checks (empty INFORMATIONAL
	// requests) when nothing was received from the peer; zero disables
	// them.
	DPDDelay time.Duration
	// DPDTimeout, if positive, declares the peer dead when a liveness
	// check got no answer, nor anything else from the peer, for that
	// long; zero leaves it to the retransmission schedule
	// (Config.Retransmit*), which always applies (RFC 7296, Section 2.4).
	DPDTimeout time.Duration
	// DPDAction is what happens to the CHILD SAs of an established IKE
	// SA whose peer is declared dead (retransmissions or DPDTimeout
	// exhausted); CloseAction when the peer deletes the IKE SA. The zero
	// value is ActionClear.
	DPDAction, CloseAction Action
	// Unique is the policy for several IKE SAs of this peer with the
	// same remote identity; the zero value is UniqueNo.
	Unique Unique
	// RekeyTime is the IKE SA rekey interval; zero means 4 hours,
	// negative disables rekeying.
	RekeyTime time.Duration
	// OverTime is how long after RekeyTime an IKE SA that was not rekeyed
	// is deleted (its hard lifetime is RekeyTime + OverTime); zero means
	// a tenth of RekeyTime, negative never.
	OverTime time.Duration
	// RandTime is the largest random time subtracted from RekeyTime and
	// ReauthTime for each IKE SA, so that many IKE SAs do not rekey at
	// once (strongSwan's rand_time); zero means OverTime, negative none.
	// It must be smaller than RekeyTime and ReauthTime.
	RandTime time.Duration
	// ReauthTime, if positive, is the interval of reauthentication, make
	// before break (strongSwan's reauth_time with make_before_break): a
	// new IKE SA is created with IKE_SA_INIT and IKE_AUTH (without
	// INITIAL_CONTACT) and the same CHILD SAs, and once they are all up
	// the old IKE SA is deleted with its CHILD SAs. An IKE SA that is not
	// reauthenticated by ReauthTime + OverTime is deleted. Zero or
	// negative: no reauthentication.
	ReauthTime time.Duration
	// Children are the CHILD SA configurations.
	Children []ChildConfig
}

// Action is what happens when the peer of an established IKE SA is
// declared dead (Peer.DPDAction) or deletes the IKE SA (Peer.CloseAction),
// as swanctl.conf's dpd_action and close_action.
type Action uint8

// Actions. With each, the CHILD SAs are removed from the Installer first.
const (
	// ActionClear does nothing more: the owner's policies decide what
	// happens to the traffic.
	ActionClear Action = iota
	// ActionTrap reports EventChildTrap for each CHILD SA that was up,
	// so that the owner re-installs the trap policy and the next packet
	// calls Initiate.
	ActionTrap
	// ActionStart re-initiates each CHILD SA that was up (or the IKE SA
	// alone if none was) at once.
	ActionStart
)

// Unique is the policy for several IKE SAs with one remote identity, as
// swanctl.conf's unique. IKE SAs are duplicates when they have the same
// Peer and equal authenticated remote identities.
type Unique uint8

// Uniqueness policies.
const (
	// UniqueNo allows duplicates, but an IKE_AUTH request with
	// INITIAL_CONTACT deletes the others silently: the peer lost its
	// state (RFC 7296, Section 2.4).
	UniqueNo Unique = iota
	// UniqueNever allows duplicates and ignores INITIAL_CONTACT.
	UniqueNever
	// UniqueKeep refuses a new IKE SA while a duplicate is established:
	// the responder answers AUTHENTICATION_FAILED, the initiator sends
	// it in an INFORMATIONAL request (RFC 7296, Section 2.21.2).
	UniqueKeep
	// UniqueReplace deletes the duplicates (sending a Delete, not waiting
	// for the answer) once a new IKE SA is established, for peers that
	// start over without Delete or INITIAL_CONTACT.
	UniqueReplace
)

// StartAction is what SetPeers does with a child (swanctl.conf's
// start_action).
type StartAction uint8

// Start actions. Trap is carried for the daemon, which installs the trap
// policies and calls Initiate on acquires; the engine treats it as None.
const (
	StartNone StartAction = iota
	StartTrap
	StartStart // SetPeers initiates the child at once
)

// ChildConfig is the configuration of CHILD SAs of a peer (a swanctl.conf
// child). The zero value of a field means its default.
type ChildConfig struct {
	// Name identifies the child in Initiate, Terminate and events.
	Name string
	// Ref is an opaque reference that the engine copies into every
	// ChildSA it installs for this child, such as the SPD rule (the SA
	// bundle, spd.Rule.Ref) whose policy the SA serves.
	Ref uint32
	// Mode is tunnel (the zero value) or transport.
	Mode sa.Mode
	// LocalTS and RemoteTS are the traffic selectors of this host and of
	// the peer; empty means this side's outer address.
	LocalTS, RemoteTS traffic.Set
	// Protocol is sa.ESP (the default when zero) or sa.AH.
	Protocol sa.Protocol
	// Proposals are the ESP or AH proposals in order of preference; empty
	// means transform.DefaultESPProposals() (ESP only). A KE method in them
	// is used for PFS in CREATE_CHILD_SA and ignored in IKE_AUTH (RFC 7296,
	// Section 1.2).
	Proposals []transform.ESPProposal
	// StartAction says what SetPeers does with the child.
	StartAction StartAction
	// RekeyTime is the CHILD SA rekey interval; zero means 1 hour,
	// negative disables rekeying by time.
	RekeyTime time.Duration
	// LifeTime is the hard lifetime, handed to the Installer as
	// ChildSA.Limits.Hard.Time, after which the engine deletes the CHILD
	// SA if it was not rekeyed; zero means 110% of RekeyTime (none if
	// rekeying is disabled), negative none.
	LifeTime time.Duration
	// RandTime is the largest random time subtracted from RekeyTime for
	// each CHILD SA (strongSwan's rand_time); zero means LifeTime -
	// RekeyTime, negative none. It must be smaller than RekeyTime.
	RandTime time.Duration
	// RekeyBytes and RekeyPackets are soft limits, LifeBytes and
	// LifePackets hard ones, handed to the Installer as ChildSA.Limits;
	// the data plane's events for them come back through
	// Manager.HandleExpire, which rekeys the CHILD SA (soft) or deletes it
	// (hard). Zero means none.
	RekeyBytes, LifeBytes     uint64
	RekeyPackets, LifePackets uint64
	// ReplayWindow is the anti-replay window in packets, copied into the
	// ChildSA; zero lets the Installer choose its default.
	ReplayWindow int
}

func (p *Peer) rekeyTime() time.Duration {
	if p.RekeyTime == 0 {
		return 4 * time.Hour
	}
	return p.RekeyTime
}

// overTime returns how long after the rekey time the IKE SA expires; zero
// means never.
func (p *Peer) overTime() time.Duration {
	switch base := max(p.rekeyTime(), p.ReauthTime); {
	case p.OverTime < 0 || base <= 0:
		return 0
	case p.OverTime == 0:
		return base / 10
	}
	return p.OverTime
}

// randTime returns the largest jitter of the IKE SA rekey time.
func (p *Peer) randTime() time.Duration {
	switch {
	case p.RandTime < 0:
		return 0
	case p.RandTime == 0:
		return p.overTime()
	}
	return p.RandTime
}

// check reports lifetimes that cannot work.
func (p *Peer) check() error {
	if rt := p.rekeyTime(); rt > 0 && p.randTime() >= rt {
		return fmt.Errorf("ike: peer %q: RandTime %v is not smaller than RekeyTime %v", p.Name, p.randTime(), rt)
	}
	if p.ReauthTime > 0 && p.randTime() >= p.ReauthTime {
		return fmt.Errorf("ike: peer %q: RandTime %v is not smaller than ReauthTime %v", p.Name, p.randTime(), p.ReauthTime)
	}
	for i := range p.Children {
		c := &p.Children[i]
		if rt := c.rekeyTime(); rt > 0 && c.randTime() >= rt {
			return fmt.Errorf("ike: peer %q child %q: RandTime %v is not smaller than RekeyTime %v", p.Name, c.Name, c.randTime(), rt)
		}
	}
	return nil
}

func (p *Peer) proposals() []transform.IKEProposal {
	if len(p.Proposals) == 0 {
		return transform.DefaultIKEProposals()
	}
	return p.Proposals
}

func (c *ChildConfig) rekeyTime() time.Duration {
	if c.RekeyTime == 0 {
		return time.Hour
	}
	return c.RekeyTime
}

// lifeTime returns the CHILD SA's hard lifetime; zero means none.
func (c *ChildConfig) lifeTime() time.Duration {
	switch rt := c.rekeyTime(); {
	case c.LifeTime < 0:
		return 0
	case c.LifeTime == 0 && rt > 0:
		return rt + rt/10
	}
	return max(c.LifeTime, 0)
}

// randTime returns the largest jitter of the CHILD SA rekey time.
func (c *ChildConfig) randTime() time.Duration {
	switch {
	case c.RandTime < 0:
		return 0
	case c.RandTime == 0:
		if lt, rt := c.lifeTime(), c.rekeyTime(); rt > 0 && lt > rt {
			return lt - rt
		}
		return 0
	}
	return c.RandTime
}

// limits returns the lifetimes the data plane enforces: the soft and hard
// byte and packet limits, and the hard time limit (the engine rekeys by
// time itself).
func (c *ChildConfig) limits() sa.Limits {
	return sa.Limits{
		Soft: sa.Lifetime{Bytes: c.RekeyBytes, Packets: c.RekeyPackets},
		Hard: sa.Lifetime{Bytes: c.LifeBytes, Packets: c.LifePackets, Time: c.lifeTime()},
	}
}

func (c *ChildConfig) protocol() sa.Protocol {
	if c.Protocol == 0 {
		return sa.ESP
	}
	return c.Protocol
}

func (c *ChildConfig) proposals() []transform.ESPProposal {
	if len(c.Proposals) == 0 {
		return transform.DefaultESPProposals()
	}
	return c.Proposals
}

// child returns the child configuration named name.
func (p *Peer) child(name string) *ChildConfig {
	for i := range p.Children {
		if p.Children[i].Name == name {
			return &p.Children[i]
		}
	}
	return nil
}

// firstHost returns the first single-address prefix of ps.
func firstHost(ps []netip.Prefix) netip.Addr {
	for _, p := range ps {
		if p.IsValid() && p.Bits() == p.Addr().BitLen() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// matchAddr reports whether a lies in ps (empty means any).
func matchAddr(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
