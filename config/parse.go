package config

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/goipsec/goipsec/sa"
	"github.com/goipsec/goipsec/traffic"
	"github.com/goipsec/goipsec/transform"
)

// maxFileSize bounds the configuration file Load reads.
const maxFileSize = 16 << 20

// Load reads and parses the configuration file at path.
//
// A file that holds secrets itself (secrets.ike[].secret, manual_sas[].key_in
// and key_out) must be readable by its owner only, like the secret and key
// files it may name: Load refuses it if group or others have any access
// (mode & 0o077 != 0), with an error that names the first such secret.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Key: "(file)", Reason: "cannot read: " + errReason(err)}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &Error{File: path, Key: "(file)", Reason: "cannot stat: " + errReason(err)}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Key: "(file)", Reason: "cannot read: " + errReason(err)}
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Key: "(file)", Reason: fmt.Sprintf("larger than %d bytes", maxFileSize)}
	}
	c, d, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && len(d.inline) > 0 {
		e := *d.inline[0]
		e.Reason = fmt.Sprintf("the file holds secrets (%d) and is accessible by group or others (mode %04o): "+
			"chmod 600 %s, or move IKE secrets to secret_file", len(d.inline), perm, path)
		return nil, &e
	}
	return c, nil
}

// errReason returns the OS's reason without the path, which the Error
// already names.
func errReason(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse parses and validates data, the contents of the configuration file
// named filename (used in errors and to resolve relative paths such as
// secret_file). It reads the secret files the configuration names.
func Parse(filename string, data []byte) (*Config, error) {
	c, _, err := parse(filename, data)
	return c, err
}

func parse(filename string, data []byte) (*Config, *decoder, error) {
	d := &decoder{file: filename, dir: filepath.Dir(filename)}
	c := &Config{File: filename}
	c.Daemon = Daemon{
		Socket:   DefaultSocket,
		StateDir: DefaultStateDir,
		TUN:      TUN{Name: DefaultTUNName, MTU: DefaultTUNMTU},
		Log:      Log{Level: slog.LevelInfo, Format: "text"},
	}
	if root := d.document(data); root != nil {
		d.mapping(root, "", []field{
			{"daemon", func(key string, n *yaml.Node) { d.daemon(&c.Daemon, key, n) }},
			{"connections", func(key string, n *yaml.Node) { c.Connections = d.connections(key, n) }},
			{"policies", func(key string, n *yaml.Node) { c.Policies = d.policies(key, n) }},
			{"manual_sas", func(key string, n *yaml.Node) { c.ManualSAs = d.manualSAs(key, n) }},
			{"groups", func(key string, n *yaml.Node) { c.Groups = d.groups(key, n) }},
			{"secrets", func(key string, n *yaml.Node) { d.secrets(&c.Secrets, key, n) }},
			{"policy_sources", func(key string, n *yaml.Node) { d.policySources(&c.PolicySources, key, n) }},
		})
		d.crossCheck(c)
		if e := c.PolicySources.Etcd; e != nil && e.Cache == "" {
			e.Cache = filepath.Join(c.Daemon.StateDir, DefaultEtcdCacheName)
		}
	}
	if err := d.errs.err(); err != nil {
		return nil, nil, err
	}
	return c, d, nil
}

func (d *decoder) daemon(dm *Daemon, key string, n *yaml.Node) {
	d.mapping(n, key, []field{
		{"socket", d.absPath(&dm.Socket)},
		{"state_dir", d.absPath(&dm.StateDir)},
		{"tun", func(key string, n *yaml.Node) {
			d.mapping(n, key, []field{
				{"name", func(key string, n *yaml.Node) {
					if s, vn, ok := d.scalar(n, key); ok {
						if !validIfName(s) {
							d.fail(vn, key, "invalid interface name %q: at most 15 letters, digits, '-', '_' or '.'", s)
							return
						}
						dm.TUN.Name = s
					}
				}},
				// IPv4 needs at least 576 (RFC 791); an MTU below 1280
				// carries no IPv6 (RFC 8200, Section 5).
				{"mtu", d.integer(&dm.TUN.MTU, 576, 65535)},
			})
		}},
		{"log", func(key string, n *yaml.Node) {
			d.mapping(n, key, []field{
				{"level", logLevel(d, &dm.Log.Level)},
				{"format", enum(d, &dm.Log.Format, []string{"text", "json"}, []string{"text", "json"})},
				{"subsystems", func(key string, n *yaml.Node) {
					fields := make([]field, len(LogSubsystems))
					for i, name := range LogSubsystems {
						sub := &dm.Log.Subsystems[i]
						fields[i] = field{name, func(key string, n *yaml.Node) {
							const unset = slog.Level(-100) // no level logLevel sets
							lv := unset
							logLevel(d, &lv)(key, n)
							if lv != unset {
								*sub = SubsystemLevel{Set: true, Level: lv}
							}
						}}
					}
					d.mapping(n, key, fields)
				}},
			})
		}},
		{"ike", func(key string, n *yaml.Node) {
			d.mapping(n, key, []field{
				{"retransmit_timeout", d.duration(&dm.IKE.RetransmitTimeout)},
				{"retransmit_tries", d.integer(&dm.IKE.RetransmitTries, 0, 20)},
				{"half_open_timeout", d.duration(&dm.IKE.HalfOpenTimeout)},
				{"cookie_threshold", d.integer(&dm.IKE.CookieThreshold, -1, 1_000_000)},
				{"max_half_open", d.integer(&dm.IKE.MaxHalfOpen, 1, 1_000_000)},
				{"max_half_open_per_source", d.integer(&dm.IKE.MaxHalfOpenPerSource, -1, 1_000_000)},
				{"cookie_lifetime", d.duration(&dm.IKE.CookieLifetime)},
			})
		}},
		{"on_stop", enum(d, &dm.OnStop, []string{"keep", "clear"}, []OnStop{OnStopKeep, OnStopClear})},
		{"metrics", func(key string, n *yaml.Node) {
			d.mapping(n, key, []field{
				{"listen", func(key string, n *yaml.Node) {
					if s, vn, ok := d.scalar(n, key); ok {
						if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
							d.fail(vn, key, "must be host:port, as in 127.0.0.1:9909")
							return
						}
						dm.MetricsListen = s
					}
				}},
			})
		}},
	})
}

