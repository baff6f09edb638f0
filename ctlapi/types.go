package ctlapi

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Status is the body of GET /v1/status: the daemon, how many SAs it holds and
// what its data plane has counted since it started.
type Status struct {
	// Version is the daemon's version, e.g. "v0.1.0", or "devel" for a build
	// without version information.
	Version string `json:"version"`
	// API is the control API version the daemon speaks, "v1".
	API string `json:"api"`
	// PID is the daemon's process id.
	PID int `json:"pid"`
	// Started is when the daemon started (RFC 3339 in JSON).
	Started time.Time `json:"started"`
	// UptimeSeconds is the whole number of seconds since Started.
	UptimeSeconds int64 `json:"uptime_seconds"`
	// ConfigFile is the path of the configuration file the daemon runs
	// (the one reload re-reads); empty if it was configured another way.
	ConfigFile string `json:"config_file"`
	// IKESAs is the number of IKE SAs in any state.
	IKESAs int `json:"ike_sas"`
	// ChildSAs is the number of installed CHILD SAs, negotiated and manual,
	// counting each inbound/outbound pair once.
	ChildSAs int `json:"child_sas"`
	// Counters are the data plane's totals.
	Counters Counters `json:"counters"`
	// Pending lists what the last reload could not install and the daemon
	// is still retrying in the background (routes, firewall rules), with
	// the failed attempts and the last error; empty when all is in force.
	Pending []string `json:"pending,omitempty"`
	// Panics counts the panics the daemon recovered from since it started,
	// by component. Each ended only what it owned (an IKE SA with its
	// CHILD SAs, or one packet); anything but zero is a bug to report.
	Panics Panics `json:"panics"`
	// Goroutines is the daemon's number of goroutines, for spotting leaks
	// in long runs (it should stay flat while the SA count does).
	Goroutines int `json:"goroutines"`
	// PolicySources are the shared policy sources besides the local file
	// (policy_sources), with their state; absent without any.
	PolicySources []PolicySource `json:"policy_sources,omitempty"`
}

// PolicySource is the state of one shared policy source, such as an etcd
// cluster (policy_sources.etcd).
type PolicySource struct {
	// Kind is the source's kind, "etcd".
	Kind string `json:"kind"`
	// Endpoints and Prefix say where the documents are read.
	Endpoints []string `json:"endpoints"`
	Prefix    string   `json:"prefix"`
	// Connected reports whether the last read or watch of the source
	// succeeded.
	Connected bool `json:"connected"`
	// Revision is the source's revision of the policy in force (etcd's
	// store revision); 0 before any was applied.
	Revision int64 `json:"revision"`
	// FromCache is true while the policy in force was loaded from the
	// cache file at start and not yet confirmed by the source.
	FromCache bool `json:"from_cache"`
	// Applied is when the policy in force was applied; zero if never.
	Applied time.Time `json:"applied,omitzero"`
	// Documents lists the keys of the documents in force, in the order
	// they were merged.
	Documents []string `json:"documents"`
	// LastError is the last error (a refused document, an unreachable
	// cluster), empty if none since the last policy was applied;
	// LastErrorTime is when it happened.
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	// Updates counts the policies applied from the source, Refused the
	// revisions refused (a bad document or a policy that did not apply).
	Updates uint64 `json:"updates"`
	Refused uint64 `json:"refused"`
}

// Panics counts recovered panics by component.
type Panics struct {
	// IKE counts panics of IKE SA goroutines; each ended that IKE SA and
	// its CHILD SAs.
	IKE uint64 `json:"ike"`
	// Dataplane counts panics of data plane goroutines; each dropped the
	// packet being processed.
	Dataplane uint64 `json:"dataplane"`
}

// Counters are data plane totals since the daemon started. "In" is traffic
// received from the network (and decapsulated), "out" is traffic sent to it.
type Counters struct {
	// PacketsIn and PacketsOut count IPsec packets (ESP or AH) received
	// and sent.
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	// BytesIn and BytesOut count the bytes of the inner packets, the
	// protected payload, as SA lifetimes do (RFC 4301, Section 4.4.2.1).
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// Drops counts dropped packets by reason. Keys are the reason names of
	// package sa ("bad_icv", "replay", "unknown_spi", "policy", "no_sa", ...);
	// reasons with a zero count may be left out. Never null in JSON.
	Drops map[string]uint64 `json:"drops"`
}

// SAs is the body of GET /v1/sas.
type SAs struct {
	// IKESAs lists the IKE SAs, by connection name then id. Never null.
	IKESAs []IKESA `json:"ike_sas"`
	// ChildSAs lists the CHILD SAs, negotiated ones (grouped by IKE SA)
	// then manual ones, by name. Never null.
	ChildSAs []ChildSA `json:"child_sas"`
}

