package config

import (
	"fmt"
	"strings"
	"time"
)

// This file is the configuration reference: one row per key of the YAML
// file. docs/config.md and docs/goipsec.schema.json are generated from it
// (go test ./config -run 'TestConfigReference|TestConfigSchema' -update),
// and reference_check_test.go holds it to the parser: every key the
// decoder knows is documented here with the kind the decoder reads, every
// key here is one the decoder knows, and every example parses.

// kind is how the decoder reads a key's value.
type kind string

const (
	kMapping  kind = "mapping"
	kNames    kind = "mapping of names"
	kItems    kind = "list of mappings"
	kString   kind = "string"
	kAbsPath  kind = "absolute path"
	kFile     kind = "file path"
	kInt      kind = "integer"
	kUint     kind = "unsigned integer"
	kBool     kind = "boolean"
	kDuration kind = "duration"
	kEnum     kind = "enum"
	kList     kind = "list"
	kTS       kind = "list of traffic selectors"
	kSecret   kind = "secret"
	kHexKey   kind = "hex key"
	kSPI      kind = "SPI"
	kAddr     kind = "IP address"
)

// scalar reports whether the decoder reads the kind as one YAML scalar.
func (k kind) scalar() bool {
	switch k {
	case kMapping, kNames, kItems, kList, kTS:
		return false
	}
	return true
}

// refKey documents one key. Paths are dotted; "<name>" stands for a name
// the user chooses (connections, children) and "[]" for a list item.
type refKey struct {
	path     string
	kind     kind
	def      string   // default as written in the file; "" for none
	enum     []string // kEnum values, in the decoder's order
	lo, hi   int64    // kInt range (when lo != hi)
	required bool
	refused  bool // the decoder knows the key and always refuses it
	doc      string
	example  string         // a YAML value; "" for mappings
	schema   map[string]any // merged into the key's generated schema
}

