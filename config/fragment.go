package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Fragment is one policy document of a shared policy source, such as one
// key of an etcd prefix (policy_sources.etcd). A document uses the same
// schema as the configuration file for the sections that describe policy
// (connections, policies, groups, secrets with secret_file only; a
// group of a document adds its prefixes to the group of that name), plus "targets",
// which says which hosts it is meant for:
//
//	targets:
//	  - {role: web}
//	  - {role: db, site: paris}
//	policies:
//	  - {name: no-telnet, remote_ts: ["0.0.0.0/0[tcp/23]"], action: discard}
//
// A host takes a document if one item of targets names only labels the
// host has, with the same values; a document without targets is for every
// host. Host settings (daemon, policy_sources) stay in the local file, and
// secrets never travel in documents: secrets.ike[].secret and manual_sas
// (whose keys are inline) are refused; secret_file and key name files on
// the host that reads the document.
type Fragment struct {
	// Name names the document in errors, in place of a file name.
	Name string
	// Selected reports whether the document is meant for the host; when
	// false, nothing but targets was read.
	Selected    bool
	Connections []Connection
	Policies    []Policy
	Groups      []Group
	Secrets     Secrets
	// lines are the lines of the document's keys, for Merge's errors.
	lines map[string]int
}

// ParseFragment parses and validates the policy document data, named name
// in errors, for the host with the given labels. Relative file names are
// resolved against dir, the configuration file's directory. It reads the
// secret and key files the document names, and checks them as Load does.
func ParseFragment(name, dir string, data []byte, labels map[string]string) (*Fragment, error) {
	d := &decoder{file: name, dir: dir}
	f := &Fragment{Name: name}
	root := d.document(data)
	if root == nil {
		if err := d.errs.err(); err != nil {
			return nil, err
		}
		return f, nil // an empty document is for every host and says nothing
	}
	targets, known := d.targets(root)
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	if !known {
		f.Selected = true
	} else {
		f.Selected = slices.ContainsFunc(targets, func(t map[string]string) bool {
			for k, v := range t {
				if labels[k] != v {
					return false
				}
			}
			return true
		})
	}
	if !f.Selected {
		return f, nil
	}
	hostOnly := func(reason string) func(string, *yaml.Node) {
		return func(key string, n *yaml.Node) { d.fail(n, key, "not allowed in a policy document: %s", reason) }
	}
	d.mapping(root, "", []field{
		{"targets", func(string, *yaml.Node) {}}, // read above
		{"connections", func(key string, n *yaml.Node) { f.Connections = d.connections(key, n) }},
		{"policies", func(key string, n *yaml.Node) { f.Policies = d.policies(key, n) }},
		{"groups", func(key string, n *yaml.Node) { f.Groups = d.groups(key, n) }},
		{"secrets", func(key string, n *yaml.Node) { d.secrets(&f.Secrets, key, n) }},
		{"daemon", hostOnly("host settings stay in the local configuration file")},
		{"policy_sources", hostOnly("host settings stay in the local configuration file")},
		{"manual_sas", hostOnly("manual SAs hold keys, and secrets never travel in policy documents")},
	})
	for _, e := range d.inline {
		d.fail(nil, e.Key, "secrets never travel in policy documents: use secret_file, a file on the host")
		d.errs[len(d.errs)-1].Line = e.Line
	}
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	f.lines = d.lines
	return f, nil
}

// targets reads the document's targets: a list of mappings of label
// names to values. known is false when the document has no targets.
func (d *decoder) targets(root *yaml.Node) (targets []map[string]string, known bool) {
	if root.Kind != yaml.MappingNode {
		d.fail(root, "(document)", "must be a mapping (key: value), not %s", kindName(root))
		return nil, false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind != yaml.ScalarNode || k.Value != "targets" {
			continue
		}
		known = true
		d.sequence(root.Content[i+1], "targets", func(path string, v *yaml.Node) {
			r := d.resolve(v)
			if r == nil || r.Kind != yaml.MappingNode {
				d.fail(v, path, "must be a mapping of labels to values, as in {role: web}")
				return
			}
			t := make(map[string]string)
			d.pairs(r, path, func(name, key string, k, v *yaml.Node) {
				s, vn, ok := d.scalar(v, key)
				if !ok {
					return
				}
				if !validName(name) || !validName(s) {
					d.fail(vn, key, "labels are name: value, both of letters, digits, '.', '_' and '-'")
					return
				}
				t[name] = s
			})
			if len(t) == 0 {
				d.fail(v, path, "empty target: name at least one label")
				return
			}
			targets = append(targets, t)
		})
		if len(targets) == 0 && len(d.errs) == 0 {
			d.fail(root.Content[i+1], "targets", "empty: leave targets out for every host")
		}
	}
	return targets, known
}