// IKE SA states, the values of [IKESA.State].
const (
	IKEConnecting  = "connecting"  // IKE_SA_INIT or IKE_AUTH in progress
	IKEEstablished = "established" // authenticated and usable
	IKERekeying    = "rekeying"    // being replaced by a new IKE SA (RFC 7296, Section 2.8)
	IKEDeleting    = "deleting"    // an INFORMATIONAL Delete is in progress
)

// IKESA describes one IKE SA (RFC 7296).
type IKESA struct {
	// Name is the name of the connection in the configuration.
	Name string `json:"name"`
	// ID is a number unique among the daemon's IKE SAs, shown as "#ID"
	// like strongSwan's unique id.
	ID uint32 `json:"id"`
	// State is one of "connecting", "established", "rekeying", "deleting".
	State string `json:"state"`
	// Version is the IKE version, 2.
	Version int `json:"version"`
	// Initiator is true if this end sent IKE_SA_INIT.
	Initiator bool `json:"initiator"`
	// LocalAddr and RemoteAddr are the IKE endpoints with their UDP ports
	// ("192.0.2.1:4500", "[2001:db8::1]:500").
	LocalAddr  netip.AddrPort `json:"local_addr"`
	RemoteAddr netip.AddrPort `json:"remote_addr"`
	// LocalID and RemoteID are the identities, as in the configuration
	// ("gw-a.example", "192.0.2.1", "CN=gw-b"); RemoteID is empty until
	// IKE_AUTH completes.
	LocalID  string `json:"local_id"`
	RemoteID string `json:"remote_id"`
	// SPIi and SPIr are the initiator's and responder's IKE SPIs, 16 hex
	// digits each; SPIr is "0000000000000000" until the response arrives.
	SPIi IKESPI `json:"spi_i"`
	SPIr IKESPI `json:"spi_r"`
	// Proposal is the negotiated IKE proposal as a strongSwan keyword
	// ("aes256gcm16-prfsha256-x25519"); empty while connecting.
	Proposal string `json:"proposal"`
	// Encap is true if UDP encapsulation is in use (NAT detected or forced;
	// RFC 7296, Section 2.23).
	Encap bool `json:"encap"`
	// Established is when authentication completed; absent while
	// connecting.
	Established time.Time `json:"established,omitzero"`
	// RekeyAt is when this end will rekey the IKE SA; absent if never.
	RekeyAt time.Time `json:"rekey_at,omitzero"`
}

// CHILD SA states, the values of [ChildSA.State].
const (
	ChildInstalled = "installed" // both directions in the SAD, carrying traffic
	ChildRekeying  = "rekeying"  // a CREATE_CHILD_SA rekey is in progress (RFC 7296, Section 2.8)
	ChildRekeyed   = "rekeyed"   // replaced; inbound kept until the peer deletes it
	ChildDeleting  = "deleting"  // being deleted
)