// logLevel reads a slog level by its lowercase name.
func logLevel(d *decoder, dst *slog.Level) func(string, *yaml.Node) {
	return enum(d, dst, []string{"debug", "info", "warn", "error"},
		[]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError})
}

// absPath reads an absolute path.
func (d *decoder) absPath(dst *string) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		if s, vn, ok := d.scalar(n, key); ok {
			if !filepath.IsAbs(s) {
				d.fail(vn, key, "must be an absolute path")
				return
			}
			*dst = filepath.Clean(s)
		}
	}
}

func validIfName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// addrList checks local_addrs / remote_addrs: IP addresses, prefixes,
// ranges ("10.0.0.10-10.0.0.50", stored as the prefixes that cover it),
// DNS names or %any. YAML reads an unquoted %any as a syntax error, so the
// plain spelling "any" means %any too.
func (d *decoder) addrList(dst *[]string) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		for _, it := range d.list(n, key) {
			s := it.val
			switch {
			case s == "%any" || s == "any":
				s = "%any"
			case strings.Contains(s, "/"):
				p, err := netip.ParsePrefix(s)
				if err != nil {
					d.fail(it.node, it.key, "invalid prefix %q", s)
					continue
				}
				s = p.Masked().String()
			case strings.Contains(s, "-") && strings.ContainsAny(s, ".:") && rangeLike(s):
				ps, err := RangePrefixes(s)
				if err != nil {
					d.fail(it.node, it.key, "%v", err)
					continue
				}
				for _, p := range ps {
					*dst = append(*dst, p.String())
				}
				continue
			default:
				if a, err := netip.ParseAddr(s); err == nil {
					s = a.String()
				} else if !validHostname(s) {
					d.fail(it.node, it.key, "%q is not an IP address, prefix, range, DNS name or %%any", s)
					continue
				}
			}
			*dst = append(*dst, s)
		}
	}
}

// rangeLike reports whether s looks like FIRST-LAST with an address on the
// left (a DNS name may contain '-' too).
func rangeLike(s string) bool {
	lo, _, _ := strings.Cut(s, "-")
	_, err := netip.ParseAddr(strings.TrimSpace(lo))
	return err == nil
}

// RangePrefixes returns the fewest prefixes that cover the address range
// "FIRST-LAST" (both ends included, one family, FIRST <= LAST) exactly.
func RangePrefixes(s string) ([]netip.Prefix, error) {
	los, his, ok := strings.Cut(s, "-")
	lo, err1 := netip.ParseAddr(strings.TrimSpace(los))
	hi, err2 := netip.ParseAddr(strings.TrimSpace(his))
	switch {
	case !ok || err1 != nil || err2 != nil:
		return nil, fmt.Errorf("invalid address range %q: write FIRST-LAST, as in 10.0.0.10-10.0.0.50", s)
	case lo.Is4() != hi.Is4():
		return nil, fmt.Errorf("address range %q mixes IPv4 and IPv6", s)
	case hi.Less(lo):
		return nil, fmt.Errorf("address range %q ends before it starts", s)
	}
	var out []netip.Prefix
	for {
		// The largest prefix that starts at lo and ends at or before hi.
		bits := lo.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(lo, bits-1)
			if p.Masked().Addr() != lo || lastOf(p).Compare(hi) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		end := lastOf(p)
		if end == hi {
			return out, nil
		}
		lo = end.Next()
	}
}

// lastOf returns the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func (d *decoder) connections(key string, n *yaml.Node) []Connection {
	var out []Connection
	d.named(n, key, func(name, path string, k, v *yaml.Node) {
		c := Connection{Name: name, Version: 2, RekeyTime: DefaultIKERekeyTime}
		var hasOver, hasRand bool
		m := d.mapping(v, path, []field{
			{"version", func(key string, n *yaml.Node) {
				var ver int
				d.integer(&ver, 0, 2)(key, n)
				if ver == 1 {
					d.fail(n, key, "IKEv1 is not supported; use 2")
				}
			}},
			{"local_addrs", d.addrList(&c.LocalAddrs)},
			{"remote_addrs", d.addrList(&c.RemoteAddrs)},
			{"proposals", func(key string, n *yaml.Node) {
				for _, it := range d.list(n, key) {
					p, err := parseIKEProposal(it.val)
					if err != nil {
						d.fail(it.node, it.key, "%v", err)
						continue
					}
					c.Proposals = append(c.Proposals, p)
				}
			}},
			{"encap", d.boolean(&c.Encap)},
			{"dpd_delay", d.duration(&c.DPDDelay)},
			{"dpd_timeout", d.duration(&c.DPDTimeout)},
			{"dpd_action", d.action(&c.DPDAction)},
			{"close_action", d.action(&c.CloseAction)},
			{"unique", enum(d, &c.Unique, []string{"no", "never", "keep", "replace"}, []Unique{UniqueNo, UniqueNever, UniqueKeep, UniqueReplace})},
			{"rekey_time", d.duration(&c.RekeyTime)},
			{"over_time", seen(&hasOver, d.duration(&c.OverTime))},
			{"rand_time", seen(&hasRand, d.duration(&c.RandTime))},
			{"reauth_time", d.duration(&c.ReauthTime)},
			{"local", func(key string, n *yaml.Node) { d.auth(&c.Local, key, n, true) }},
			{"remote", func(key string, n *yaml.Node) { d.auth(&c.Remote, key, n, false) }},
			{"children", func(key string, n *yaml.Node) { c.Children = d.children(key, n) }},
		})
		if m == nil {
			if r := d.resolve(v); r == nil || !isNull(r) {
				return // already reported
			}
		}
		if len(c.Proposals) == 0 {
			c.Proposals = []IKEProposal{{Text: "default", Default: true}}
		}
		// strongSwan's defaults: over_time 10% of the longer of
		// rekey_time and reauth_time, rand_time over_time.
		if !hasOver {
			c.OverTime = max(c.RekeyTime, c.ReauthTime) / 10
		}
		if !hasRand {
			c.RandTime = c.OverTime
		}
		if c.RekeyTime > 0 && c.RandTime >= c.RekeyTime {
			d.fail(nil, path+".rand_time", "must be smaller than rekey_time (%v)", c.RekeyTime)
		}
		if c.ReauthTime > 0 && c.RandTime >= c.ReauthTime {
			d.fail(nil, path+".rand_time", "must be smaller than reauth_time (%v)", c.ReauthTime)
		}
		if c.DPDTimeout > 0 && c.DPDDelay == 0 {
			d.fail(nil, path+".dpd_timeout", "needs dpd_delay")
		}
		if len(c.Children) == 0 {
			d.fail(k, path+".children", "required: a connection needs at least one child")
		}
		out = append(out, c)
	})
	return out
}

