package swanconf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/goipsec/goipsec/config"
)

// Note is one thing that could not be carried over, or was changed on the
// way, at a swanctl.conf position. It never contains key material.
type Note struct {
	Pos Pos
	Key string // the swanctl.conf key path, "connections.rw.pools"
	Msg string
}

func (n Note) String() string { return n.Pos.String() + ": " + n.Key + ": " + n.Msg }

// Result is a conversion.
type Result struct {
	// YAML is the goipsec configuration; config.Parse accepts it when
	// written in Options.Dir.
	YAML []byte
	// Notes say, in swanctl.conf order, what was not carried over.
	Notes []Note
	// Connections, Policies and Secrets count what was written.
	Connections, Policies, Secrets int
}

// Options tune Convert. The zero value writes paths for a YAML file that
// sits next to swanctl.conf.
type Options struct {
	// Dir is the directory the YAML file will be written to: relative
	// certificate and key paths are written relative to it, and the
	// result is checked as if it were there. Empty means the directory of
	// swanctl.conf.
	Dir string
}

// ConvertFile parses the swanctl.conf at path and converts it.
func ConvertFile(path string, o Options) (*Result, error) {
	root, err := ParseFile(path)
	if err != nil {
		return nil, err
	}
	return Convert(root, o)
}

// Convert turns a parsed swanctl.conf (root.Pos.File names it) into goipsec
// YAML. It then checks the YAML with config.Parse, as `ipsecd --check`
// does, and drops what goipsec refuses (a proposal, a selector, or the
// child or connection around it), noting why, until the file is accepted.
func Convert(root *Section, o Options) (*Result, error) {
	swanDir, err := filepath.Abs(filepath.Dir(root.Pos.File))
	if err != nil {
		return nil, fmt.Errorf("swanconf: %w", err)
	}
	outDir := swanDir
	if o.Dir != "" {
		if outDir, err = filepath.Abs(o.Dir); err != nil {
			return nil, fmt.Errorf("swanconf: %w", err)
		}
	}
	c := &conv{swanDir: swanDir, outDir: outDir, out: &node{}}
	c.convert(root)
	return c.check()
}

type conv struct {
	swanDir, outDir string
	out             *node
	notes           []Note
	pskConns        []pskConn
}

type pskConn struct {
	name              string
	localID, remoteID string
}