// ChildSA describes one CHILD SA: a pair of IPsec SAs, one inbound and one
// outbound (RFC 7296, Section 1.3), negotiated by IKE or configured by hand.
type ChildSA struct {
	// Name is "connection/child" for a negotiated SA, or the name of a
	// manual SA from the manual_sas section.
	Name string `json:"name"`
	// Manual is true for an SA from manual_sas (no IKE).
	Manual bool `json:"manual"`
	// IKESA is the ID of the IKE SA that negotiated this SA, 0 if manual.
	IKESA uint32 `json:"ike_sa,omitempty"`
	// State is one of "installed", "rekeying", "rekeyed", "deleting".
	State string `json:"state"`
	// Protocol is "esp" (RFC 4303) or "ah" (RFC 4302).
	Protocol string `json:"protocol"`
	// Mode is "tunnel" or "transport" (RFC 4301, Section 4.1).
	Mode string `json:"mode"`
	// Encap is "udp" for ESP in UDP on port 4500 (RFC 3948) or "none" for
	// IP protocol 50/51.
	Encap string `json:"encap"`
	// LocalAddr and RemoteAddr are the outer addresses.
	LocalAddr  netip.Addr `json:"local_addr"`
	RemoteAddr netip.Addr `json:"remote_addr"`
	// SPIIn is the SPI of the inbound SA (chosen by this end) and SPIOut
	// that of the outbound SA, 8 hex digits each ("c0ffee01").
	SPIIn  SPI `json:"spi_in"`
	SPIOut SPI `json:"spi_out"`
	// Algorithm is the suite as a strongSwan keyword: "aes256gcm16",
	// "aes128-sha256", "sha256" for AH; with "-esn" left out (see ESN).
	Algorithm string `json:"algorithm"`
	// ESN is true if 64-bit extended sequence numbers are in use
	// (RFC 4303, Section 2.2.1).
	ESN bool `json:"esn"`
	// KE is the key exchange method of the CHILD SA's own key exchange
	// (PFS, RFC 7296 Section 1.3.1), as a strongSwan keyword such as
	// "x25519"; absent when the SA's keys came from the IKE SA alone.
	KE string `json:"ke,omitempty"`
	// KEs lists every key exchange of the CHILD SA in the order they ran:
	// KE first, then the Additional Key Exchanges of RFC 9370 (Section
	// 2.2.3), as strongSwan keywords (["x25519", "mlkem768"] for
	// aes256gcm16-x25519-ke1_mlkem768). Absent when KE is.
	KEs []string `json:"kes,omitempty"`
	// LocalTS and RemoteTS are the traffic selectors in strongSwan syntax:
	// "10.1.0.0/16", "10.2.0.53/32[udp/53]", "0.0.0.0/0". Never null.
	LocalTS  []string `json:"local_ts"`
	RemoteTS []string `json:"remote_ts"`
	// BytesIn, BytesOut, PacketsIn and PacketsOut count the protected
	// payload of this SA pair (RFC 4301, Section 4.4.2.1).
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	// ReplayDrops counts inbound packets rejected by the anti-replay window
	// (RFC 4303, Section 3.4.3).
	ReplayDrops uint64 `json:"replay_drops"`
	// ICVFailures counts inbound packets whose integrity check failed
	// (RFC 4303, Section 3.4.4).
	ICVFailures uint64 `json:"icv_failures"`
	// Installed is when the SA was installed.
	Installed time.Time `json:"installed"`
	// Lifetime holds the SA's limits; zero fields mean no limit.
	Lifetime Lifetime `json:"lifetime"`
}

// Lifetime holds an SA's soft (rekey) and hard (expire) limits
// (RFC 4301, Section 4.4.2.1). Absent fields mean no limit of that kind.
type Lifetime struct {
	// RekeyAt is when the soft time limit falls: a rekey starts.
	RekeyAt time.Time `json:"rekey_at,omitzero"`
	// ExpireAt is when the hard time limit falls: the SA is deleted.
	ExpireAt time.Time `json:"expire_at,omitzero"`
	// RekeyBytes and ExpireBytes are the soft and hard limits on bytes of
	// protected payload.
	RekeyBytes  uint64 `json:"rekey_bytes,omitempty"`
	ExpireBytes uint64 `json:"expire_bytes,omitempty"`
	// RekeyPackets and ExpirePackets are the soft and hard limits on packets.
	RekeyPackets  uint64 `json:"rekey_packets,omitempty"`
	ExpirePackets uint64 `json:"expire_packets,omitempty"`
}

// Policies is the body of GET /v1/policies: the SPD (RFC 4301, Section 4.4.1)
// in the order in which rules are evaluated; the first match wins.
type Policies struct {
	// Policies lists the rules, first evaluated first. Never null.
	Policies []Policy `json:"policies"`
}

// Policy actions, the values of [Policy.Action] and [ExplainResult.Action]
// (RFC 4301, Section 4.4.1).
const (
	ActionProtect = "protect" // apply IPsec with the rule's SA
	ActionBypass  = "bypass"  // pass in clear
	ActionDiscard = "discard" // drop
)

// Policy is one SPD rule.
type Policy struct {
	// Index is the rule's position in evaluation order; the first rule
	// is 1.
	Index int `json:"index"`
	// Name is "connection/child" for a rule made from a connection's
	// child, the manual SA's name for one made from manual_sas, or the
	// policy's name from the policies section.
	Name string `json:"name"`
	// Direction is "out" or "in" for a rule that applies to one direction,
	// absent for one that applies to both.
	Direction string `json:"direction,omitempty"`
	// LocalTS and RemoteTS are the selectors in strongSwan syntax
	// ("10.1.0.0/16", "10.2.0.53/32[udp/53]"); an empty list matches any
	// address. Never null.
	LocalTS  []string `json:"local_ts"`
	RemoteTS []string `json:"remote_ts"`
	// Action is "protect", "bypass" or "discard".
	Action string `json:"action"`
	// SA names the CHILD SA or manual SA that a protect rule uses (the
	// Name of a [ChildSA]); absent for bypass and discard.
	SA string `json:"sa,omitempty"`
	// Hits counts the packets that matched this rule.
	Hits uint64 `json:"hits"`
}