func (d *decoder) auth(a *Auth, key string, n *yaml.Node, local bool) {
	var certsKey, keyKey string
	var keyNode *yaml.Node
	d.mapping(n, key, []field{
		{"auth", enum(d, &a.Method, []string{"psk", "pubkey"}, []AuthMethod{AuthPSK, AuthPubkey})},
		{"id", func(key string, n *yaml.Node) {
			if s, vn, ok := d.scalar(n, key); ok {
				if err := checkIDPattern(s); err != nil {
					d.fail(vn, key, "%v", err)
					return
				}
				if local && (s == "%any" || strings.Contains(s, "*")) {
					d.fail(vn, key, "identity %q: a local identity cannot be a pattern", s)
					return
				}
				a.ID = s
			}
		}},
		{"certs", func(key string, n *yaml.Node) { certsKey = key; a.Certs = d.paths(key, n) }},
		{"cacerts", func(key string, n *yaml.Node) {
			if certsKey == "" {
				certsKey = key
			}
			a.CACerts = d.paths(key, n)
		}},
		{"key", func(key string, n *yaml.Node) {
			keyKey, keyNode = key, n
			if p, vn, ok := d.scalar(n, key); ok {
				a.Key = d.keyFile(p, vn, key)
			}
		}},
	})
	switch {
	case keyNode != nil && (!local || a.Method != AuthPubkey):
		d.fail(keyNode, keyKey, "the private key is for local auth: pubkey only")
	case a.Method == AuthPSK && len(a.Certs)+len(a.CACerts) > 0:
		d.fail(nil, certsKey, "certs and cacerts are for auth: pubkey, not psk")
	case a.Method == AuthPubkey && local && len(a.Certs) == 0:
		d.fail(nil, key+".certs", "required for auth: pubkey: our certificate")
	case a.Method == AuthPubkey && !local && len(a.Certs)+len(a.CACerts) == 0:
		d.fail(nil, key+".cacerts", "required for auth: pubkey: the CA (or peer) certificates that verify the peer")
	}
}

// paths returns file paths, relative ones resolved against the
// configuration file's directory.
func (d *decoder) paths(key string, n *yaml.Node) []string {
	var out []string
	for _, it := range d.list(n, key) {
		p := it.val
		if !filepath.IsAbs(p) {
			p = filepath.Join(d.dir, p)
		}
		out = append(out, p)
	}
	return out
}

// selectors parses a list of traffic selectors.
func (d *decoder) selectors(dst *traffic.Set) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		*dst = traffic.Set{}
		for _, it := range d.list(n, key) {
			s, err := traffic.ParseSelector(it.val)
			if err != nil {
				d.fail(it.node, it.key, "%s", strings.TrimPrefix(err.Error(), "traffic: "))
				continue
			}
			*dst = append(*dst, s)
		}
	}
}

func (d *decoder) childProposals(dst *[]ChildProposal, ah bool) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		*dst = []ChildProposal{}
		for _, it := range d.list(n, key) {
			p, err := parseChildProposal(it.val, ah)
			if err != nil {
				d.fail(it.node, it.key, "%v", err)
				continue
			}
			*dst = append(*dst, p)
		}
	}
}