func (c *conv) note(pos Pos, key, format string, args ...any) {
	c.notes = append(c.notes, Note{Pos: pos, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// unsupported explains settings goipsec has no equivalent for; others get
// a generic reason.
var unsupported = map[string]string{
	"pools":         "address pools are not implemented in goipsec",
	"vips":          "virtual IPs (configuration payload) are not implemented in goipsec",
	"mobike":        "MOBIKE (RFC 4555) is not implemented in goipsec",
	"reauth_time":   "IKE reauthentication is not implemented in goipsec; rekey_time applies",
	"over_time":     "goipsec has no hard IKE SA lifetime beyond rekey_time",
	"rand_time":     "goipsec does not randomize rekey times",
	"unique":        "goipsec has no uniqueness policy for IKE SAs",
	"send_certreq":  "goipsec always sends CERTREQ as it sees fit",
	"send_cert":     "goipsec always sends its certificate",
	"fragmentation": "goipsec negotiates IKE fragmentation (RFC 7383) itself",
	"keyingtries":   "goipsec retries as daemon.ike.retransmit_* say",
	"dpd_timeout":   "dpd_timeout is an IKEv1 setting",
	"aggressive":    "aggressive mode is IKEv1",
	"pull":          "the configuration payload is not implemented in goipsec",
	"local_port":    "goipsec uses ports 500 and 4500",
	"remote_port":   "goipsec uses ports 500 and 4500",
	"updown":        "updown scripts are not implemented in goipsec",
	"life_time":     "goipsec has no hard CHILD SA lifetime beyond rekey_time",
	"rekey_bytes":   "volume-based rekeying is not configurable in goipsec",
	"rekey_packets": "volume-based rekeying is not configurable in goipsec",
	"life_bytes":    "volume-based lifetimes are not configurable in goipsec",
	"life_packets":  "volume-based lifetimes are not configurable in goipsec",
	"dpd_action":    "goipsec has no dpd_action",
	"close_action":  "goipsec has no close_action",
	"ipcomp":        "IPComp is not implemented in goipsec",
	"hostaccess":    "goipsec has no hostaccess setting",
	"policies":      "goipsec always installs policies",
	"revocation":    "goipsec does not check revocation (CRL, OCSP)",
	"eap_id":        "EAP is not implemented in goipsec",
	"aaa_id":        "EAP is not implemented in goipsec",
	"xauth_id":      "XAuth is IKEv1",
	"groups":        "group membership checks are not implemented in goipsec",
	"cert_policy":   "certificate policy checks are not implemented in goipsec",
	"ca_id":         "goipsec has no ca_id; list the CA in cacerts",
	"pubkeys":       "raw public keys are not implemented in goipsec",
	"ppk_id":        "post-quantum preshared keys (RFC 8784) are not implemented in goipsec",
	"ppk_required":  "post-quantum preshared keys (RFC 8784) are not implemented in goipsec",
	"authorities":   "goipsec has no certification authority sections; list CA files in cacerts",
}

// sameAsGoipsec lists the values of unsupported settings that ask for what
// goipsec does anyway (mostly: a feature turned off); they are dropped
// without a note.
var sameAsGoipsec = map[string][]string{
	"mobike":        {"no"},
	"reauth_time":   {"0", "0s"},
	"rand_time":     {"0", "0s"},
	"rekey_bytes":   {"0"},
	"rekey_packets": {"0"},
	"life_bytes":    {"0"},
	"life_packets":  {"0"},
	"hostaccess":    {"no"},
	"ipcomp":        {"no"},
	"aggressive":    {"no"},
	"policies":      {"yes"},
	"local_port":    {"500"},
	"remote_port":   {"500"},
	"dpd_action":    {"none", "clear"},
	"close_action":  {"none"},
}

func (c *conv) drop(s *Setting, path string) {
	if slices.Contains(sameAsGoipsec[s.Key], strings.ToLower(s.Value)) {
		return
	}
	reason, ok := unsupported[s.Key]
	if !ok {
		reason = "not supported by goipsec"
	}
	c.note(s.Pos, path+"."+s.Key, "%s; dropped", reason)
}

func (c *conv) dropSection(s *Section, path string) {
	reason, ok := unsupported[s.Name]
	if !ok {
		reason = "not supported by goipsec"
	}
	c.note(s.Pos, path+s.Name, "%s; dropped", reason)
}

func (c *conv) convert(root *Section) {
	for _, s := range root.Settings {
		c.note(s.Pos, s.Key, "not a swanctl.conf setting; dropped")
	}
	var secrets *Section
	for _, sec := range root.Sections {
		switch sec.Name {
		case "connections":
			for _, s := range sec.Settings {
				c.note(s.Pos, "connections."+s.Key, "not a connection; dropped")
			}
			for _, conn := range sec.Sections {
				c.connection(conn)
			}
		case "secrets":
			secrets = sec
		case "pools":
			for _, p := range sec.Sections {
				c.note(p.Pos, "pools."+p.Name, "address pools are not implemented in goipsec; dropped")
			}
		default:
			c.dropSection(sec, "")
		}
	}
	if secrets != nil {
		c.secrets(secrets)
	}
}

func (c *conv) connection(s *Section) {
	path := "connections." + s.Name
	cn := &node{key: s.Name, pos: s.Pos, what: path, unit: true}
	var localAddrs, remoteAddrs []string
	for _, kv := range s.Settings {
		what := path + "." + kv.Key
		switch kv.Key {
		case "version":
			switch kv.Value {
			case "0", "2":
			case "1":
				c.note(kv.Pos, what, "IKEv1 is not supported by goipsec; connection dropped")
				return
			default:
				c.note(kv.Pos, what, "unknown IKE version %q; connection dropped", kv.Value)
				return
			}
		case "local_addrs", "remote_addrs":
			l := List(kv.Value)
			if kv.Key == "local_addrs" {
				localAddrs = l
			} else {
				remoteAddrs = l
			}
			cn.add(list(kv.Key, l, kv.Pos, what))
		case "proposals":
			cn.add(list(kv.Key, List(kv.Value), kv.Pos, what))
		case "encap":
			b, ok := boolean(kv.Value)
			if !ok {
				c.note(kv.Pos, what, "%q is not yes or no; dropped", kv.Value)
				continue
			}
			cn.add(scalar(kv.Key, b, kv.Pos, what))
		case "rekey_time":
			if c.rekeyNever(kv, what, "4h") {
				continue
			}
			cn.add(scalar(kv.Key, kv.Value, kv.Pos, what))
		case "dpd_delay":
			cn.add(scalar(kv.Key, kv.Value, kv.Pos, what))
		default:
			c.drop(kv, path)
		}
	}
	var locals, remotes []*Section
	var children *Section
	for _, sub := range s.Sections {
		switch {
		case sub.Name == "local" || strings.HasPrefix(sub.Name, "local-"):
			locals = append(locals, sub)
		case sub.Name == "remote" || strings.HasPrefix(sub.Name, "remote-"):
			remotes = append(remotes, sub)
		case sub.Name == "children":
			children = sub
		default:
			c.dropSection(sub, path+".")
		}
	}
	var ids [2]string
	var psk bool
	for i, rounds := range [2][]*Section{locals, remotes} {
		side := [2]string{"local", "remote"}[i]
		// Rounds are ordered by their suffix (strongSwan sorts them).
		sort.SliceStable(rounds, func(a, b int) bool { return rounds[a].Name < rounds[b].Name })
		sec := &Section{Name: side, Pos: s.Pos}
		if len(rounds) > 0 {
			sec = rounds[0]
		}
		for _, extra := range rounds[min(1, len(rounds)):] {
			c.note(extra.Pos, path+"."+extra.Name, "more than one authentication round (RFC 4739) is not implemented in goipsec; dropped")
		}
		an, id, method, ok := c.auth(sec, path+"."+sec.Name, side, i == 0)
		if !ok {
			return
		}
		ids[i] = id
		psk = psk || method == "psk"
		cn.add(an)
	}
	if psk {
		c.pskConns = append(c.pskConns, pskConn{name: s.Name, localID: orAddr(ids[0], localAddrs), remoteID: orAddr(ids[1], remoteAddrs)})
	}
	chn := &node{key: "children", pos: s.Pos, what: path + ".children"}
	if children != nil {
		chn.pos = children.Pos
		for _, kv := range children.Settings {
			c.note(kv.Pos, path+".children."+kv.Key, "not a child; dropped")
		}
		for _, ch := range children.Sections {
			if n := c.child(ch, path+".children."+ch.Name, s.Name, localAddrs, remoteAddrs); n != nil {
				chn.add(n)
			}
		}
	}
	if len(chn.kids) == 0 {
		switch {
		case children == nil || len(children.Sections) == 0:
			c.note(s.Pos, path, "a connection without children has nothing for goipsec to protect; dropped")
		case len(c.out.child("policies").kidsFrom(path)) < len(children.Sections):
			c.note(s.Pos, path, "no child left; connection dropped")
		}
		return // only pass/drop shunts, now policies, or nothing left
	}
	cn.add(chn)
	c.top("connections", s.Pos).add(cn)
}

// top returns a top-level section of the output, created on first use.
func (c *conv) top(key string, pos Pos) *node {
	if n := c.out.child(key); n != nil {
		return n
	}
	return c.out.add(&node{key: key, pos: pos, what: key})
}

// orAddr is the identity a PSK is looked up by: the id, or the address
// when the id is left out (RFC 7296, Section 2.15: then the IP address).
func orAddr(id string, addrs []string) string {
	if id != "" {
		return id
	}
	if len(addrs) == 1 {
		if a, err := netip.ParseAddr(addrs[0]); err == nil {
			return a.String()
		}
	}
	return ""
}

func boolean(v string) (string, bool) {
	switch strings.ToLower(v) {
	case "yes", "true", "enabled", "1":
		return "true", true
	case "no", "false", "disabled", "0":
		return "false", true
	}
	return "", false
}

// rekeyNever notes and reports a rekey_time of zero: strongSwan then never
// rekeys, while goipsec reads zero as its default.
func (c *conv) rekeyNever(kv *Setting, what, def string) bool {
	if v := strings.TrimRight(kv.Value, "smhd"); v == "" || strings.Trim(v, "0") != "" {
		return false
	}
	c.note(kv.Pos, what, "0 disables rekeying in strongSwan; goipsec always rekeys, by default every %s; dropped", def)
	return true
}

// auth converts one side's authentication; ok false drops the connection.
func (c *conv) auth(s *Section, path, side string, local bool) (n *node, id, method string, ok bool) {
	n = &node{key: side, pos: s.Pos, what: path}
	method = "pubkey"
	if kv := s.Get("auth"); kv != nil {
		v := strings.ToLower(kv.Value)
		switch {
		case v == "psk":
			method = "psk"
		case v == "pubkey":
		case strings.HasPrefix(v, "rsa"), strings.HasPrefix(v, "ecdsa"), strings.HasPrefix(v, "ed25519"),
			strings.HasPrefix(v, "ed448"), strings.HasPrefix(v, "bliss"):
			c.note(kv.Pos, path+".auth", "the signature scheme constraint %q is not enforced by goipsec; converted to pubkey", kv.Value)
		case strings.HasPrefix(v, "eap"):
			c.note(kv.Pos, path+".auth", "EAP authentication is not implemented in goipsec; connection dropped")
			return nil, "", "", false
		case strings.HasPrefix(v, "xauth"):
			c.note(kv.Pos, path+".auth", "XAuth is IKEv1; connection dropped")
			return nil, "", "", false
		default:
			c.note(kv.Pos, path+".auth", "unknown authentication %q; connection dropped", kv.Value)
			return nil, "", "", false
		}
		n.add(scalar("auth", method, kv.Pos, path+".auth"))
	} else {
		n.add(scalar("auth", method, s.Pos, path+".auth"))
	}
	var certs, cacerts []string
	var certsPos, cacertsPos Pos
	for _, kv := range s.Settings {
		switch kv.Key {
		case "auth":
		case "id":
			id = kv.Value
			n.add(scalar("id", id, kv.Pos, path+".id"))
		case "certs":
			certs = append(certs, c.files(List(kv.Value), "x509")...)
			certsPos = kv.Pos
		case "cacerts":
			cacerts = append(cacerts, c.files(List(kv.Value), "x509ca")...)
			cacertsPos = kv.Pos
		default:
			c.drop(kv, path)
		}
	}
	for _, sub := range s.Sections {
		f := sub.Get("file")
		switch {
		case f != nil && strings.HasPrefix(sub.Name, "cert"):
			certs = append(certs, c.files([]string{f.Value}, "x509")...)
			certsPos = f.Pos
		case f != nil && strings.HasPrefix(sub.Name, "cacert"):
			cacerts = append(cacerts, c.files([]string{f.Value}, "x509ca")...)
			cacertsPos = f.Pos
		default:
			c.note(sub.Pos, path+"."+sub.Name, "certificates on tokens (handle, slot) are not supported by goipsec; dropped")
		}
	}
	if method == "psk" {
		if len(certs)+len(cacerts) > 0 {
			c.note(certsPos, path+".certs", "certificates are not used with auth = psk; dropped")
		}
		return n, id, method, true
	}
	// strongSwan picks certificates and keys from its directories; goipsec
	// needs them named.
	if local && len(certs) == 0 {
		if found := c.dirFiles("x509"); len(found) == 1 {
			certs, certsPos = found, s.Pos
		} else {
			c.note(s.Pos, path+".certs", "goipsec needs this host's certificate in certs and x509/ does not hold exactly one; add it")
		}
	}
	if !local && len(certs)+len(cacerts) == 0 {
		if found := c.dirFiles("x509ca"); len(found) > 0 {
			cacerts, cacertsPos = found, s.Pos
		} else {
			c.note(s.Pos, path+".cacerts", "strongSwan trusts every CA certificate in x509ca/, goipsec only those in cacerts, and none were found; add them")
		}
	}
	if len(certs) > 0 {
		n.add(list("certs", certs, certsPos, path+".certs"))
	}
	if len(cacerts) > 0 {
		n.add(list("cacerts", cacerts, cacertsPos, path+".cacerts"))
	}
	if local && len(certs) > 0 {
		if key := c.privateKey(certs[0]); key != "" {
			n.add(scalar("key", key, s.Pos, path+".key"))
		} else {
			c.note(s.Pos, path+".key", "goipsec needs this host's private key in key and none matching the certificate was found in private/, rsa/, ecdsa/ or pkcs8/; add it")
		}
	}
	return n, id, method, true
}

// keyDirs are where strongSwan loads private keys from.
var keyDirs = []string{"private", "rsa", "ecdsa", "pkcs8", "ed25519"}

// files resolves swanctl.conf file names (relative ones are in the
// swanctl directory dir) to paths for the YAML file.
func (c *conv) files(names []string, dir string) []string {
	out := make([]string, 0, len(names))
	for _, f := range names {
		if !filepath.IsAbs(f) {
			f = filepath.Join(c.swanDir, dir, f)
		}
		out = append(out, c.rel(f))
	}
	return out
}

func (c *conv) rel(abs string) string {
	if r, err := filepath.Rel(c.outDir, abs); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return abs
}

// dirFiles lists the regular files in a swanctl subdirectory.
func (c *conv) dirFiles(dir string) []string {
	ents, err := os.ReadDir(filepath.Join(c.swanDir, dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, c.rel(filepath.Join(c.swanDir, dir, e.Name())))
		}
	}
	return out
}

// privateKey finds the key of cert among the files strongSwan would load:
// the only key there is, or the one named like the certificate
// ("moonCert.pem" and "moonKey.pem", "a.crt" and "a.key").
func (c *conv) privateKey(cert string) string {
	var all []string
	for _, d := range keyDirs {
		all = append(all, c.dirFiles(d)...)
	}
	if len(all) == 1 {
		return all[0]
	}
	stem := strings.TrimSuffix(filepath.Base(cert), filepath.Ext(cert))
	want := []string{strings.Replace(stem, "Cert", "Key", 1), stem}
	for _, k := range all {
		if slices.Contains(want, strings.TrimSuffix(filepath.Base(k), filepath.Ext(k))) {
			return k
		}
	}
	return ""
}

// child converts a CHILD SA; pass and drop shunts become policies.
func (c *conv) child(s *Section, path, conn string, localAddrs, remoteAddrs []string) *node {
	n := &node{key: s.Name, pos: s.Pos, what: path, unit: true}
	mode := "tunnel"
	if kv := s.Get("mode"); kv != nil {
		mode = kv.Value
	}
	ts := map[string][]string{"local_ts": {"dynamic"}, "remote_ts": {"dynamic"}}
	tsPos := map[string]Pos{"local_ts": s.Pos, "remote_ts": s.Pos}
	for _, kv := range s.Settings {
		if kv.Key == "local_ts" || kv.Key == "remote_ts" {
			ts[kv.Key], tsPos[kv.Key] = List(kv.Value), kv.Pos
		}
	}
	// "dynamic" is the IKE address of that side (strongSwan's default);
	// goipsec needs it written out.
	for _, k := range []string{"local_ts", "remote_ts"} {
		addrs := localAddrs
		if k == "remote_ts" {
			addrs = remoteAddrs
		}
		for i, t := range ts[k] {
			rest, ok := strings.CutPrefix(t, "dynamic")
			if !ok {
				continue
			}
			a := orAddr("", addrs)
			if a == "" {
				c.note(tsPos[k], path+"."+k, `"dynamic" stands for an address that is not one fixed IP (%s_addrs); goipsec needs explicit selectors; child dropped`, strings.TrimSuffix(k, "_ts"))
				return nil
			}
			ts[k][i] = netip.PrefixFrom(netip.MustParseAddr(a), netip.MustParseAddr(a).BitLen()).String() + rest
		}
	}
	switch mode {
	case "pass", "drop":
		action := map[string]string{"pass": "bypass", "drop": "discard"}[mode]
		p := &node{pos: s.Pos, what: path, unit: true}
		p.add(scalar("name", conn+"-"+s.Name, s.Pos, path))
		p.add(list("local_ts", ts["local_ts"], tsPos["local_ts"], path+".local_ts"))
		p.add(list("remote_ts", ts["remote_ts"], tsPos["remote_ts"], path+".remote_ts"))
		p.add(scalar("action", action, s.Pos, path+".mode"))
		for _, kv := range s.Settings {
			if kv.Key != "mode" && kv.Key != "local_ts" && kv.Key != "remote_ts" && kv.Key != "start_action" {
				c.drop(kv, path)
			}
		}
		pol := c.top("policies", s.Pos)
		pol.seq = true
		pol.add(p)
		return nil
	case "tunnel", "transport":
	default:
		c.note(s.Get("mode").Pos, path+".mode", "mode %q is not implemented in goipsec; child dropped", mode)
		return nil
	}
	n.add(scalar("mode", mode, s.Pos, path+".mode"))
	n.add(list("local_ts", ts["local_ts"], tsPos["local_ts"], path+".local_ts"))
	n.add(list("remote_ts", ts["remote_ts"], tsPos["remote_ts"], path+".remote_ts"))
	for _, kv := range s.Settings {
		what := path + "." + kv.Key
		switch kv.Key {
		case "mode", "local_ts", "remote_ts":
		case "esp_proposals", "ah_proposals":
			n.add(list(kv.Key, List(kv.Value), kv.Pos, what))
		case "start_action":
			v := kv.Value
			switch v {
			case "none", "trap", "start":
			case "trap|start", "start|trap":
				c.note(kv.Pos, what, "%q: goipsec takes one start action; trap used", v)
				v = "trap"
			default:
				c.note(kv.Pos, what, "unknown start action %q; dropped", v)
				continue
			}
			n.add(scalar(kv.Key, v, kv.Pos, what))
		case "rekey_time":
			if c.rekeyNever(kv, what, "1h") {
				continue
			}
			n.add(scalar(kv.Key, kv.Value, kv.Pos, what))
		case "replay_window":
			n.add(scalar(kv.Key, kv.Value, kv.Pos, what))
		default:
			c.drop(kv, path)
		}
	}
	for _, sub := range s.Sections {
		c.dropSection(sub, path+".")
	}
	return n
}

// swanSecret is one ike secret of swanctl.conf.
type swanSecret struct {
	pos   Pos
	what  string
	ids   []string
	value string
}

// secrets converts secrets.ike*; other kinds are noted. RFC 7296,
// Section 2.15: a PSK is chosen by the two identities, so each secret is
// written with both, as the connections using it name them.
func (c *conv) secrets(s *Section) {
	for _, kv := range s.Settings {
		c.note(kv.Pos, "secrets."+kv.Key, "not a secret section; dropped")
	}
	var ike []swanSecret
	for _, sec := range s.Sections {
		what := "secrets." + sec.Name
		kind, _, _ := strings.Cut(sec.Name, "-")
		switch kind {
		case "ike":
		case "eap", "xauth", "ntlm":
			c.note(sec.Pos, what, "EAP and XAuth secrets are not used by goipsec; dropped")
			continue
		case "private", "rsa", "ecdsa", "pkcs8", "pkcs12", "token":
			c.note(sec.Pos, what, "goipsec reads unencrypted private keys only (local.key); passphrase dropped")
			continue
		case "ppk":
			c.note(sec.Pos, what, "post-quantum preshared keys (RFC 8784) are not implemented in goipsec; dropped")
			continue
		default:
			c.note(sec.Pos, what, "unknown secret type; dropped")
			continue
		}
		ss := swanSecret{pos: sec.Pos, what: what}
		for _, kv := range sec.Settings {
			switch {
			case kv.Key == "secret":
				ss.value = kv.Value
			case kv.Key == "id" || strings.HasPrefix(kv.Key, "id-"):
				ss.ids = append(ss.ids, kv.Value)
			default:
				c.drop(kv, what)
			}
		}
		if ss.value == "" {
			c.note(sec.Pos, what, "no secret; dropped")
			continue
		}
		ike = append(ike, ss)
	}
	type written struct {
		ids   string
		value string
	}
	var seen []written
	emit := func(ss swanSecret, ids []string) {
		w := written{strings.Join(ids, "\x00"), ss.value}
		if slices.Contains(seen, w) {
			return
		}
		seen = append(seen, w)
		sn := &node{pos: ss.pos, what: ss.what, unit: true}
		if len(ids) > 0 {
			sn.add(list("ids", ids, ss.pos, ss.what+".id"))
		}
		sn.add(&node{key: "secret", vals: []string{ss.value}, pos: ss.pos, what: ss.what + ".secret", secret: true})
		top := c.top("secrets", s.Pos)
		ikeN := top.child("ike")
		if ikeN == nil {
			ikeN = top.add(&node{key: "ike", seq: true, pos: s.Pos, what: "secrets"})
		}
		ikeN.add(sn)
	}
	// For each PSK connection, the secret strongSwan would pick: the one
	// naming most of the two identities; one without ids matches any. A
	// connection accepting %any as the peer gets every secret naming this
	// side, with the peer's id that secret names.
	used := make([]bool, len(ike))
	for _, pc := range c.pskConns {
		best, bestScore := -1, -1
		for i, ss := range ike {
			score := 0
			var peers []string
			for _, id := range ss.ids {
				switch id {
				case pc.localID, pc.remoteID:
					score++
				default:
					peers = append(peers, id)
				}
			}
			if pc.remoteID == "%any" && len(peers) == 1 && len(ss.ids) <= 2 {
				used[i] = true
				emit(ss, []string{pc.localID, peers[0]})
				continue
			}
			if len(ss.ids) > 0 && score == 0 {
				continue
			}
			if score > bestScore {
				best, bestScore = i, score
			}
		}
		if best < 0 {
			continue
		}
		used[best] = true
		ids := []string{pc.localID, pc.remoteID}
		if slices.Contains(ids, "") {
			ids = ike[best].ids // the addresses are not known here
		}
		emit(ike[best], ids)
	}
	for i, ss := range ike {
		if !used[i] {
			c.note(ss.pos, ss.what, "not the secret of any converted connection; dropped")
		}
	}
}

// maxRounds bounds the check-and-drop loop; each round drops something.
const maxRounds = 200

// check renders the YAML, has config.Parse check it, and drops what it
// refuses until it is accepted.
func (c *conv) check() (*Result, error) {
	file := filepath.Join(c.outDir, "goipsec.yaml")
	order := []string{"connections", "policies", "secrets"}
	slices.SortStableFunc(c.out.kids, func(a, b *node) int {
		return slices.Index(order, a.key) - slices.Index(order, b.key)
	})
	for range maxRounds {
		var b strings.Builder
		render(&b, c.out, 0)
		_, err := config.Parse(file, []byte(b.String()))
		if err == nil {
			return c.result([]byte(b.String())), nil
		}
		progress := false
		for _, e := range configErrors(err) {
			if c.refuse(e) {
				progress = true
			}
		}
		if !progress {
			return nil, fmt.Errorf("swanconf: goipsec refuses the converted file and the converter cannot tell what to drop: %w", err)
		}
	}
	return nil, errors.New("swanconf: the converted file is still refused after dropping many items")
}

func configErrors(err error) []*config.Error {
	var out []*config.Error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, configErrors(e)...)
		}
		return out
	}
	var ce *config.Error
	if errors.As(err, &ce) {
		out = append(out, ce)
	}
	return out
}

