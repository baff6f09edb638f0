// Package config parses and validates goipsec's configuration file, one YAML
// document whose vocabulary follows strongSwan's swanctl.conf, into plain Go
// values. It does no I/O beyond reading the file and the secret files it
// names; the policy agent turns a Config into SPD, PAD and IKE settings.
//
// Every problem is reported as a *Error printing "file:line: key: reason";
// several problems are joined with errors.Join, one per line, in line order.
// Unknown keys are errors. Key material never appears in errors, nor in the
// printed or JSON form of a Config (see Secret).
//
// Lists of strings may be written as YAML sequences or, as in swanctl.conf,
// as one comma-separated string. Durations are Go or strongSwan style: "90s",
// "4h", "1h30m", "1d"; a bare number is seconds. Integers are decimal or
// hexadecimal with 0x. Traffic selectors use strongSwan's syntax (see
// traffic.ParseSelector); inside a one-line flow list of local_ts or
// remote_ts they may be written unquoted, as in INTERFACES.md
// ("remote_ts: [10.2.0.0/16, 10.3.0.0/16[tcp/443]]"), although strict YAML
// would need quotes around the one with brackets.
package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// Defaults applied to settings the file leaves out.
const (
	DefaultSocket         = "/run/goipsec/ipsecd.sock"
	DefaultStateDir       = "/var/lib/goipsec"
	DefaultTUNName        = "ipsec0"
	DefaultTUNMTU         = 1400
	DefaultIKERekeyTime   = 4 * time.Hour // strongSwan's connections.<conn>.rekey_time
	DefaultChildRekeyTime = time.Hour     // strongSwan's children.<child>.rekey_time
	DefaultReplayWindow   = 1024
	MinReplayWindow       = 32      // RFC 4303, Section 3.4.3: at least 32
	MaxReplayWindow       = 1 << 20 // a bound on memory per SA
)

// Config is a parsed and validated configuration file. Parse and Load fill
// every default, so zero values below mean what their comments say.
type Config struct {
	// File is the path the configuration was read from.
	File        string
	Daemon      Daemon
	Connections []Connection // in file order
	Policies    []Policy     // in file order, which is SPD order
	ManualSAs   []ManualSA   // in file order
	// Groups are the policy groups (section "groups"), in the order of
	// GroupActions.
	Groups  []Group
	Secrets Secrets
	// PolicySources lists the shared policy the file's own is merged with
	// (see Merge); the zero value means the file alone.
	PolicySources PolicySources
}

// GroupAction is the name of a policy group, which says what happens to
// the traffic of its prefixes, as Libreswan's opportunistic groups and
// Windows' IPsec filter actions do.
type GroupAction uint8

// Policy groups. The zero value is invalid.
const (
	// GroupPrivate protects, never clear: outbound packets wait for an SA
	// (and are dropped if none comes), inbound cleartext is dropped.
	GroupPrivate GroupAction = iota + 1
	// GroupPrivateOrClear tries IKE; if the peer does not answer within
	// Group.FallbackTimeout or refuses, traffic with it goes in the clear
	// for Group.FallbackTime, then IKE is tried again.
	GroupPrivateOrClear
	// GroupClearOrPrivate sends in the clear but answers a peer that
	// initiates IKE, and then protects the traffic with that peer.
	GroupClearOrPrivate
	// GroupClear bypasses IPsec.
	GroupClear
	// GroupBlock discards.
	GroupBlock
)

// GroupNames are the names of the groups, indexed by GroupAction-1.
var GroupNames = [...]string{"private", "private-or-clear", "clear-or-private", "clear", "block"}

func (a GroupAction) String() string {
	if a >= GroupPrivate && int(a) <= len(GroupNames) {
		return GroupNames[a-1]
	}
	return fmt.Sprintf("GroupAction(%d)", uint8(a))
}

// Protects reports whether the group's traffic may be protected: it names
// a connection.
func (a GroupAction) Protects() bool {
	return a == GroupPrivate || a == GroupPrivateOrClear || a == GroupClearOrPrivate
}