// durText writes a default duration as a user would: "4h", not "4h0m0s".
func durText(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// name is the key's last path element.
func (r refKey) name() string {
	return r.path[strings.LastIndex(r.path, ".")+1:]
}

// nonEmptyTS is the schema of selectors that may be left out but not empty.
var nonEmptyTS = map[string]any{"allOf": []any{map[string]any{"$ref": "#/$defs/selectors"}, nonEmpty}}

var reference = []refKey{
	// daemon
	{path: "daemon", kind: kMapping, doc: "The daemon's own settings."},
	{path: "daemon.socket", kind: kAbsPath, def: DefaultSocket, example: "/run/goipsec/ipsecd.sock",
		doc: "The control socket (mode 0600) that ipsecctl and the control API use."},
	{path: "daemon.state_dir", kind: kAbsPath, def: DefaultStateDir, example: "/var/lib/goipsec",
		doc: "Where state that must survive a restart is kept: the send counters of manual SAs, reserved in blocks on disk so that a nonce never repeats. Created with mode 0700."},
	{path: "daemon.tun", kind: kMapping, doc: "The TUN device the data plane reads and writes."},
	{path: "daemon.tun.name", kind: kString, def: DefaultTUNName, example: "ipsec0",
		doc:    "Interface name: at most 15 letters, digits, '-', '_' or '.'.",
		schema: map[string]any{"pattern": `^[A-Za-z0-9._-]{1,15}$`}},
	{path: "daemon.tun.mtu", kind: kInt, lo: 576, hi: 65535, def: fmt.Sprint(DefaultTUNMTU), example: "1400",
		doc: "MTU of the TUN device. IPv4 needs at least 576 (RFC 791); below 1280 it carries no IPv6 (RFC 8200, Section 5)."},
	{path: "daemon.log", kind: kMapping, doc: "Logging (log/slog). Key material is never logged."},
	{path: "daemon.log.level", kind: kEnum, enum: []string{"debug", "info", "warn", "error"}, def: "info", example: "info",
		doc: "The lowest level logged."},
	{path: "daemon.log.format", kind: kEnum, enum: []string{"text", "json"}, def: "text", example: "json",
		doc: "Log line format."},
	{path: "daemon.log.subsystems", kind: kMapping,
		doc: "A level per subsystem, like charon's filelog levels; a subsystem not named here logs at daemon.log.level. Changed levels apply on reload."},
	{path: "daemon.log.subsystems.ike", kind: kEnum, enum: []string{"debug", "info", "warn", "error"}, def: "daemon.log.level", example: "debug",
		doc: "The lowest level logged by the IKEv2 engine."},
	{path: "daemon.log.subsystems.dataplane", kind: kEnum, enum: []string{"debug", "info", "warn", "error"}, def: "daemon.log.level", example: "debug",
		doc: "The lowest level logged by the data plane."},
	{path: "daemon.log.subsystems.policy", kind: kEnum, enum: []string{"debug", "info", "warn", "error"}, def: "daemon.log.level", example: "debug",
		doc: "The lowest level logged by the policy agent (routes and firewall retries)."},
	{path: "daemon.log.subsystems.config", kind: kEnum, enum: []string{"debug", "info", "warn", "error"}, def: "daemon.log.level", example: "debug",
		doc: "The lowest level logged by configuration loading and reloads."},
	{path: "daemon.log.subsystems.daemon", kind: kEnum, enum: []string{"debug", "info", "warn", "error"}, def: "daemon.log.level", example: "debug",
		doc: "The lowest level logged by the daemon itself."},
	{path: "daemon.log.subsystems.ctl", kind: kEnum, enum: []string{"debug", "info", "warn", "error"}, def: "daemon.log.level", example: "debug",
		doc: "The lowest level logged by the control socket."},
	{path: "daemon.ike", kind: kMapping,
		doc: "IKEv2 engine timers and denial-of-service limits, like strongSwan's charon.retransmit_*, half_open_timeout and cookie_threshold. Read at start only; 0 or absent means the default."},
	{path: "daemon.ike.retransmit_timeout", kind: kDuration, def: "4s", example: "4s",
		doc: "Time before the first retransmission of an IKE request; each next one waits 1.8 times longer."},
	{path: "daemon.ike.retransmit_tries", kind: kInt, lo: 0, hi: 20, def: "5", example: "5",
		doc: "Retransmissions before the IKE SA is given up."},
	{path: "daemon.ike.half_open_timeout", kind: kDuration, def: "30s", example: "30s",
		doc: "How long a half-open IKE SA (IKE_SA_INIT answered, no IKE_AUTH yet) is kept."},
	{path: "daemon.ike.cookie_threshold", kind: kInt, lo: -1, hi: 1_000_000, def: "10", example: "10",
		doc: "Above this many half-open IKE SAs, and before either limit below drops a request, IKE_SA_INIT must return a cookie (RFC 7296, Section 2.6). -1: never ask for cookies."},
	{path: "daemon.ike.max_half_open", kind: kInt, lo: 1, hi: 1_000_000, def: "1000", example: "1000",
		doc: "At most this many half-open IKE SAs in all; further requests are dropped."},
	{path: "daemon.ike.max_half_open_per_source", kind: kInt, lo: -1, hi: 1_000_000, def: "5", example: "5",
		doc: "At most this many half-open IKE SAs per source (one IPv4 address or one IPv6 /64). -1: no per-source limit."},
	{path: "daemon.ike.cookie_lifetime", kind: kDuration, def: "1m", example: "1m",
		doc: "How often the cookie secret changes; cookies of the previous secret are accepted for one more lifetime."},
	{path: "daemon.on_stop", kind: kEnum, enum: []string{"keep", "clear"}, def: "keep", example: "keep",
		doc: "What a clean stop leaves: keep leaves the routing rule, the prohibit routes and the nftables table in force (fail closed: protected traffic is dropped, never sent in the clear, while no daemon runs); clear removes them. `ipsecd --cleanup` removes what a stopped daemon kept."},
	{path: "daemon.metrics", kind: kMapping, doc: "The Prometheus endpoint."},
	{path: "daemon.metrics.listen", kind: kString, example: "127.0.0.1:9909",
		doc:    "host:port serving /metrics; absent or empty disables the endpoint. If it cannot be bound the daemon stops at startup.",
		schema: map[string]any{"pattern": `^(\[[^\]]*\]|[^:\[\]]*):[^:\[\]]+$`}},

	// policy_sources
	{path: "policy_sources", kind: kMapping,
		doc: "Where policy comes from besides this file, which is always the first source and enough on its own. Read at start only. See [guide-etcd.md](guide-etcd.md)."},
	{path: "policy_sources.etcd", kind: kMapping,
		doc: "An etcd cluster whose keys under prefix are policy documents (connections, policies, groups, secrets with secret_file, and targets that select hosts by label). Each change is validated as strictly as this file, merged after it, and applied whole; the last good policy is cached on disk and stays in force while etcd is unreachable."},
	{path: "policy_sources.etcd.endpoints", kind: kList, required: true, example: "[https://10.0.0.11:2379, https://10.0.0.12:2379]",
		doc: "The cluster's client URLs, http:// or https://."},
	{path: "policy_sources.etcd.prefix", kind: kString, def: DefaultEtcdPrefix, example: "/goipsec/policy/",
		doc: "The key prefix of the policy documents; it starts and ends with '/'. Documents apply in key order."},
	{path: "policy_sources.etcd.labels", kind: kList, example: "[role=web, site=paris]",
		doc: "This host's labels, name=value. A document whose targets name only labels the host has, with the same values, is for this host; a document without targets is for every host."},
	{path: "policy_sources.etcd.cert", kind: kFile, example: "etcd-client.pem",
		doc: "TLS client certificate (PEM) presented to etcd; relative to this file's directory, read at start. Give cert and key together."},
	{path: "policy_sources.etcd.key", kind: kFile, example: "etcd-client.key",
		doc: "The client certificate's private key (PEM), mode 0600."},
	{path: "policy_sources.etcd.ca", kind: kFile, example: "etcd-ca.pem",
		doc: "CA certificates (PEM) that verify the etcd servers; without it an https:// endpoint is verified against the system's roots."},
	{path: "policy_sources.etcd.dial_timeout", kind: kDuration, def: durText(DefaultEtcdDialTimeout), example: "5s",
		doc: "How long a connection to the cluster may take."},
	{path: "policy_sources.etcd.request_timeout", kind: kDuration, def: durText(DefaultEtcdRequestTimeout), example: "5s",
		doc: "How long one read of the documents may take."},
	{path: "policy_sources.etcd.resync", kind: kDuration, def: durText(DefaultEtcdResync), example: "1m",
		doc: "How often every document is read again, besides watching the prefix (changes apply within about a second)."},
	{path: "policy_sources.etcd.cache", kind: kAbsPath, def: "daemon.state_dir/" + DefaultEtcdCacheName, example: "/var/lib/goipsec/etcd-policy.json",
		doc: "The file (mode 0600, written atomically) that keeps the documents of the last good policy; ipsecd starts from it when the cluster cannot be reached."},

	// connections
	{path: "connections", kind: kNames, doc: "IKEv2 connections by name (letters, digits, '.', '_', '-'; at most 64), as in swanctl.conf."},
	{path: "connections.<name>.version", kind: kInt, lo: 0, hi: 2, def: "2", example: "2",
		doc:    "IKE major version: 2 (0 means 2). IKEv1 is refused.",
		schema: map[string]any{"enum": []any{0, 2, "0", "2"}}},
	{path: "connections.<name>.local_addrs", kind: kList, def: "%any", example: "[192.0.2.1]",
		doc: "Local addresses: IP addresses, prefixes, DNS names or %any."},
	{path: "connections.<name>.remote_addrs", kind: kList, def: "%any", example: "[198.51.100.2]",
		doc: "Peer addresses: IP addresses, prefixes, ranges (10.0.0.10-10.0.0.50), DNS names or %any (quoted in YAML, or the plain spelling any). With several, a trapped child starts one IKE SA per peer, to the destination of the packet, and any of them may initiate."},
	{path: "connections.<name>.proposals", kind: kList, def: "default", example: "[aes256gcm16-prfsha256-x25519]",
		doc: "IKE proposals in strongSwan keyword syntax, in preference order: encryption, integrity (not with AEAD), PRF, key exchange, and RFC 9370 additional key exchanges (ke1_mlkem768; ke1_none makes one optional). default is the built-in list."},
	{path: "connections.<name>.encap", kind: kBool, def: "false", example: "true",
		doc: "Force UDP encapsulation (port 4500, RFC 3948) even without NAT."},
	{path: "connections.<name>.dpd_delay", kind: kDuration, def: "0 (off)", example: "30s",
		doc: "Interval of dead peer detection (liveness checks); 0 disables them."},
	{path: "connections.<name>.rekey_time", kind: kDuration, def: durText(DefaultIKERekeyTime), example: "4h",
		doc: "IKE SA rekey interval."},
	{path: "connections.<name>.over_time", kind: kDuration, def: "10% of the longer of rekey_time and reauth_time", example: "24m",
		doc: "Hard lifetime past rekey_time (reauth_time): an IKE SA not rekeyed (reauthenticated) by then is deleted."},
	{path: "connections.<name>.rand_time", kind: kDuration, def: "over_time", example: "24m",
		doc: "Up to this much is subtracted at random from rekey_time and reauth_time, so that many SAs do not rekey at once; 0: no jitter."},
	{path: "connections.<name>.reauth_time", kind: kDuration, def: "0 (off)", example: "24h",
		doc: "Reauthentication interval, make before break: a new IKE SA with new CHILD SAs, then the old one is deleted."},
	{path: "connections.<name>.dpd_timeout", kind: kDuration, def: "0 (the retransmission schedule)", example: "30s",
		doc: "If set, the peer is dead this long after an unanswered liveness check; otherwise when the retransmissions of daemon.ike give up."},
	{path: "connections.<name>.dpd_action", kind: kEnum, enum: []string{"clear", "none", "trap", "start", "restart"}, def: "clear", example: "restart",
		doc: "What happens when the peer is declared dead: clear (none) removes the SAs, trap re-arms the trap policy, start (restart) initiates again."},
	{path: "connections.<name>.close_action", kind: kEnum, enum: []string{"clear", "none", "trap", "start", "restart"}, def: "clear", example: "trap",
		doc: "What happens when the peer deletes the IKE SA: as dpd_action."},
	{path: "connections.<name>.unique", kind: kEnum, enum: []string{"no", "never", "keep", "replace"}, def: "no", example: "replace",
		doc: "Several IKE SAs with one remote identity: no allows them (INITIAL_CONTACT replaces), never ignores INITIAL_CONTACT, keep refuses the new one, replace deletes the older ones."},
	{path: "connections.<name>.local", kind: kMapping, doc: "How this host authenticates."},
	{path: "connections.<name>.local.auth", kind: kEnum, enum: []string{"psk", "pubkey"}, def: "pubkey", example: "psk",
		doc: "psk: a pre-shared key from secrets.ike; pubkey: the certificate in certs and its key."},
	{path: "connections.<name>.local.id", kind: kString, def: "the IP address", example: "gw-a.example",
		doc:    "This host's IKE identity: an FQDN, user@FQDN, IP address, distinguished name or @#hex key ID. Not a pattern. With pubkey, the certificate's subject DN by default.",
		schema: map[string]any{"pattern": `^[^*]*$`, "not": map[string]any{"const": "%any"}}},
	{path: "connections.<name>.local.certs", kind: kList, example: "[gw-a.pem]",
		doc: "PEM certificate files (auth: pubkey): this host's first, then intermediates. Relative paths are resolved against the configuration file's directory."},
	{path: "connections.<name>.local.cacerts", kind: kList, example: "[ca.pem]",
		doc: "Accepted as in swanctl.conf, not used today: the chain this host sends is certs."},
	{path: "connections.<name>.local.key", kind: kFile, example: "gw-a.key",
		doc: "PKCS#8, PKCS#1 or SEC 1 PEM private key of certs[0] (auth: pubkey). Only its owner may read it (mode 0600), or the configuration is refused."},
	{path: "connections.<name>.remote", kind: kMapping, doc: "How the peer must authenticate."},
	{path: "connections.<name>.remote.auth", kind: kEnum, enum: []string{"psk", "pubkey"}, def: "pubkey", example: "psk",
		doc: "psk or pubkey (certificate chain verified to cacerts)."},
	{path: "connections.<name>.remote.id", kind: kString, def: "the peer's IP address", example: "\"*.example.org\"",
		doc: "The identity the peer must prove. Empty: an IP address identity equal to the address it speaks from. A pattern as in strongSwan: %any (any identity), *.example.org or *@example.org (that ending), CN=* (any value of a DN attribute); no other wildcard. A responder prefers an exact id, then a pattern, then %any."},
	{path: "connections.<name>.remote.certs", kind: kList, example: "[gw-b.pem]",
		doc: "PEM certificates the peer may use, trusted as they are (auth: pubkey)."},
	{path: "connections.<name>.remote.cacerts", kind: kList, example: "[ca.pem]",
		doc: "PEM CA certificates that verify the peer's chain (auth: pubkey)."},
	{path: "connections.<name>.remote.key", kind: kFile, example: "gw-b.key",
		doc: "Refused: only local takes a private key.", refused: true},
	{path: "connections.<name>.children", kind: kNames, required: true,
		doc: "CHILD SAs by name; at least one."},
	{path: "connections.<name>.children.<name>.mode", kind: kEnum, enum: []string{"tunnel", "transport"}, def: "tunnel", example: "tunnel",
		doc: "IPsec mode (RFC 4301, Section 4.1). A child that leaves out mode, local_ts and remote_ts is in transport mode, with dynamic selectors: the two hosts."},
	{path: "connections.<name>.children.<name>.local_ts", kind: kTS, def: "dynamic (transport mode)", schema: nonEmptyTS, example: "[10.1.0.0/16]",
		doc: "Local traffic selectors in strongSwan syntax: prefix[protocol/port], as in 10.1.0.0/16 or 10.1.0.5/32[tcp/443]. Required in tunnel mode, except in a group's connection; in transport mode, and in tunnel mode in a group's connection, leaving out both local_ts and remote_ts means strongSwan's dynamic: the two IKE addresses, per peer (a tunnel between the two hosts, for peers that only do tunnel mode)."},
	{path: "connections.<name>.children.<name>.remote_ts", kind: kTS, def: "dynamic (transport mode)", schema: nonEmptyTS, example: "[10.2.0.0/16, \"10.3.0.0/16[tcp/443]\"]",
		doc: "Remote traffic selectors, as local_ts. With dynamic selectors, remote_addrs (or a group) says which peers the child's policy covers."},
	{path: "connections.<name>.children.<name>.esp_proposals", kind: kList, def: "default", example: "[aes256gcm16-x25519-ke1_mlkem768]",
		doc: "ESP proposals: cipher, integrity (not with AEAD), key exchange methods for PFS, additional key exchanges (RFC 9370) and esn/noesn (noesn by default). Not with ah_proposals."},
	{path: "connections.<name>.children.<name>.ah_proposals", kind: kList, example: "[sha256]",
		doc: "AH proposals instead of ESP (the child then uses AH, RFC 4302): integrity, PFS, esn/noesn."},
	{path: "connections.<name>.children.<name>.start_action", kind: kEnum, enum: []string{"none", "trap", "start"}, def: "none", example: "trap",
		doc: "none: wait for the peer; trap: install the policy, the first packet starts IKE; start: initiate at load."},
	{path: "connections.<name>.children.<name>.rekey_time", kind: kDuration, def: durText(DefaultChildRekeyTime), example: "1h",
		doc: "CHILD SA rekey interval."},
	{path: "connections.<name>.children.<name>.life_time", kind: kDuration, def: "rekey_time + 10%", example: "66m",
		doc: "Hard lifetime: the CHILD SA is deleted if not rekeyed by then."},
	{path: "connections.<name>.children.<name>.rand_time", kind: kDuration, def: "life_time - rekey_time", example: "6m",
		doc: "Up to this much is subtracted at random from rekey_time; 0: no jitter."},
	{path: "connections.<name>.children.<name>.rekey_bytes", kind: kUint, def: "0 (none)", example: "1000000000",
		doc: "Soft byte limit: the data plane asks for a rekey after this many bytes."},
	{path: "connections.<name>.children.<name>.life_bytes", kind: kUint, def: "rekey_bytes + 10% (none without it)", example: "1100000000",
		doc: "Hard byte limit: the SA is deleted after this many bytes."},
	{path: "connections.<name>.children.<name>.rekey_packets", kind: kUint, def: "0 (none)", example: "1000000",
		doc: "Soft packet limit: the data plane asks for a rekey after this many packets."},
	{path: "connections.<name>.children.<name>.life_packets", kind: kUint, def: "rekey_packets + 10% (none without it)", example: "1100000",
		doc: "Hard packet limit: the SA is deleted after this many packets."},
	{path: "connections.<name>.children.<name>.replay_window", kind: kInt, lo: MinReplayWindow, hi: MaxReplayWindow, def: fmt.Sprint(DefaultReplayWindow), example: "1024",
		doc: "Anti-replay window in packets (RFC 4303, Section 3.4.3: at least 32)."},

	// policies
	{path: "policies", kind: kItems, doc: "SPD rules that are not connections, in SPD order (RFC 4301, Section 4.4.1)."},
	{path: "policies[].name", kind: kString, required: true, example: "dns",
		doc:    "Unique name (also among manual SAs): letters, digits, '.', '_', '-'.",
		schema: map[string]any{"pattern": `^[A-Za-z0-9._-]{1,64}$`}},
	{path: "policies[].local_ts", kind: kTS, def: "any", example: "[10.1.0.0/16]",
		doc: "Local traffic selectors; absent means any."},
	{path: "policies[].remote_ts", kind: kTS, def: "any", example: "[\"10.2.0.53/32[udp/53]\"]",
		doc: "Remote traffic selectors; absent means any."},
	{path: "policies[].action", kind: kEnum, enum: []string{"bypass", "discard"}, required: true, example: "bypass",
		doc: "bypass: send and accept in the clear; discard: drop."},

	// groups
	{path: "groups", kind: kMapping, doc: "Policy groups by name, as Libreswan's opportunistic groups: each lists prefixes, and the most specific prefix of all groups decides what happens to a peer's traffic (see guide-network.md for the table)."},
	{path: "groups.private", kind: kMapping, doc: "Protected, never clear: outbound packets wait for an SA with the peer (one IKE SA per peer, started by the first packet), inbound cleartext is dropped."},
	{path: "groups.private.prefixes", kind: kList, required: true, example: "[10.77.0.0/24]", doc: "Prefixes (or addresses) of the group."},
	{path: "groups.private.connection", kind: kString, required: true, schema: map[string]any{"pattern": namePattern}, example: "hosts", doc: "The connection (with exactly one child) that protects the group's traffic, per peer."},
	{path: "groups.private-or-clear", kind: kMapping, doc: "Try IKE; if the peer does not answer within fallback_timeout or refuses, send and accept its traffic in the clear for fallback_time, then try again."},
	{path: "groups.private-or-clear.prefixes", kind: kList, required: true, example: "[10.77.0.0/16]", doc: "Prefixes (or addresses) of the group."},
	{path: "groups.private-or-clear.connection", kind: kString, required: true, schema: map[string]any{"pattern": namePattern}, example: "hosts", doc: "The connection that protects the group's traffic, per peer."},
	{path: "groups.private-or-clear.fallback_timeout", kind: kDuration, def: durText(DefaultFallbackTimeout), example: "3s", doc: "How long a negotiation may take before the peer's traffic falls back to the clear."},
	{path: "groups.private-or-clear.fallback_time", kind: kDuration, def: "10m", example: "5m", doc: "How long a fallback to the clear is remembered before IKE is tried again."},
	{path: "groups.clear-or-private", kind: kMapping, doc: "Send in the clear, but answer a peer that initiates IKE; its traffic is then protected while the SA lasts."},
	{path: "groups.clear-or-private.prefixes", kind: kList, required: true, example: "[10.0.0.0/8]", doc: "Prefixes (or addresses) of the group."},
	{path: "groups.clear-or-private.connection", kind: kString, required: true, schema: map[string]any{"pattern": namePattern}, example: "hosts", doc: "The connection that answers peers that initiate."},
	{path: "groups.clear", kind: kMapping, doc: "Bypass IPsec."},
	{path: "groups.clear.prefixes", kind: kList, required: true, example: "[10.77.0.1/32]", doc: "Prefixes (or addresses) of the group."},
	{path: "groups.block", kind: kMapping, doc: "Discard, both directions."},
	{path: "groups.block.prefixes", kind: kList, required: true, example: "[10.77.9.0/24]", doc: "Prefixes (or addresses) of the group."},

	// manual_sas
	{path: "manual_sas", kind: kItems, doc: "Statically keyed SA pairs, one per direction, without IKE (like ip xfrm or setkey)."},
	{path: "manual_sas[].name", kind: kString, required: true, example: "lab",
		doc:    "Unique name (also among policies).",
		schema: map[string]any{"pattern": `^[A-Za-z0-9._-]{1,64}$`}},
	{path: "manual_sas[].protocol", kind: kEnum, enum: []string{"esp", "ah"}, def: "esp", example: "esp",
		doc: "ESP (RFC 4303) or AH (RFC 4302)."},
	{path: "manual_sas[].mode", kind: kEnum, enum: []string{"tunnel", "transport"}, def: "tunnel", example: "tunnel",
		doc: "IPsec mode."},
	{path: "manual_sas[].local_addr", kind: kAddr, required: true, example: "192.0.2.1",
		doc: "This host's outer unicast address."},
	{path: "manual_sas[].remote_addr", kind: kAddr, required: true, example: "198.51.100.2",
		doc: "The peer's outer unicast address, of the same family."},
	{path: "manual_sas[].encap", kind: kEnum, enum: []string{"udp", "none"}, def: "udp for ESP, none for AH", example: "udp",
		doc: "udp: ESP in UDP on port 4500 (RFC 3948); none: IP protocol 50 or 51. AH cannot be UDP-encapsulated."},
	{path: "manual_sas[].spi_out", kind: kSPI, required: true, example: "0x00001001",
		doc: "SPI of the outbound SA (the peer's spi_in); 256 or more (RFC 4303, Section 2.1), decimal or 0x hex."},
	{path: "manual_sas[].spi_in", kind: kSPI, required: true, example: "0x00002001",
		doc: "SPI of the inbound SA; unique per protocol among manual SAs."},
	{path: "manual_sas[].algorithm", kind: kString, required: true, example: "aes256gcm16",
		doc: "One suite, with the keywords of esp_proposals (ESP) or ah_proposals (AH), without key exchange."},
	{path: "manual_sas[].key_out", kind: kHexKey, required: true, example: keyOutHex,
		doc: "Outbound key in 0x hex, laid out as ip xfrm takes it (AEAD: key then 4-byte salt; otherwise cipher key then integrity key). Its length must fit algorithm."},
	{path: "manual_sas[].key_in", kind: kHexKey, required: true, example: keyInHex,
		doc: "Inbound key, as key_out; must differ from key_out (one key in both directions repeats nonces)."},
	{path: "manual_sas[].esn", kind: kBool, def: "false", example: "true",
		doc: "Extended (64-bit) sequence numbers (RFC 4303, Section 2.2.1)."},
	{path: "manual_sas[].replay_window", kind: kInt, lo: MinReplayWindow, hi: MaxReplayWindow, def: fmt.Sprint(DefaultReplayWindow), example: "1024",
		doc: "Anti-replay window in packets."},
	{path: "manual_sas[].local_ts", kind: kTS, def: "local_addr in transport mode", example: "[10.1.0.0/16]",
		doc: "The SA's local selectors: required in tunnel mode; in transport mode only local_addr itself."},
	{path: "manual_sas[].remote_ts", kind: kTS, def: "remote_addr in transport mode", example: "[10.2.0.0/16]",
		doc: "The SA's remote selectors, as local_ts."},
	{path: "manual_sas[].lifetime", kind: kMapping, doc: "Limits after which the SA expires (reported as events); absent fields mean none."},
	{path: "manual_sas[].lifetime.soft", kind: kMapping, doc: "Soft limits: a warning event. Each at most the hard one."},
	{path: "manual_sas[].lifetime.soft.bytes", kind: kUint, example: "1000000000", doc: "Bytes protected."},
	{path: "manual_sas[].lifetime.soft.packets", kind: kUint, example: "1000000", doc: "Packets protected."},
	{path: "manual_sas[].lifetime.soft.time", kind: kDuration, example: "20h", doc: "Time since installation."},
	{path: "manual_sas[].lifetime.hard", kind: kMapping, doc: "Hard limits: the SA stops."},
	{path: "manual_sas[].lifetime.hard.bytes", kind: kUint, example: "2000000000", doc: "Bytes protected."},
	{path: "manual_sas[].lifetime.hard.packets", kind: kUint, example: "2000000", doc: "Packets protected."},
	{path: "manual_sas[].lifetime.hard.time", kind: kDuration, example: "1d", doc: "Time since installation."},

	// secrets
	{path: "secrets", kind: kMapping, doc: "Credentials."},
	{path: "secrets.ike", kind: kItems, doc: "Pre-shared keys for IKE."},
	{path: "secrets.ike[].ids", kind: kList, required: true, example: "[gw-a.example, gw-b.example]",
		doc: "The local and the remote identity the key is for (one id when both are the same). Required: a key for any pair would let whoever knows it claim any identity. With a pattern or empty id in the connection, the pair is looked up at run time."},
	{path: "secrets.ike[].secret", kind: kSecret, example: "\"correct horse battery staple\"",
		doc: "The key: a string, 0x followed by hex, or 0s followed by base64, as in swanctl.conf. A file holding secrets must be readable by its owner only (chmod 600). Give secret or secret_file."},
	{path: "secrets.ike[].secret_file", kind: kFile, example: "psk.secret",
		doc: "A file holding the key (same forms, trailing newline ignored), mode 0600; relative to the configuration file's directory."},
}

// refExample is a complete configuration shown in docs/config.md. Between
// them the examples use every key that is not refused, and each parses
// (TestConfigReferenceExamples). files are the key and secret files next to
// the configuration that it reads.
type refExample struct {
	title, intro, text string
	files              []string
}

var refExamples = []refExample{
	{
		title: "An IKEv2 gateway with pre-shared keys",
		intro: "Every daemon setting (the values are the defaults, but for log.format and metrics), a tunnel with two children, one of them AH in transport mode, a bypass and a discard rule.",
		text: `daemon:
  socket: /run/goipsec/ipsecd.sock
  state_dir: /var/lib/goipsec
  tun: {name: ipsec0, mtu: 1400}
  log: {level: info, format: json, subsystems: {ike: debug, dataplane: warn, policy: info, config: info, daemon: info, ctl: warn}}
  ike:
    retransmit_timeout: 4s
    retransmit_tries: 5
    half_open_timeout: 30s
    cookie_threshold: 10
    max_half_open: 1000
    max_half_open_per_source: 5
    cookie_lifetime: 1m
  on_stop: keep
  metrics: {listen: 127.0.0.1:9909}
connections:
  site-b:
    version: 2
    local_addrs: [192.0.2.1]
    remote_addrs: [198.51.100.2]
    proposals: [aes256gcm16-prfsha256-x25519-ke1_mlkem768, aes256gcm16-prfsha256-x25519]
    encap: false
    dpd_delay: 30s
    dpd_timeout: 0s
    dpd_action: clear
    close_action: clear
    unique: no
    rekey_time: 4h
    over_time: 24m
    rand_time: 24m
    reauth_time: 0s
    local: {auth: psk, id: gw-a.example}
    remote: {auth: psk, id: gw-b.example}
    children:
      net:
        mode: tunnel
        local_ts: [10.1.0.0/16]
        remote_ts: [10.2.0.0/16, "10.3.0.0/16[tcp/443]"]
        esp_proposals: [aes256gcm16-x25519, aes256gcm16]
        start_action: trap
        rekey_time: 1h
        life_time: 66m
        rand_time: 6m
        rekey_bytes: 0
        life_bytes: 0
        rekey_packets: 0
        life_packets: 0
        replay_window: 1024
      mgmt:
        mode: transport
        local_ts: [192.0.2.1/32]
        remote_ts: ["198.51.100.2/32[tcp/22]"]
        ah_proposals: [sha256]
        start_action: none
policies:
  - {name: dns, remote_ts: ["10.2.0.53/32[udp/53]"], action: bypass}
  - name: no-telnet
    local_ts: [10.1.0.0/16]
    remote_ts: ["0.0.0.0/0[tcp/23]"]
    action: discard
secrets:
  ike:
    - {ids: [gw-a.example, gw-b.example], secret: "correct horse battery staple"}
`,
	},
	{
		title: "Certificates, and road warriors by identity pattern",
		intro: "Certificate files are PEM, relative to the configuration file; the private key must be mode 0600. The second connection accepts any peer whose identity ends in .example.org and that knows its pre-shared key, kept in a file.",
		text: `connections:
  hq:
    remote_addrs: [203.0.113.7]
    local: {auth: pubkey, certs: [gw-a.pem], cacerts: [ca.pem], key: gw-a.key}
    remote: {auth: pubkey, cacerts: [ca.pem], certs: [gw-b.pem], id: "O=Example, CN=*"}
    children:
      net: {local_ts: [10.1.0.0/16], remote_ts: [10.9.0.0/16], start_action: start}
  roadwarriors:
    local_addrs: [192.0.2.1]
    remote_addrs: [0.0.0.0/0]
    local: {auth: psk, id: gw-a.example}
    remote: {auth: psk, id: "*.example.org"}
    children:
      rw: {local_ts: [10.1.0.0/16], remote_ts: [10.100.0.0/16]}
secrets:
  ike:
    - {ids: [gw-a.example, laptop.example.org], secret_file: psk.secret}
`,
		files: []string{"gw-a.key", "psk.secret"},
	},
	{
		title: "A network of hosts, on demand, by policy groups",
		intro: "One file for every host of 10.77.0.0/24 (see guide-network.md): certificates from one CA with each host's address in subjectAltName, so the remote identity is left out and must be the address the peer speaks from. The first packet to a host of a private or private-or-clear prefix starts an IKE SA and a transport-mode CHILD SA with that host alone; the most specific prefix of all groups decides.",
		text: `connections:
  hosts:
    remote_addrs: [10.77.0.0/24, 10.78.0.10-10.78.0.50]
    local: {auth: pubkey, certs: [host.pem], key: host.key}
    remote: {auth: pubkey, cacerts: [ca.pem]}
    children:
      host: {mode: transport, start_action: trap}
groups:
  private:
    prefixes: [10.77.0.0/24]
    connection: hosts
  private-or-clear:
    prefixes: [10.77.0.200/29, 10.78.0.0/24]
    connection: hosts
    fallback_timeout: 3s
    fallback_time: 5m
  clear-or-private:
    prefixes: [10.0.0.0/8]
    connection: hosts
  clear:
    prefixes: [10.77.0.1/32]
  block:
    prefixes: [10.77.0.254/32]
`,
		files: []string{"host.key"},
	},
	{
		title: "Group policy from etcd",
		intro: "The local file names the cluster and this host's labels; the policy documents under the prefix are merged after the file's own policy (see guide-etcd.md). The client key must be mode 0600.",
		text: `policy_sources:
  etcd:
    endpoints: [https://10.0.0.11:2379, https://10.0.0.12:2379, https://10.0.0.13:2379]
    prefix: /goipsec/policy/
    labels: [role=web, site=paris]
    cert: etcd-client.pem
    key: etcd-client.key
    ca: etcd-ca.pem
    dial_timeout: 5s
    request_timeout: 5s
    resync: 1m
    cache: /var/lib/goipsec/etcd-policy.json
policies:
  - {name: local-dns, remote_ts: ["10.0.0.53/32[udp/53]"], action: bypass}
`,
		files: []string{"etcd-client.pem", "etcd-client.key", "etcd-ca.pem"},
	},
	{
		title: "Statically keyed SAs",
		intro: "No IKE: the keys are in the file (so it must be mode 0600). The peer has the same SAs with spi_in and spi_out, key_in and key_out swapped.",
		text: `manual_sas:
  - name: lab
    protocol: esp
    mode: tunnel
    encap: udp
    local_addr: 192.0.2.1
    remote_addr: 198.51.100.2
    local_ts: [10.1.0.0/16]
    remote_ts: [10.2.0.0/16]
    spi_out: 0x00001001
    spi_in: 0x00002001
    algorithm: aes256gcm16
    key_out: ` + keyOutHex + `
    key_in: ` + keyInHex + `
    esn: true
    replay_window: 1024
    lifetime:
      soft: {bytes: 1000000000, packets: 1000000, time: 20h}
      hard: {bytes: 2000000000, packets: 2000000, time: 1d}
  - name: lab-ah
    protocol: ah
    mode: transport
    encap: none
    local_addr: 192.0.2.1
    remote_addr: 198.51.100.2
    spi_out: 4097
    spi_in: 4098
    algorithm: sha256
    key_out: 0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
    key_in: 0x202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f
`,
	},
}

// parserLenient is what ipsecd accepts and the schema refuses.
const parserLenient = "ipsecd ignores an empty item in secrets.ike (a `-` with nothing after it), which the schema refuses as an entry without ids."

// schemaLimits are the checks that only the parser (and so ipsecd --check)
// makes: the schema describes each value on its own, not what it means
// next to the others or on disk.
var schemaLimits = []string{
	"Proposals and algorithms: each keyword known and the combination complete (the schema checks only that they are strings).",
	"Traffic selectors, addresses, DNS names and identity patterns other than a local %any: their syntax.",
	"A PSK connection needs an entry in secrets.ike whose ids name both identities.",
	"Names unique across policies and manual SAs; spi_in unique per protocol among manual SAs.",
	"Manual SAs: key lengths that fit the algorithm, key_in different from key_out, local_addr and remote_addr of one family, transport-mode selectors equal to the addresses, soft limits not above hard ones.",
	"Ranges of values written as strings (\"0x400\"), and day counts above 3650.",
	"Files: key and secret_file must exist and be readable by their owner only; a configuration file with secrets in it must be mode 0600.",
	"A tunnel-mode child without local_ts and remote_ts: only a group's connection may have one (a tunnel between the two hosts).",
	"policy_sources.etcd: endpoints are http:// or https:// URLs, labels name=value, the prefix starts and ends with '/', and its durations are longer than 0s.",
	"YAML beyond JSON: one document only, no merge keys, at most 200,000 nodes once aliases are expanded.",
	"Unquoted selectors with brackets in a one-line list (remote_ts: [10.3.0.0/16[tcp/443]]) are accepted by ipsecd but are not strict YAML: editors need quotes.",
	"A value that YAML reads as a number or boolean where the schema wants text (id: 1234) is accepted by ipsecd; quote it for the schema.",
	"A manual SA key written as a decimal number: editors' YAML reads an unquoted 0x key as a number, so the schema lets numbers pass there; ipsecd wants 0x hex.",
	"A duration written as a 0x number (dpd_delay: 0x10): YAML, and so the schema, reads a number of seconds; ipsecd refuses it.",
}