// NameRequest is the body of POST /v1/initiate, /v1/terminate and /v1/rekey.
type NameRequest struct {
	// Name is "connection" (the IKE SA and all its children),
	// "connection/child" (one CHILD SA) or, for terminate, a manual SA's
	// name. See [SplitName].
	Name string `json:"name"`
}

// ActionResult is the body of a successful initiate, terminate or rekey.
type ActionResult struct {
	// Name echoes the request's name.
	Name string `json:"name"`
	// Action is "initiate", "terminate" or "rekey".
	Action string `json:"action"`
}

// ReloadResult is the body of a successful POST /v1/reload.
type ReloadResult struct {
	// Changed is false if the configuration file described the state the
	// daemon already had ("no changes").
	Changed bool `json:"changed"`
	// Summary says what changed in one line ("added connection site-c;
	// removed policy dns"); absent when nothing did.
	Summary string `json:"summary,omitempty"`
}

// ExplainRequest is the body of POST /v1/explain: a packet to classify.
type ExplainRequest struct {
	// Src and Dst are the packet's (inner) source and destination.
	Src netip.Addr `json:"src"`
	Dst netip.Addr `json:"dst"`
	// Proto is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6);
	// 0 means unspecified, which matches only selectors for any protocol.
	Proto uint8 `json:"proto"`
	// SPort and DPort are the transport ports; 0 means unspecified. For
	// ICMP and ICMPv6, DPort carries type<<8 | code, the way IKEv2 traffic
	// selectors encode them (RFC 7296, Section 3.13.1).
	SPort uint16 `json:"sport,omitempty"`
	DPort uint16 `json:"dport,omitempty"`
	// Direction is "out" (a packet this host would send, the default when
	// empty) or "in" (a packet received in clear).
	Direction string `json:"direction,omitempty"`
}

// ExplainResult is the body of a successful POST /v1/explain.
type ExplainResult struct {
	// Request echoes the request, with Direction filled in.
	Request ExplainRequest `json:"request"`
	// Matched is true if a rule matched; false means no rule did and
	// Action is the default.
	Matched bool `json:"matched"`
	// Rule is the rule that matched; absent if none did.
	Rule *Policy `json:"rule,omitempty"`
	// Action is what happens to the packet: "protect", "bypass" or
	// "discard" (RFC 4301, Section 5.1: with no matching rule, discard).
	Action string `json:"action"`
	// Reason explains the verdict in one line ("no SA yet: would start
	// IKE (acquire)").
	Reason string `json:"reason,omitempty"`
	// Steps lists the rules tried, in order, up to and including the one
	// that matched. Never null.
	Steps []ExplainStep `json:"steps"`
	// Group is the policy group that decided ("private-or-clear"),
	// through its rule for the most specific prefix that holds the peer
	// or through a rule for the peer alone; absent when no group did.
	Group string `json:"group,omitempty"`
	// GroupPrefix is the group's prefix that holds the peer.
	GroupPrefix string `json:"group_prefix,omitempty"`
	// Fallback is set for a peer of a private-or-clear group: whether its
	// traffic fell back to the clear, and until when.
	Fallback *Fallback `json:"fallback,omitempty"`
}

// Fallback is the state of a private-or-clear peer's fallback to the clear.
type Fallback struct {
	// Active is true while the peer's traffic goes in the clear.
	Active bool `json:"active"`
	// Until is when an active fallback ends (the next packet then tries
	// IKE again), or when a negotiation under way runs out of time.
	Until time.Time `json:"until,omitzero"`
	// Negotiating is true while IKE with the peer is timed.
	Negotiating bool `json:"negotiating,omitempty"`
}

// Peers is the body of GET /v1/peers: the peers of the connections for
// many hosts (policy groups and connections with several remote
// addresses), one entry per peer address.
type Peers struct {
	// Peers is sorted by address. Never null.
	Peers []Peer `json:"peers"`
}

// Peer states, the values of [Peer.State].
const (
	PeerConnecting  = "connecting"  // IKE is under way
	PeerEstablished = "established" // an IKE SA is up
	PeerClear       = "clear"       // a private-or-clear fallback: traffic in the clear until Until
)