// Merge returns the configuration in force when the local configuration
// is merged with the selected fragments: the local file first, then the
// fragments in the order given (etcd: key order). Connections and
// policies of a fragment come after those of the file and of the
// fragments before it, so in the SPD, which keeps file order, the local
// file's policies come first. A name that is already in use (a connection,
// or a policy or manual SA) is refused, as is a PSK connection without a
// secret among all secrets. Merge does not modify local or the fragments;
// errors name the fragment, the line and the key.
func Merge(local *Config, frags []*Fragment) (*Config, error) {
	c := *local
	c.Connections = slices.Clone(local.Connections)
	c.Policies = slices.Clone(local.Policies)
	c.Secrets.IKE = slices.Clone(local.Secrets.IKE)
	c.Groups = slices.Clone(local.Groups)
	for i := range c.Groups {
		c.Groups[i].Prefixes = slices.Clone(c.Groups[i].Prefixes)
	}
	conns := make(map[string]string)
	names := make(map[string]string) // policies and manual SAs share names
	for _, x := range local.Connections {
		conns[x.Name] = local.File
	}
	for _, p := range local.Policies {
		names[p.Name] = local.File
	}
	for _, m := range local.ManualSAs {
		names[m.Name] = local.File
	}
	// owner names the group and the source of each prefix, so that a
	// prefix that a document puts in a second group is refused with that
	// document's name and line.
	owner := make(map[netip.Prefix]string)
	for _, g := range local.Groups {
		for _, p := range g.Prefixes {
			owner[p] = g.Action.String() + " (" + local.File + ")"
		}
	}
	// from names the document that brought a connection, or a group that
	// the local file does not have, so that the checks of the merged
	// groups below can name it.
	from := make(map[string]*Fragment)
	var errs errorList
	fail := func(f *Fragment, key, format string, args ...any) {
		if len(errs) < maxErrors {
			errs = append(errs, &Error{File: f.Name, Line: lineOf(f.lines, key), Key: key, Reason: fmt.Sprintf(format, args...)})
		}
	}
	for _, f := range frags {
		if !f.Selected {
			continue
		}
		for _, x := range f.Connections {
			key := "connections." + x.Name
			if prev, dup := conns[x.Name]; dup {
				fail(f, key, "connection %q is already defined in %s", x.Name, prev)
				continue
			}
			conns[x.Name] = f.Name
			from["connections."+x.Name+"."] = f
			c.Connections = append(c.Connections, x)
		}
		for i, p := range f.Policies {
			if prev, dup := names[p.Name]; dup {
				fail(f, index("policies", i)+".name", "name %q is already used in %s", p.Name, prev)
				continue
			}
			names[p.Name] = f.Name
			c.Policies = append(c.Policies, p)
		}
		c.Secrets.IKE = append(c.Secrets.IKE, f.Secrets.IKE...)
		for _, g := range f.Groups {
			var fresh []netip.Prefix
			for _, p := range g.Prefixes {
				if prev, dup := owner[p]; dup {
					fail(f, join("groups", g.Action.String())+".prefixes", "prefix %v is already in group %s", p, prev)
					continue
				}
				owner[p] = g.Action.String() + " (" + f.Name + ")"
				fresh = append(fresh, p)
			}
			g.Prefixes = fresh
			if _, have := c.Group(g.Action); !have {
				from[join("groups", g.Action.String())+"."] = f
			}
			mergeGroup(&c, g, func(key, format string, args ...any) { fail(f, key, format, args...) })
		}
	}
	// The groups as merged must hold together as a file's would: each
	// group's connection defined with one child (a prefix in two groups
	// was refused above, with the document that brought it).
	gd := &decoder{file: "policy documents"}
	gd.checkGroups(&c)
	for _, e := range gd.errs {
		for key, f := range from {
			if strings.HasPrefix(e.Key, key) {
				e.File, e.Line = f.Name, lineOf(f.lines, e.Key)
				break
			}
		}
		errs = append(errs, e)
	}
	for _, f := range frags {
		for _, x := range f.Connections {
			if (x.Local.Method == AuthPSK || x.Remote.Method == AuthPSK) && !hasPSK(c.Secrets.IKE, x.Local.ID, x.Remote.ID) {
				fail(f, "connections."+x.Name+".local.auth",
					"psk needs a secret in secrets.ike (of the local file or a document, with secret_file) whose ids include %s", idsText(x.Local.ID, x.Remote.ID))
			}
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// mergeGroup adds group g of a document to c: its prefixes join those of
// the group of the same name (its connection and fallback times must then
// agree), or it becomes a group of its own.
func mergeGroup(c *Config, g Group, fail func(key, format string, args ...any)) {
	path := join("groups", g.Action.String())
	i := slices.IndexFunc(c.Groups, func(x Group) bool { return x.Action == g.Action })
	if i < 0 {
		c.Groups = append(c.Groups, g)
		slices.SortFunc(c.Groups, func(a, b Group) int { return int(a.Action) - int(b.Action) })
		return
	}
	have := &c.Groups[i]
	if have.Connection != g.Connection {
		fail(path+".connection", "group %s is already protected by connection %q, not %q", g.Action, have.Connection, g.Connection)
		return
	}
	if have.FallbackTimeout != g.FallbackTimeout || have.FallbackTime != g.FallbackTime {
		fail(path, "group %s already has fallback_timeout %v and fallback_time %v", g.Action, have.FallbackTimeout, have.FallbackTime)
		return
	}
	have.Prefixes = append(have.Prefixes, g.Prefixes...)
}

// lineOf returns the line of key, or of its closest parent, in lines.
func lineOf(lines map[string]int, key string) int {
	return (&decoder{lines: lines}).lineOf(key)
}