func (d *decoder) children(key string, n *yaml.Node) []Child {
	var out []Child
	d.named(n, key, func(name, path string, k, v *yaml.Node) {
		c := Child{Name: name, Protocol: sa.ESP, RekeyTime: DefaultChildRekeyTime, ReplayWindow: DefaultReplayWindow}
		var esp, ah []ChildProposal
		var espNode, ahNode *yaml.Node
		var hasLife, hasRand, hasLifeBytes, hasLifePackets, hasMode bool
		if r := d.resolve(v); r != nil && isNull(r) {
			d.fail(r, path, "empty child: give its settings ({} is a transport-mode child between the two hosts)")
			return
		}
		d.mapping(v, path, []field{
			{"mode", seen(&hasMode, enum(d, &c.Mode, []string{"tunnel", "transport"}, []sa.Mode{sa.Tunnel, sa.Transport}))},
			{"local_ts", d.selectors(&c.LocalTS)},
			{"remote_ts", d.selectors(&c.RemoteTS)},
			{"esp_proposals", func(key string, n *yaml.Node) { espNode = n; d.childProposals(&esp, false)(key, n) }},
			{"ah_proposals", func(key string, n *yaml.Node) { ahNode = n; d.childProposals(&ah, true)(key, n) }},
			{"start_action", enum(d, &c.StartAction, []string{"none", "trap", "start"}, []StartAction{StartNone, StartTrap, StartStart})},
			{"rekey_time", d.duration(&c.RekeyTime)},
			{"life_time", seen(&hasLife, d.duration(&c.LifeTime))},
			{"rand_time", seen(&hasRand, d.duration(&c.RandTime))},
			{"rekey_bytes", d.uint64Field(&c.RekeyBytes)},
			{"life_bytes", seen(&hasLifeBytes, d.uint64Field(&c.LifeBytes))},
			{"rekey_packets", d.uint64Field(&c.RekeyPackets)},
			{"life_packets", seen(&hasLifePackets, d.uint64Field(&c.LifePackets))},
			{"replay_window", d.integer(&c.ReplayWindow, MinReplayWindow, MaxReplayWindow)},
		})
		switch {
		case espNode != nil && ahNode != nil:
			d.fail(ahNode, path+".ah_proposals", "a child has esp_proposals or ah_proposals, not both")
		case ahNode != nil:
			c.Protocol, c.Proposals = sa.AH, ah
		case espNode != nil:
			c.Proposals = esp
		}
		d.childLifetimes(&c, path, hasLife, hasRand, hasLifeBytes, hasLifePackets)
		if len(c.Proposals) == 0 && (espNode == nil && ahNode == nil) {
			c.Proposals = []ChildProposal{{Text: "default", Default: true}}
		}
		// strongSwan's default for both is "dynamic": the IKE addresses,
		// which the engine fills in per peer. That is what transport mode
		// protects (RFC 4301, Section 4.1), so there both may be left
		// out together; a tunnel needs its selectors.
		if !hasMode && c.LocalTS == nil && c.RemoteTS == nil {
			// A child without selectors or mode protects the traffic
			// between the two hosts: transport mode (RFC 4301, Section
			// 4.1), as for the hosts of a group.
			c.Mode = sa.Transport
		}
		switch {
		case c.Mode != sa.Transport && c.LocalTS == nil && c.RemoteTS == nil:
			// A tunnel between the two hosts (strongSwan's dynamic in
			// tunnel mode), which peers that only do tunnel mode need:
			// allowed for a group's connection only (checkGroups), where
			// the engine negotiates it per peer.
		case c.Mode != sa.Transport || (c.LocalTS == nil) != (c.RemoteTS == nil):
			d.requireTS(c.LocalTS, path+".local_ts", dynamicTSReason)
			d.requireTS(c.RemoteTS, path+".remote_ts", dynamicTSReason)
		default:
			d.requireTS(c.LocalTS, path+".local_ts", "")
			d.requireTS(c.RemoteTS, path+".remote_ts", "")
		}
		out = append(out, c)
	})
	return out
}

// childLifetimes fills the defaults of a child's lifetimes, strongSwan's:
// each life_* is its rekey_* plus 10%, rand_time is life_time - rekey_time;
// and checks that soft limits come before hard ones.
func (d *decoder) childLifetimes(c *Child, path string, hasLife, hasRand, hasLifeBytes, hasLifePackets bool) {
	plus10 := func(v uint64) uint64 { return v + v/10 }
	if !hasLife {
		c.LifeTime = c.RekeyTime + c.RekeyTime/10
	}
	if !hasLifeBytes {
		c.LifeBytes = plus10(c.RekeyBytes)
	}
	if !hasLifePackets {
		c.LifePackets = plus10(c.RekeyPackets)
	}
	if c.RekeyTime > 0 && c.LifeTime > 0 && c.LifeTime <= c.RekeyTime {
		d.fail(nil, path+".life_time", "must be larger than rekey_time (%v)", c.RekeyTime)
	}
	if !hasRand && c.RekeyTime > 0 && c.LifeTime > c.RekeyTime {
		c.RandTime = c.LifeTime - c.RekeyTime
	}
	if c.RekeyTime > 0 && c.RandTime >= c.RekeyTime {
		d.fail(nil, path+".rand_time", "must be smaller than rekey_time (%v)", c.RekeyTime)
	}
	if c.RekeyBytes > 0 && c.LifeBytes > 0 && c.LifeBytes <= c.RekeyBytes {
		d.fail(nil, path+".life_bytes", "must be larger than rekey_bytes (%d)", c.RekeyBytes)
	}
	if c.RekeyPackets > 0 && c.LifePackets > 0 && c.LifePackets <= c.RekeyPackets {
		d.fail(nil, path+".life_packets", "must be larger than rekey_packets (%d)", c.RekeyPackets)
	}
}

// action parses a dpd_action or close_action, with strongSwan's synonyms
// ("none" for clear, "restart" for start).
func (d *decoder) action(dst *Action) func(string, *yaml.Node) {
	return enum(d, dst, []string{"clear", "none", "trap", "start", "restart"}, []Action{ActionClear, ActionClear, ActionTrap, ActionStart, ActionStart})
}

// seen wraps a field's parser to record that the key was given.
func seen(given *bool, f func(string, *yaml.Node)) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		*given = true
		f(key, n)
	}
}