// Peer is one on-demand peer.
type Peer struct {
	Addr netip.Addr `json:"addr"`
	// Connection is the configuration that serves the peer.
	Connection string `json:"connection"`
	// Group is the policy group of the peer's address, if any.
	Group string `json:"group,omitempty"`
	// State is one of the Peer* constants.
	State string `json:"state"`
	// RemoteID is the peer's authenticated identity.
	RemoteID string `json:"remote_id,omitempty"`
	// Initiator is true when this host started the IKE SA.
	Initiator bool `json:"initiator,omitempty"`
	// Children is the number of CHILD SAs with the peer.
	Children int `json:"children"`
	// Since is when the IKE SA was established, or the fallback began.
	Since time.Time `json:"since,omitzero"`
	// Until ends a fallback to the clear.
	Until time.Time `json:"until,omitzero"`
}

// ExplainStep is one rule tried by explain.
type ExplainStep struct {
	// Index and Name identify the rule, as in [Policy].
	Index int    `json:"index"`
	Name  string `json:"name"`
	// Matched is true for the rule that matched.
	Matched bool `json:"matched"`
	// Reason says why the rule did or did not match ("dst 10.9.0.1 not in
	// remote_ts 10.2.0.0/16").
	Reason string `json:"reason"`
}

// Event types, the values of [Event.Type]. New types may be added; clients
// must skip types they do not know.
const (
	EventIKEUp        = "ike_up"        // an IKE SA was established; fields: name, id, remote_addr, remote_id
	EventIKEDown      = "ike_down"      // an IKE SA was deleted; fields: name, id, reason
	EventIKERekeyed   = "ike_rekeyed"   // an IKE SA was replaced; fields: name, id, new_id
	EventChildUp      = "child_up"      // a CHILD SA was installed; fields: name, spi_in, spi_out
	EventChildDown    = "child_down"    // a CHILD SA was deleted; fields: name, spi_in, spi_out, reason
	EventChildRekeyed = "child_rekeyed" // a CHILD SA was replaced; fields: name, spi_in, spi_out
	EventAcquire      = "acquire"       // a packet needed an SA that did not exist; fields: policy, src, dst
	EventExpire       = "expire"        // an SA reached a limit; fields: name, spi, direction, hard, kind
	EventAuthFailed   = "auth_failed"   // a peer failed authentication; fields: name, remote_addr, reason
	EventReload       = "reload"        // the configuration was reloaded; fields: changed, summary
	EventFallback     = "fallback"      // a private-or-clear peer's traffic fell back to the clear; fields: peer, group, until, reason (the refusal, or no SA within fallback_timeout)
	EventFallbackEnd  = "fallback_end"  // a fallback to the clear ended, the next packet tries IKE; fields: peer, group
	EventPolicySource = "policy_source" // a shared policy source's policy was applied or refused; fields: source, result (applied, refused), error
)

// Event is one line of the GET /v1/events stream.
type Event struct {
	// Type is one of the Event* constants.
	Type string `json:"type"`
	// Time is when the event happened.
	Time time.Time `json:"time"`
	// Fields carries the event's details as strings (SPIs in hex, like
	// [SPI]); the keys each type carries are listed with the Event*
	// constants. Absent if there are none.
	Fields map[string]string `json:"fields,omitempty"`
}

// SPI is an IPsec SPI (RFC 4303, Section 2.1). In JSON it is a string of 8
// lowercase hex digits, "c0ffee01".
type SPI uint32

// String returns the SPI as 8 hex digits.
func (s SPI) String() string { return fmt.Sprintf("%08x", uint32(s)) }

// MarshalText implements encoding.TextMarshaler.
func (s SPI) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. It accepts 1 to 8 hex
// digits, with or without a leading "0x".
func (s *SPI) UnmarshalText(b []byte) error {
	v, err := parseHex(string(b), 32)
	if err != nil {
		return fmt.Errorf("ctlapi: SPI %q: %w", b, err)
	}
	*s = SPI(v)
	return nil
}

// IKESPI is an IKE SPI (RFC 7296, Section 3.1). In JSON it is a string of 16
// lowercase hex digits.
type IKESPI uint64

// String returns the SPI as 16 hex digits.
func (s IKESPI) String() string { return fmt.Sprintf("%016x", uint64(s)) }

// MarshalText implements encoding.TextMarshaler.
func (s IKESPI) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. It accepts 1 to 16 hex
// digits, with or without a leading "0x".
func (s *IKESPI) UnmarshalText(b []byte) error {
	v, err := parseHex(string(b), 64)
	if err != nil {
		return fmt.Errorf("ctlapi: IKE SPI %q: %w", b, err)
	}
	*s = IKESPI(v)
	return nil
}

func parseHex(s string, bits int) (uint64, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" || len(s) > bits/4 {
		return 0, fmt.Errorf("want 1 to %d hex digits", bits/4)
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return 0, fmt.Errorf("want 1 to %d hex digits", bits/4)
		}
	}
	return strconv.ParseUint(s, 16, bits)
}
