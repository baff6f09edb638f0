package swanconf

import (
	"strconv"
	"strings"
)

// node is one piece of the YAML being written: a mapping (kids), a
// sequence (kids with seq set), a scalar or a flow list (vals). Each
// remembers where in swanctl.conf it came from, so that what goipsec
// refuses can be reported against the swanctl.conf line and dropped.
type node struct {
	key    string // mapping key; empty for a sequence item
	vals   []string
	list   bool // vals is a flow list, not one scalar
	seq    bool // kids are sequence items
	kids   []*node
	pos    Pos
	what   string // the swanctl.conf key path, for notes
	unit   bool   // a connection, child, policy or secret: dropped whole
	secret bool   // vals are key material: never in notes
}

func scalar(key, v string, pos Pos, what string) *node {
	return &node{key: key, vals: []string{v}, pos: pos, what: what}
}

func list(key string, vs []string, pos Pos, what string) *node {
	return &node{key: key, vals: vs, list: true, pos: pos, what: what}
}

func (n *node) add(k *node) *node {
	n.kids = append(n.kids, k)
	return k
}

func (n *node) child(key string) *node {
	for _, k := range n.kids {
		if k.key == key {
			return k
		}
	}
	return nil
}

// kidsFrom returns the kids converted from below the swanctl.conf path
// prefix; n may be nil.
func (n *node) kidsFrom(prefix string) []*node {
	if n == nil {
		return nil
	}
	var out []*node
	for _, k := range n.kids {
		if strings.HasPrefix(k.what, prefix+".") {
			out = append(out, k)
		}
	}
	return out
}

func (n *node) remove(k *node) {
	for i, x := range n.kids {
		if x == k {
			n.kids = append(n.kids[:i], n.kids[i+1:]...)
			return
		}
	}
}

// quote writes s as a YAML double-quoted scalar; Go's escapes are a subset
// of YAML's (YAML 1.2, Section 5.7).
func quote(s string) string { return strconv.Quote(s) }

// render writes the YAML text of a mapping's kids at the given indent.
func render(b *strings.Builder, n *node, indent int) {
	pad := strings.Repeat("  ", indent)
	for _, k := range n.kids {
		if len(k.vals) == 0 && len(k.kids) == 0 {
			continue // emptied by drops
		}
		if k.key == "" { // sequence item: a mapping
			first := true
			for _, kk := range k.kids {
				if first {
					b.WriteString(pad + "- ")
					first = false
				} else {
					b.WriteString(pad + "  ")
				}
				renderEntry(b, kk, indent+1)
			}
			continue
		}
		b.WriteString(pad)
		renderEntry(b, k, indent)
	}
}

func renderEntry(b *strings.Builder, k *node, indent int) {
	b.WriteString(quoteKey(k.key) + ":")
	switch {
	case k.list:
		q := make([]string, len(k.vals))
		for i, v := range k.vals {
			q[i] = quote(v)
		}
		b.WriteString(" [" + strings.Join(q, ", ") + "]\n")
	case len(k.vals) == 1:
		b.WriteString(" " + quote(k.vals[0]) + "\n")
	default:
		b.WriteString("\n")
		render(b, k, indent+1)
	}
}

// quoteKey leaves plain keys alone and quotes the rest (names from the file).
func quoteKey(k string) string {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' && i > 0) {
			return quote(k)
		}
	}
	return k
}

// step is one node on the way to the setting a config error names; item
// is the list index, or -1.
type step struct {
	parent, n *node
	item      int
}

// resolve follows a config error key ("connections.a.children.b.esp_proposals[1]",
// "secrets.ike[0].ids") through the tree as far as it goes. full says
// whether the whole key was matched.
func resolve(root *node, key string) (path []step, full bool) {
	n := root
	rest := key
	for rest != "" {
		var best *node
		for _, k := range n.kids {
			if k.key == "" {
				continue
			}
			if (rest == k.key || strings.HasPrefix(rest, k.key+".") || strings.HasPrefix(rest, k.key+"[")) &&
				(best == nil || len(k.key) > len(best.key)) {
				best = k
			}
		}
		if best == nil {
			return path, false
		}
		rest = strings.TrimPrefix(rest[len(best.key):], ".")
		st := step{parent: n, n: best, item: -1}
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			i, err := strconv.Atoi(rest[1:max(end, 1)])
			if end < 0 || err != nil {
				return append(path, st), false
			}
			rest = strings.TrimPrefix(rest[end+1:], ".")
			switch {
			case best.seq && i < len(best.kids):
				path = append(path, st)
				st = step{parent: best, n: best.kids[i], item: -1}
			case best.list && i < len(best.vals):
				st.item = i
			default:
				return append(path, st), false
			}
		}
		path = append(path, st)
		n = st.n
	}
	return path, true
}