// Defaults of private-or-clear.
const (
	DefaultFallbackTimeout = 5 * time.Second
	DefaultFallbackTime    = 10 * time.Minute
)

// Group is a policy group (groups.<name>): a list of prefixes whose traffic
// the group's action decides. Across all groups the most specific prefix
// wins (a /32 in clear inside a /24 in private is in the clear).
type Group struct {
	Action   GroupAction
	Prefixes []netip.Prefix
	// Connection names the connection whose only child protects the
	// group's traffic, one IKE SA and CHILD SA per peer (private,
	// private-or-clear and clear-or-private); empty for clear and block.
	Connection string
	// FallbackTimeout (private-or-clear only) is how long a negotiation
	// may take before traffic falls back to the clear (default
	// DefaultFallbackTimeout); FallbackTime how long the fallback is
	// remembered before IKE is tried again (default DefaultFallbackTime).
	FallbackTimeout, FallbackTime time.Duration
}

// Group returns the group a, if configured.
func (c *Config) Group(a GroupAction) (Group, bool) {
	for _, g := range c.Groups {
		if g.Action == a {
			return g, true
		}
	}
	return Group{}, false
}

// GroupConnection reports whether connection name is a group's template.
func (c *Config) GroupConnection(name string) bool {
	for _, g := range c.Groups {
		if g.Connection == name {
			return true
		}
	}
	return false
}

// Daemon holds the daemon's own settings (section "daemon").
type Daemon struct {
	// Socket is the control socket's path (default DefaultSocket).
	Socket string
	TUN    TUN
	Log    Log
	// IKE tunes the IKEv2 engine (daemon.ike); read at start only.
	IKE IKETimers
	// MetricsListen is the host:port of the Prometheus endpoint; empty
	// disables it (key daemon.metrics.listen).
	MetricsListen string
	// StateDir is where the daemon keeps state that must survive a
	// restart, such as the send counters of manual SAs (default
	// DefaultStateDir; key daemon.state_dir). The daemon creates it with
	// mode 0700.
	StateDir string
	// OnStop says what a clean stop leaves in place (key daemon.on_stop):
	// OnStopKeep (the zero value, the default) keeps the routing rule, the
	// blackhole routes and the firewall table, so that the policy stays
	// enforced while no daemon runs; OnStopClear removes them.
	OnStop OnStop
}

// OnStop is what the daemon leaves in place when it stops cleanly (key
// daemon.on_stop).
type OnStop uint8

// Values of daemon.on_stop.
const (
	// OnStopKeep keeps the policy in force after the daemon stops, as a
	// kernel IPsec policy outlives the IKE daemon: protected traffic is
	// dropped, never sent in the clear.
	OnStopKeep OnStop = iota
	// OnStopClear removes every routing rule, route and firewall table
	// the daemon installed.
	OnStopClear
)

func (o OnStop) String() string {
	switch o {
	case OnStopKeep:
		return "keep"
	case OnStopClear:
		return "clear"
	}
	return fmt.Sprintf("OnStop(%d)", uint8(o))
}

// IKETimers tunes the IKEv2 engine (daemon.ike), like strongSwan's
// charon.retransmit_*, half_open_timeout, cookie_threshold and
// block_threshold settings. Zero means the engine's default:
// retransmissions after 4 s, growing by 1.8, 5 tries; half-open IKE SAs
// kept 30 s; cookies demanded above 10 half-open SAs (cookie_threshold -1:
// never) and before any limit drops a request; at most 1000 half-open SAs
// (max_half_open), 5 per source address or IPv6 /64
// (max_half_open_per_source, -1: no per-source limit); a new cookie secret
// every minute (cookie_lifetime), the previous one accepted one more
// lifetime.
type IKETimers struct {
	RetransmitTimeout    time.Duration
	RetransmitTries      int
	HalfOpenTimeout      time.Duration
	CookieThreshold      int
	MaxHalfOpen          int
	MaxHalfOpenPerSource int
	CookieLifetime       time.Duration
}