// groups reads the policy groups, a mapping from a group's name to its
// prefixes and connection; it returns them in the order of GroupNames.
func (d *decoder) groups(key string, n *yaml.Node) []Group {
	var out []Group
	fields := make([]field, len(GroupNames))
	for i, name := range GroupNames {
		fields[i] = field{name, func(path string, v *yaml.Node) {
			g := Group{Action: GroupAction(i + 1)}
			var hasTimeout, hasTime, hasPrefixes bool
			fs := []field{
				{"prefixes", func(key string, n *yaml.Node) {
					hasPrefixes = true
					for _, it := range d.list(n, key) {
						p, err := netip.ParsePrefix(it.val)
						if err != nil {
							if a, aerr := netip.ParseAddr(it.val); aerr == nil {
								p, err = netip.PrefixFrom(a, a.BitLen()), nil
							}
						}
						if err != nil {
							d.fail(it.node, it.key, "invalid prefix %q", it.val)
							continue
						}
						g.Prefixes = append(g.Prefixes, p.Masked())
					}
				}},
			}
			if g.Action.Protects() {
				fs = append(fs, field{"connection", d.str(&g.Connection)})
			}
			if g.Action == GroupPrivateOrClear {
				fs = append(fs, field{"fallback_timeout", seen(&hasTimeout, d.duration(&g.FallbackTimeout))},
					field{"fallback_time", seen(&hasTime, d.duration(&g.FallbackTime))})
			}
			m := d.mapping(v, path, fs)
			if m == nil {
				if r := d.resolve(v); r != nil && isNull(r) {
					d.fail(r, path, "empty group: give its prefixes")
				}
				return
			}
			if !hasTimeout && g.Action == GroupPrivateOrClear {
				g.FallbackTimeout = DefaultFallbackTimeout
			}
			if !hasTime && g.Action == GroupPrivateOrClear {
				g.FallbackTime = DefaultFallbackTime
			}
			if g.Action == GroupPrivateOrClear && (g.FallbackTimeout <= 0 || g.FallbackTime <= 0) &&
				!d.failedUnder(path+".fallback_timeout") && !d.failedUnder(path+".fallback_time") {
				d.fail(nil, path, "fallback_timeout and fallback_time must be positive")
			}
			switch {
			case !hasPrefixes:
				d.fail(m, path+".prefixes", "required: the prefixes of the group")
			case len(g.Prefixes) == 0 && !d.failedUnder(path+".prefixes"):
				d.fail(m, path+".prefixes", "must list at least one prefix")
			}
			if g.Action.Protects() && g.Connection == "" {
				d.fail(m, path+".connection", "required: the connection that protects the group's traffic")
			}
			out = append(out, g)
		}}
	}
	d.mapping(n, key, fields)
	slices.SortFunc(out, func(a, b Group) int { return int(a.Action) - int(b.Action) })
	return out
}

func (d *decoder) policies(key string, n *yaml.Node) []Policy {
	var out []Policy
	d.sequence(n, key, func(path string, v *yaml.Node) {
		var p Policy
		m := d.mapping(v, path, []field{
			{"name", d.name(&p.Name)},
			{"local_ts", d.selectors(&p.LocalTS)},
			{"remote_ts", d.selectors(&p.RemoteTS)},
			{"action", enum(d, &p.Action, []string{"bypass", "discard"}, []PolicyAction{PolicyBypass, PolicyDiscard})},
		})
		if m == nil {
			if r := d.resolve(v); r != nil && isNull(r) {
				d.fail(r, path, "empty policy")
			}
			return
		}
		if p.Name == "" {
			d.fail(nil, path+".name", "required")
		}
		if p.Action == 0 {
			d.fail(nil, path+".action", "required: bypass or discard")
		}
		out = append(out, p)
	})
	return out
}

// name sets *dst to a valid name.
func (d *decoder) name(dst *string) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		if s, vn, ok := d.scalar(n, key); ok {
			if !validName(s) {
				d.fail(vn, key, "invalid name %q: use up to 64 letters, digits, '.', '_' and '-'", s)
				return
			}
			*dst = s
		}
	}
}

func (d *decoder) addr(dst *netip.Addr) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		if s, vn, ok := d.scalar(n, key); ok {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.IsUnspecified() {
				d.fail(vn, key, "%q is not a unicast IP address", s)
				return
			}
			*dst = a
		}
	}
}

// spi parses an SPI. RFC 4303, Section 2.1: values 1 to 255 are reserved
// by IANA and 0 is reserved for local use; none appears on the wire.
func (d *decoder) spi(dst *uint32) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		s, vn, ok := d.scalar(n, key)
		if !ok {
			return
		}
		v, err := parseUint(s, 32)
		if err != nil {
			d.fail(vn, key, "%q: %v (SPIs are 32-bit)", s, err)
			return
		}
		if v < 256 {
			d.fail(vn, key, "SPI %d is reserved (RFC 4303, Section 2.1): use 256 or more", v)
			return
		}
		*dst = uint32(v)
	}
}

// rawKey is a key as written, checked against the suite once it is known.
type rawKey struct {
	b    []byte
	node *yaml.Node
	key  string
	ok   bool
}

// hexKey reads a 0x-prefixed hex key. Its errors never quote the value.
func (d *decoder) hexKey(dst *rawKey) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		*dst = rawKey{node: n, key: key}
		s, vn, ok := d.scalar(n, key)
		if !ok {
			return
		}
		dst.node = vn
		d.inlineSecret(vn, key)
		h, ok := strings.CutPrefix(s, "0x")
		if !ok {
			h, ok = strings.CutPrefix(s, "0X")
		}
		if !ok {
			d.fail(vn, key, "must be hexadecimal starting with 0x")
			return
		}
		b, err := hex.DecodeString(h)
		if err != nil {
			d.fail(vn, key, "must be hexadecimal starting with 0x, with an even number of digits")
			return
		}
		dst.b, dst.ok = b, true
	}
}

func (d *decoder) lifetime(dst *sa.Lifetime) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		d.mapping(n, key, []field{
			{"bytes", d.uint64Field(&dst.Bytes)},
			{"packets", d.uint64Field(&dst.Packets)},
			{"time", d.duration(&dst.Time)},
		})
	}
}