// essential are settings whose refusal drops what holds them.
var essential = map[string]bool{"auth": true, "secret": true, "ids": true, "mode": true, "name": true, "action": true}

// refuse drops what the config error e names, noting why; false when it
// names nothing the converter wrote.
func (c *conv) refuse(e *config.Error) bool {
	path, full := resolve(c.out, e.Key)
	if len(path) == 0 {
		return false
	}
	last := path[len(path)-1]
	reason := e.Reason
	if last.n.secret {
		reason = "refused by goipsec"
	}
	switch {
	case full && last.item >= 0:
		n := last.n
		v := n.vals[last.item]
		c.note(n.pos, n.what, "%q: goipsec: %s; dropped", v, strings.TrimPrefix(reason, fmt.Sprintf("%q: ", v)))
		n.vals = slices.Delete(n.vals, last.item, last.item+1)
		if len(n.vals) > 0 {
			return true
		}
		// An empty list would mean goipsec's default (any address, the
		// default proposals, ESP instead of AH): drop what holds it.
		for i := len(path) - 1; i >= 0; i-- {
			if st := path[i]; st.n.unit {
				c.note(st.n.pos, st.n.what, "nothing left of %s; dropped", n.key)
				st.parent.remove(st.n)
				return true
			}
		}
		return true
	case full && len(last.n.vals) > 0 && !essential[last.n.key]:
		c.note(last.n.pos, last.n.what, "goipsec: %s; dropped", reason)
		last.parent.remove(last.n)
		return true
	}
	for i := len(path) - 1; i >= 0; i-- {
		if st := path[i]; st.n.unit {
			c.note(st.n.pos, st.n.what, "goipsec: %s: %s; dropped", e.Key, reason)
			st.parent.remove(st.n)
			// A connection left without children goes too, the next
			// round says so.
			return true
		}
	}
	return false
}

func (c *conv) result(yaml []byte) *Result {
	r := &Result{YAML: yaml, Notes: c.notes}
	sort.SliceStable(r.Notes, func(i, j int) bool {
		a, b := r.Notes[i].Pos, r.Notes[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	if n := c.out.child("connections"); n != nil {
		r.Connections = len(n.kids)
	}
	if n := c.out.child("policies"); n != nil {
		r.Policies = len(n.kids)
	}
	if n := c.out.child("secrets"); n != nil && n.child("ike") != nil {
		r.Secrets = len(n.child("ike").kids)
	}
	return r
}