// TUN configures the TUN device (daemon.tun).
type TUN struct {
	Name string // interface name, default DefaultTUNName
	MTU  int    // default DefaultTUNMTU
}

// Log configures logging (daemon.log), in the manner of charon's filelog:
// one output format and a level per subsystem.
//
//	daemon:
//	  log: {level: info, format: json, subsystems: {ike: debug, dataplane: warn}}
//
// Log is comparable, so that a reload can tell whether it changed.
type Log struct {
	Level  slog.Level // debug, info (default), warn, error
	Format string     // "text" (default) or "json"; read at start only
	// Subsystems holds the levels daemon.log.subsystems sets, indexed as
	// LogSubsystems; a subsystem whose entry is not Set logs at Level.
	Subsystems [len(LogSubsystems)]SubsystemLevel
}

// SubsystemLevel is the level of one subsystem, if Set.
type SubsystemLevel struct {
	Set   bool
	Level slog.Level
}

// LogSubsystems are the names daemon.log.subsystems accepts, each the value
// of the "subsystem" attribute of that part's log records: the IKE engine,
// the data plane, policy enforcement (routes and firewall rules),
// configuration loading and reloads, the daemon's own life and manual
// SAs, and the control API.
var LogSubsystems = [...]string{"ike", "dataplane", "policy", "config", "daemon", "ctl"}

// LevelOf returns the level of subsystem name: its own if set, else Level
// (also for a name not in LogSubsystems).
func (l Log) LevelOf(name string) slog.Level {
	for i, n := range LogSubsystems {
		if n == name && l.Subsystems[i].Set {
			return l.Subsystems[i].Level
		}
	}
	return l.Level
}

// Connection is an IKE connection (connections.<name>), as in swanctl.conf.
type Connection struct {
	Name string
	// Version is the IKE major version; always 2 (0 in the file means 2,
	// IKEv1 is refused).
	Version int
	// LocalAddrs and RemoteAddrs are IP addresses, CIDR prefixes, DNS names
	// or "%any" ("any" in the file is the same). Empty means %any. An
	// address range ("10.0.0.10-10.0.0.50") in the file is stored as the
	// prefixes that cover it exactly.
	LocalAddrs, RemoteAddrs []string
	// Proposals are the IKE proposals in preference order (default: one
	// proposal with Default set).
	Proposals []IKEProposal
	// Encap forces UDP encapsulation (port 4500) even without NAT.
	Encap bool
	// DPDDelay is the interval of liveness checks; 0 disables them.
	DPDDelay time.Duration
	// DPDTimeout, if not zero, bounds the time from a liveness check (or
	// any request) left unanswered to the declaration that the peer is
	// dead; zero leaves it to the retransmission schedule (daemon.ike
	// retransmit_*), as strongSwan does for IKEv2.
	DPDTimeout time.Duration
	// DPDAction is what happens to the CHILD SAs when the peer is
	// declared dead (default ActionClear); CloseAction when the peer
	// deletes the IKE SA (default ActionClear).
	DPDAction, CloseAction Action
	// Unique is the policy for several IKE SAs with the same remote
	// identity (default UniqueNo).
	Unique Unique
	// RekeyTime is the IKE SA rekey interval (default DefaultIKERekeyTime);
	// 0 disables rekeying.
	RekeyTime time.Duration
	// OverTime is how long after RekeyTime (ReauthTime) an IKE SA that
	// was not rekeyed (reauthenticated) is deleted (default a tenth of
	// the longer of the two).
	OverTime time.Duration
	// RandTime is the largest random time subtracted from RekeyTime and
	// ReauthTime, so that many IKE SAs do not rekey at once (default
	// OverTime); 0 means no jitter.
	RandTime time.Duration
	// ReauthTime is the reauthentication interval, make before break: a
	// new IKE SA with the same CHILD SAs replaces the old one; 0 (the
	// default) disables it.
	ReauthTime    time.Duration
	Local, Remote Auth
	Children      []Child // in file order
}