func (d *decoder) manualSAs(key string, n *yaml.Node) []ManualSA {
	var out []ManualSA
	d.sequence(n, key, func(path string, v *yaml.Node) {
		m := ManualSA{Protocol: sa.ESP, ReplayWindow: DefaultReplayWindow}
		var (
			algNode, encapNode    *yaml.Node
			alg, encap            string
			keyOut, keyIn         rawKey
			haveSPIOut, haveSPIIn bool
			haveLocal, haveRemote bool
		)
		mn := d.mapping(v, path, []field{
			{"name", d.name(&m.Name)},
			{"protocol", enum(d, &m.Protocol, []string{"esp", "ah"}, []sa.Protocol{sa.ESP, sa.AH})},
			{"mode", enum(d, &m.Mode, []string{"tunnel", "transport"}, []sa.Mode{sa.Tunnel, sa.Transport})},
			{"local_addr", func(key string, n *yaml.Node) { haveLocal = true; d.addr(&m.LocalAddr)(key, n) }},
			{"remote_addr", func(key string, n *yaml.Node) { haveRemote = true; d.addr(&m.RemoteAddr)(key, n) }},
			{"encap", func(key string, n *yaml.Node) {
				encapNode = n
				enum(d, &encap, []string{"udp", "none"}, []string{"udp", "none"})(key, n)
			}},
			{"spi_out", func(key string, n *yaml.Node) { haveSPIOut = true; d.spi(&m.SPIOut)(key, n) }},
			{"spi_in", func(key string, n *yaml.Node) { haveSPIIn = true; d.spi(&m.SPIIn)(key, n) }},
			{"algorithm", func(key string, n *yaml.Node) {
				if s, vn, ok := d.scalar(n, key); ok {
					alg, algNode = s, vn
				} else {
					algNode = n
				}
			}},
			{"key_out", d.hexKey(&keyOut)},
			{"key_in", d.hexKey(&keyIn)},
			{"esn", d.boolean(&m.ESN)},
			{"replay_window", d.integer(&m.ReplayWindow, MinReplayWindow, MaxReplayWindow)},
			{"local_ts", d.selectors(&m.LocalTS)},
			{"remote_ts", d.selectors(&m.RemoteTS)},
			{"lifetime", func(key string, n *yaml.Node) {
				d.mapping(n, key, []field{
					{"soft", d.lifetime(&m.Limits.Soft)},
					{"hard", d.lifetime(&m.Limits.Hard)},
				})
			}},
		})
		if mn == nil {
			if r := d.resolve(v); r != nil && isNull(r) {
				d.fail(r, path, "empty manual SA")
			}
			return
		}
		req := func(have bool, name string) {
			if !have {
				d.fail(nil, path+"."+name, "required")
			}
		}
		req(m.Name != "", "name")
		req(haveLocal, "local_addr")
		req(haveRemote, "remote_addr")
		req(haveSPIOut, "spi_out")
		req(haveSPIIn, "spi_in")
		req(algNode != nil, "algorithm")
		req(keyOut.node != nil, "key_out")
		req(keyIn.node != nil, "key_in")

		if m.LocalAddr.IsValid() && m.RemoteAddr.IsValid() && m.LocalAddr.Is4() != m.RemoteAddr.Is4() {
			d.fail(nil, path+".remote_addr", "local_addr and remote_addr must be of the same address family")
		}

		// RFC 3948 defines UDP encapsulation for ESP only.
		switch {
		case encap == "udp" && m.Protocol == sa.AH:
			d.fail(encapNode, path+".encap", "AH cannot be UDP-encapsulated (RFC 3948 covers ESP only): use none")
		case encap == "" && m.Protocol == sa.ESP, encap == "udp":
			m.UDPEncap = true
		}

		if alg != "" {
			parse := transform.ParseESP
			if m.Protocol == sa.AH {
				parse = transform.ParseAH
			}
			s, err := parse(alg)
			if err != nil {
				d.fail(algNode, path+".algorithm", "%q: %s", alg, trimPkg(err))
			} else {
				m.Suite = s
				m.KeyOut = d.checkKey(keyOut, s)
				m.KeyIn = d.checkKey(keyIn, s)
				if keyIn.ok && keyOut.ok && subtle.ConstantTimeCompare(keyIn.b, keyOut.b) == 1 {
					// Both directions would encrypt under one key with
					// the same sequence numbers: AEAD and counter-mode
					// nonces repeat (RFC 4106, Section 3.1 forbids it).
					d.fail(keyIn.node, path+".key_in", "equal to key_out: the same key in both directions reuses nonces; give each direction its own key")
				}
			}
		}

		d.manualTS(&m, path)

		checkLimits := func(what string, soft, hard uint64) {
			if soft != 0 && hard != 0 && soft > hard {
				d.fail(nil, path+".lifetime.soft."+what, "soft limit is larger than the hard limit")
			}
		}
		checkLimits("bytes", m.Limits.Soft.Bytes, m.Limits.Hard.Bytes)
		checkLimits("packets", m.Limits.Soft.Packets, m.Limits.Hard.Packets)
		checkLimits("time", uint64(m.Limits.Soft.Time), uint64(m.Limits.Hard.Time))
		out = append(out, m)
	})
	return out
}

// checkKey checks a manual key's length against the suite. The reason
// names lengths, never the key.
func (d *decoder) checkKey(k rawKey, s transform.Suite) Secret {
	if !k.ok {
		return Secret{}
	}
	if want := s.KeyLen(); len(k.b) != want {
		d.fail(k.node, k.key, "must be %d bytes (%d hex digits) for %s, not %d bytes", want, 2*want, s.Name, len(k.b))
		return Secret{}
	}
	return Secret{b: k.b}
}

// dynamicTSReason is why a child must list its selectors: only transport
// mode, and tunnel mode in a group's connection, negotiate the two hosts'
// addresses per peer.
const dynamicTSReason = `required (the default "dynamic", the IKE addresses, is for transport mode with both left out, or tunnel mode in a group's connection)`

// requireTS reports a missing set (with reason, if not empty) or an empty
// one. Only policies may leave a side empty to mean any.
func (d *decoder) requireTS(set traffic.Set, key, reason string) {
	switch {
	case set == nil && reason != "":
		d.fail(nil, key, "%s", reason)
	case set != nil && len(set) == 0:
		d.fail(nil, key, "must list at least one traffic selector (0.0.0.0/0 and ::/0 for all)")
	}
}