// Auth is one side's authentication (connections.<name>.local / .remote).
type Auth struct {
	Method AuthMethod
	// ID is the IKE identity; empty means the IP address (as a remote id:
	// the address the peer speaks from). A remote id may be a pattern, as
	// in strongSwan: "%any" accepts any identity, "*.example.org" and
	// "*@example.org" any FQDN or e-mail identity with that ending, and a
	// distinguished name attribute "*" (as in "O=Example, CN=*") any value.
	ID string
	// Certs and CACerts are certificate file paths, relative ones resolved
	// against the configuration file's directory.
	Certs, CACerts []string
	// Key is the PEM private key file of Certs[0] (local auth: pubkey
	// only), resolved like Certs. Parse checks that only its owner may
	// read it (mode & 0o077 == 0); the daemon reads it.
	Key string
}

// AuthMethod is how a side authenticates.
type AuthMethod uint8

// Authentication methods. The zero value, as in swanctl.conf, is public key.
const (
	AuthPubkey AuthMethod = iota
	AuthPSK
)

func (m AuthMethod) String() string {
	if m == AuthPSK {
		return "psk"
	}
	return "pubkey"
}

// IKEProposal is one IKE proposal of a connection, as written and as
// transform.ParseIKEProposal parsed it.
type IKEProposal struct {
	// Text is the proposal as written.
	Text string
	// Default is set for the keyword "default": the built-in list,
	// transform.DefaultIKEProposals; Parsed is then zero.
	Default bool
	// Parsed lists the transforms that the proposal offers.
	Parsed transform.IKEProposal
}

// Child is a CHILD SA configuration (connections.<conn>.children.<name>).
type Child struct {
	Name string
	Mode sa.Mode
	// LocalTS and RemoteTS are the child's selectors. Both nil (left out,
	// in transport mode, or in tunnel mode in a group's connection) means
	// strongSwan's "dynamic": the two IKE addresses, so one child serves
	// every peer of the connection.
	LocalTS, RemoteTS traffic.Set
	// Protocol is ESP (esp_proposals) or AH (ah_proposals).
	Protocol  sa.Protocol
	Proposals []ChildProposal
	// StartAction says what to do when the configuration is loaded.
	StartAction StartAction
	// RekeyTime is the CHILD SA rekey interval (default
	// DefaultChildRekeyTime); 0 disables rekeying by time.
	RekeyTime time.Duration
	// LifeTime is the CHILD SA's hard lifetime, after which it is deleted
	// (default RekeyTime plus 10%; 0 with RekeyTime 0).
	LifeTime time.Duration
	// RandTime is the largest random time subtracted from RekeyTime
	// (default LifeTime - RekeyTime); 0 means no jitter.
	RandTime time.Duration
	// RekeyBytes and RekeyPackets are the soft limits of use after which
	// the CHILD SA is rekeyed; LifeBytes and LifePackets the hard ones
	// after which it is deleted (defaults: 0, none; a Life limit left out
	// is the Rekey limit plus 10%).
	RekeyBytes, LifeBytes     uint64
	RekeyPackets, LifePackets uint64
	ReplayWindow              int // packets, default DefaultReplayWindow
}

// ChildProposal is one ESP or AH proposal of a child, as written and as
// transform.ParseESPProposal (ParseAHProposal for ah_proposals) parsed it:
// the algorithms, the key exchange methods for PFS and RFC 9370's
// additional key exchanges, and the ESN choice (RFC 4303, Section 2.2.1).
type ChildProposal struct {
	// Text is the proposal as written.
	Text string
	// Default is set for the keyword "default": the built-in list,
	// transform.DefaultESPProposals; Parsed is then zero.
	Default bool
	// Parsed lists the transforms that the proposal offers.
	Parsed transform.ESPProposal
}

// StartAction is a child's start_action.
type StartAction uint8

// Start actions, as in swanctl.conf.
const (
	StartNone  StartAction = iota // wait for the peer
	StartTrap                     // install the policy; the first packet triggers IKE
	StartStart                    // initiate at once
)

func (a StartAction) String() string {
	switch a {
	case StartTrap:
		return "trap"
	case StartStart:
		return "start"
	}
	return "none"
}

// Action is a connection's dpd_action or close_action, as in swanctl.conf.
type Action uint8

// Actions on a dead or closed peer.
const (
	// ActionClear removes the CHILD SAs: traffic then meets the PROTECT
	// policy and is dropped, or, for children with start_action trap or
	// start, triggers an acquire as always. "none" is a synonym.
	ActionClear Action = iota
	// ActionTrap re-installs the trap: the next packet of the child's
	// policy starts IKE, whatever its start_action.
	ActionTrap
	// ActionStart re-initiates the CHILD SAs at once. "restart" is a
	// synonym.
	ActionStart
)

func (a Action) String() string {
	switch a {
	case ActionTrap:
		return "trap"
	case ActionStart:
		return "start"
	}
	return "clear"
}

// Unique is a connection's policy for duplicate IKE SAs with the same
// remote identity (key unique), as in swanctl.conf.
type Unique uint8

// Uniqueness policies.
const (
	// UniqueNo allows several IKE SAs, but a new one whose initiator
	// sends INITIAL_CONTACT replaces the others (RFC 7296, Section 2.4).
	UniqueNo Unique = iota
	// UniqueNever allows several IKE SAs and ignores INITIAL_CONTACT.
	UniqueNever
	// UniqueKeep keeps the existing IKE SA and refuses the new one.
	UniqueKeep
	// UniqueReplace deletes the existing IKE SAs when a new one is
	// established.
	UniqueReplace
)

func (u Unique) String() string {
	switch u {
	case UniqueNever:
		return "never"
	case UniqueKeep:
		return "keep"
	case UniqueReplace:
		return "replace"
	}
	return "no"
}

// Policy is an SPD rule that is not a connection (section "policies").
type Policy struct {
	Name string
	// LocalTS and RemoteTS select traffic; empty means any.
	LocalTS, RemoteTS traffic.Set
	Action            PolicyAction
}

// PolicyAction is what a policy does with the traffic it selects.
type PolicyAction uint8

// Policy actions. RFC 4301, Section 4.4.1.
const (
	PolicyBypass PolicyAction = iota + 1
	PolicyDiscard
)

func (a PolicyAction) String() string {
	switch a {
	case PolicyBypass:
		return "bypass"
	case PolicyDiscard:
		return "discard"
	}
	return "invalid"
}

// ManualSA is a pair of statically keyed SAs, one per direction, with no IKE
// (section "manual_sas"), like ip xfrm or setkey.
type ManualSA struct {
	Name                  string
	Protocol              sa.Protocol
	Mode                  sa.Mode
	LocalAddr, RemoteAddr netip.Addr
	// UDPEncap is true for ESP in UDP on port 4500 (RFC 3948, encap: udp,
	// the default for ESP) and false for raw IP protocol 50 or 51.
	UDPEncap bool
	// SPIOut is the SPI of the outbound SA (the peer's spi_in), SPIIn that
	// of the inbound SA. Never below 256 (RFC 4303, Section 2.1).
	SPIOut, SPIIn uint32
	Suite         transform.Suite
	// KeyOut and KeyIn are the keys in the layout transform.Suite.KeyLen
	// describes.
	KeyOut, KeyIn Secret
	ESN           bool
	ReplayWindow  int // packets, default DefaultReplayWindow
	// LocalTS and RemoteTS are the SA's selectors; in transport mode they
	// default to the two addresses.
	LocalTS, RemoteTS traffic.Set
	// Limits are the SA's lifetimes (key lifetime); zero fields mean none.
	Limits sa.Limits
}

// Secrets holds credentials (section "secrets").
type Secrets struct {
	IKE []IKESecret
}

// IKESecret is a pre-shared key for the IKE identities in IDs: the local and
// the remote identity, or one id when both are the same. IDs is never empty.
type IKESecret struct {
	IDs    []string
	Secret Secret
	// File is the secret_file it was read from, if any.
	File string
}