// manualTS fills in and checks a manual SA's selectors. In transport mode
// the SA protects the traffic between its two endpoints (RFC 4301, Section
// 4.1), so the selectors default to, and must stay within, the addresses.
func (d *decoder) manualTS(m *ManualSA, path string) {
	if !m.LocalAddr.IsValid() || !m.RemoteAddr.IsValid() {
		return
	}
	if m.Mode == sa.Tunnel {
		d.requireTS(m.LocalTS, path+".local_ts", "required in tunnel mode")
		d.requireTS(m.RemoteTS, path+".remote_ts", "required in tunnel mode")
		return
	}
	if m.LocalTS != nil || m.RemoteTS != nil {
		d.requireTS(m.LocalTS, path+".local_ts", "")
		d.requireTS(m.RemoteTS, path+".remote_ts", "")
	}
	if m.LocalTS == nil {
		m.LocalTS = traffic.Set{traffic.Host(m.LocalAddr)}
	}
	if m.RemoteTS == nil {
		m.RemoteTS = traffic.Set{traffic.Host(m.RemoteAddr)}
	}
	check := func(set traffic.Set, a netip.Addr, name string) {
		for _, s := range set {
			if s.Prefix != netip.PrefixFrom(a, a.BitLen()) {
				d.fail(nil, path+"."+name, "in transport mode the selectors must be the SA's own address %s, not %s", a, s.Prefix)
				return
			}
		}
	}
	check(m.LocalTS, m.LocalAddr, "local_ts")
	check(m.RemoteTS, m.RemoteAddr, "remote_ts")
}

func (d *decoder) secrets(s *Secrets, key string, n *yaml.Node) {
	d.mapping(n, key, []field{
		{"ike", func(key string, n *yaml.Node) {
			d.sequence(n, key, func(path string, v *yaml.Node) {
				var (
					sec               IKESecret
					secNode, fileNode *yaml.Node
				)
				mn := d.mapping(v, path, []field{
					{"ids", func(key string, n *yaml.Node) {
						for _, it := range d.list(n, key) {
							sec.IDs = append(sec.IDs, it.val)
						}
					}},
					{"secret", func(key string, n *yaml.Node) {
						secNode = n
						if s, vn, ok := d.scalar(n, key); ok {
							d.inlineSecret(vn, key)
							b, err := decodeSecret(s)
							if err != nil {
								d.fail(vn, key, "%v", err)
								return
							}
							sec.Secret = Secret{b: b}
						}
					}},
					{"secret_file", func(key string, n *yaml.Node) {
						fileNode = n
						if p, vn, ok := d.scalar(n, key); ok {
							d.secretFile(&sec, p, vn, key)
						}
					}},
				})
				if mn == nil {
					return
				}
				switch {
				case secNode != nil && fileNode != nil:
					d.fail(fileNode, path+".secret_file", "give secret or secret_file, not both")
				case secNode == nil && fileNode == nil:
					d.fail(nil, path+".secret", "required (or secret_file)")
				}
				if len(sec.IDs) == 0 {
					// A key for any pair of identities would let any
					// peer that knows it claim any identity.
					d.fail(mn, path+".ids", "required: the local and the remote identity the key is for (one id when both are the same)")
				}
				s.IKE = append(s.IKE, sec)
			})
		}},
	})
}

// decodeSecret decodes a pre-shared key as swanctl.conf writes them: a
// plain string, 0x followed by hex, or 0s followed by base64. Errors do not
// quote the value.
func decodeSecret(s string) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch {
	case strings.HasPrefix(s, "0x"):
		b, err = hex.DecodeString(s[2:])
		if err != nil {
			return nil, fmt.Errorf("invalid hex after 0x")
		}
	case strings.HasPrefix(s, "0s"):
		b, err = base64.StdEncoding.DecodeString(s[2:])
		if err != nil {
			return nil, fmt.Errorf("invalid base64 after 0s")
		}
	default:
		b = []byte(s)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("empty secret")
	}
	return b, nil
}

// keyFile checks a private key file: a regular file that only its owner
// may read. It returns the path, resolved against the configuration
// file's directory; the daemon reads and parses the key.
func (d *decoder) keyFile(p string, vn *yaml.Node, key string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.dir, p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		d.fail(vn, key, "cannot read %s: %s", p, errReason(err))
		return p
	}
	if !fi.Mode().IsRegular() {
		d.fail(vn, key, "%s is not a regular file", p)
	} else if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		d.fail(vn, key, "%s is accessible by group or others (mode %04o): chmod 600 it", p, perm)
	}
	return p
}

// secretFile reads a pre-shared key from a file that only its owner may
// read: a secret readable by others is not a secret.
func (d *decoder) secretFile(sec *IKESecret, p string, vn *yaml.Node, key string) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.dir, p)
	}
	sec.File = p
	f, err := os.Open(p)
	if err != nil {
		d.fail(vn, key, "cannot read %s: %s", p, errReason(err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		d.fail(vn, key, "cannot stat %s: %s", p, errReason(err))
		return
	}
	if !fi.Mode().IsRegular() {
		d.fail(vn, key, "%s is not a regular file", p)
		return
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		d.fail(vn, key, "%s is accessible by group or others (mode %04o): chmod 600 it", p, perm)
		return
	}
	buf := make([]byte, 64<<10)
	n, _ := f.Read(buf)
	if n == len(buf) {
		d.fail(vn, key, "%s is too large for a secret", p)
		return
	}
	b, err := decodeSecret(strings.TrimRight(string(buf[:n]), "\r\n"))
	if err != nil {
		d.fail(vn, key, "%s: %v", p, err)
		return
	}
	sec.Secret = Secret{b: b}
}

// crossCheck checks what involves several sections: names that must be
// unique across the SPD, inbound SPIs that must be unique in the SAD, and
// PSK connections that need a secret.
func (d *decoder) crossCheck(c *Config) {
	d.checkGroups(c)
	names := make(map[string]string)
	for i, p := range c.Policies {
		if p.Name == "" {
			continue
		}
		if prev, dup := names[p.Name]; dup {
			d.fail(nil, index("policies", i)+".name", "name %q is already used by %s", p.Name, prev)
			continue
		}
		names[p.Name] = index("policies", i)
	}
	type spiKey struct {
		proto sa.Protocol
		spi   uint32
	}
	spis := make(map[spiKey]int)
	for i, m := range c.ManualSAs {
		if m.Name != "" {
			if prev, dup := names[m.Name]; dup {
				d.fail(nil, index("manual_sas", i)+".name", "name %q is already used by %s", m.Name, prev)
			} else {
				names[m.Name] = index("manual_sas", i)
			}
		}
		if m.SPIIn >= 256 {
			// RFC 4301, Section 4.1: the receiver finds an SA by SPI (and
			// protocol); two manual SAs cannot share one.
			k := spiKey{m.Protocol, m.SPIIn}
			if prev, dup := spis[k]; dup {
				d.fail(nil, index("manual_sas", i)+".spi_in", "SPI 0x%08x is already the spi_in of manual_sas[%d]", m.SPIIn, prev)
			} else {
				spis[k] = i
			}
		}
	}
	for _, conn := range c.Connections {
		if conn.Local.Method != AuthPSK && conn.Remote.Method != AuthPSK {
			continue
		}
		if !hasPSK(c.Secrets.IKE, conn.Local.ID, conn.Remote.ID) {
			d.fail(nil, "connections."+conn.Name+".local.auth",
				"psk needs a secret in secrets.ike whose ids include %s", idsText(conn.Local.ID, conn.Remote.ID))
		}
	}
}

func hasPSK(secrets []IKESecret, local, remote string) bool {
	// An empty id is the peer's or this host's address, and a pattern
	// (%any, *.example.org) names identities known only at run time: the
	// engine then looks the pair up (exact pairs, see IKESecret.IDs).
	runtime := func(id string) bool { return id == "" || id == "%any" || strings.Contains(id, "*") }
	for _, s := range secrets {
		if (runtime(local) || slices.Contains(s.IDs, local)) && (runtime(remote) || slices.Contains(s.IDs, remote)) {
			return true
		}
	}
	return false
}

func idsText(ids ...string) string {
	var out []string
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return "the peers' addresses"
	}
	return strings.Join(out, " and ")
}

// checkIDPattern refuses an identity whose wildcards the IKE engine does
// not implement (see Auth.ID): "*" starts an FQDN or e-mail pattern, once,
// or is a whole distinguished name attribute value; key IDs and addresses
// take none.
func checkIDPattern(s string) error {
	if !strings.Contains(s, "*") || s == "%any" {
		return nil
	}
	switch {
	case strings.HasPrefix(s, "@#"):
		return fmt.Errorf("identity %q: key IDs take no wildcard", s)
	case strings.Contains(s, "="):
		for _, part := range strings.Split(s, ",") {
			if _, v, _ := strings.Cut(part, "="); strings.Contains(v, "*") && strings.TrimSpace(v) != "*" {
				return fmt.Errorf("identity %q: a wildcard must be a whole attribute value, as in CN=*", s)
			}
		}
		return nil
	}
	name := strings.TrimPrefix(s, "@")
	if strings.Count(name, "*") != 1 || name[0] != '*' {
		return fmt.Errorf("identity %q: \"*\" may only start the identity, as in *.example.org or *@example.org", s)
	}
	return nil
}

// checkGroups checks the groups against each other and their connections:
// a prefix belongs to one group, a group's connection exists and has one
// child, and a child with dynamic selectors knows its peers (remote_addrs)
// or is a group's template.
func (d *decoder) checkGroups(c *Config) {
	owner := map[netip.Prefix]string{}
	idRefused := map[string]bool{}
	for _, g := range c.Groups {
		path := join("groups", g.Action.String())
		for _, p := range g.Prefixes {
			if prev, dup := owner[p]; dup {
				d.fail(nil, path+".prefixes", "prefix %v is already in group %s", p, prev)
				continue
			}
			owner[p] = g.Action.String()
		}
		if g.Connection == "" {
			continue
		}
		i := slices.IndexFunc(c.Connections, func(conn Connection) bool { return conn.Name == g.Connection })
		if i < 0 {
			d.fail(nil, path+".connection", "no connection %q", g.Connection)
			continue
		}
		conn := c.Connections[i]
		if n := len(conn.Children); n != 1 {
			d.fail(nil, path+".connection", "connection %q has %d children; a group's connection has exactly one", g.Connection, n)
		}
		if conn.Remote.ID != "" && !idRefused[conn.Name] {
			idRefused[conn.Name] = true
			// RFC 4301, Section 4.4.3.2: the PAD binds a peer to the
			// addresses it may claim. A peer of a group is a host of its
			// prefixes; its identity must be the address it speaks from
			// (its certificate's subjectAltName, which the engine
			// checks), or any holder of a certificate from the CA could
			// speak for any host.
			d.fail(nil, join(join("connections", conn.Name), "remote")+".id",
				"connection %q protects a group: leave remote.id out, so that each peer's identity is the address it speaks from (an IP address in its certificate's subjectAltName)", conn.Name)
		}
	}
	for _, conn := range c.Connections {
		if c.GroupConnection(conn.Name) {
			continue
		}
		for _, ch := range conn.Children {
			if ch.Mode != sa.Transport && ch.LocalTS == nil && ch.RemoteTS == nil {
				path := join(join(join("connections", conn.Name), "children"), ch.Name)
				d.fail(nil, path+".local_ts", "%s", dynamicTSReason)
				d.fail(nil, path+".remote_ts", "%s", dynamicTSReason)
				continue
			}
			if ch.LocalTS == nil && !slices.ContainsFunc(conn.RemoteAddrs, func(a string) bool { return a != "%any" }) {
				d.fail(nil, join(join(join("connections", conn.Name), "children"), ch.Name)+".remote_ts",
					"required: with remote_addrs %%any, dynamic selectors would protect all traffic; list remote_addrs, or name the connection in a group")
			}
		}
	}
}
