package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree and records errors with file, line and key.
type decoder struct {
	file  string
	dir   string // the configuration file's directory, for relative paths
	errs  errorList
	nodes int // nodes visited, bounded by maxNodes
	// lines maps the keys seen (dotted paths) to their lines, for errors
	// found after the walk.
	lines map[string]int
	// inline are the secrets written in the file itself (key and line),
	// which Load refuses to read from a file others may read.
	inline []*Error
}

// inlineSecret notes that the value of key, at node n, is a secret.
func (d *decoder) inlineSecret(n *yaml.Node, key string) {
	d.inline = append(d.inline, &Error{File: d.file, Line: n.Line, Key: key})
}

// maxNodes bounds the work of one parse: aliases let a small file name a
// large tree.
const maxNodes = 200_000

// fail records an error at n's line, or, without n, at the line of key or
// of its closest parent.
func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	} else {
		line = d.lineOf(key)
	}
	if len(d.errs) < maxErrors {
		reason := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
		d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Reason: reason})
	}
}

func (d *decoder) setLine(key string, line int) {
	if d.lines == nil {
		d.lines = make(map[string]int)
	}
	d.lines[key] = line
}

// lineOf returns the line of key or of its closest recorded parent.
func (d *decoder) lineOf(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// resolve follows aliases and counts the node against the budget. It
// returns nil for a missing node or when the budget is spent.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 {
			return nil
		}
		n = n.Alias
	}
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.fail(n, "(document)", "too large: more than %d nodes once aliases are expanded", maxNodes)
		}
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "something else"
}

// join appends name to the dotted path key. Names that are not plain
// (spaces, dots, control characters, ...) are quoted so that an error stays
// on one line and the path stays unambiguous.
func join(key, name string) string {
	if !plainKey(name) {
		name = strconv.Quote(name)
	}
	if key == "" {
		return name
	}
	return key + "." + name
}

func plainKey(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '<') {
			return false
		}
	}
	return true
}

func index(key string, i int) string { return key + "[" + strconv.Itoa(i) + "]" }

// field is one known key of a mapping and what to do with its value.
type field struct {
	name string
	fn   func(key string, v *yaml.Node)
}

// mapping walks the mapping n at key, calling each field's fn for the keys
// present, in file order. Unknown and duplicate keys are errors. It returns
// the mapping node (for the line of "required" errors) or nil when n is
// absent, null or not a mapping.
func (d *decoder) mapping(n *yaml.Node, key string, fields []field) *yaml.Node {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "must be a mapping (key: value), not %s", kindName(n))
		return nil
	}
	d.pairs(n, key, func(name, path string, k, v *yaml.Node) {
		for _, f := range fields {
			if f.name == name {
				f.fn(path, v)
				return
			}
		}
		names := make([]string, len(fields))
		for i, f := range fields {
			names[i] = f.name
		}
		d.fail(k, path, "unknown key (known keys: %s)", strings.Join(names, ", "))
	})
	return n
}

// pairs calls fn for each key of the mapping n, rejecting keys that are not
// plain scalars, merge keys and duplicates.
func (d *decoder) pairs(n *yaml.Node, key string, fn func(name, path string, k, v *yaml.Node)) {
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			return
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.fail(k, key, "keys must be plain names, not %s", kindName(k))
			continue
		}
		name := k.Value
		path := join(key, name)
		if name == "<<" {
			d.fail(k, path, "merge keys are not supported")
			continue
		}
		if line, dup := seen[name]; dup {
			d.fail(k, path, "duplicate key (first at line %d)", line)
			continue
		}
		seen[name] = k.Line
		d.setLine(path, k.Line)
		fn(name, path, k, v)
	}
}

// named walks a mapping whose keys are names the user chose (connections,
// children): fn gets each name with its value.
func (d *decoder) named(n *yaml.Node, key string, fn func(name, path string, k, v *yaml.Node)) {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "must be a mapping of names to settings, not %s", kindName(n))
		return
	}
	d.pairs(n, key, func(name, path string, k, v *yaml.Node) {
		if !validName(name) {
			d.fail(k, path, "invalid name: use letters, digits, '.', '_' and '-'")
			return
		}
		fn(name, path, k, v)
	})
}

// sequence walks the list n at key.
func (d *decoder) sequence(n *yaml.Node, key string, fn func(path string, v *yaml.Node)) {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, key, "must be a list, not %s", kindName(n))
		return
	}
	for i, v := range n.Content {
		d.setLine(index(key, i), v.Line)
		fn(index(key, i), v)
	}
}

// scalar returns the text of the single value n, or false after reporting
// an error. The error never quotes the value.
func (d *decoder) scalar(n *yaml.Node, key string) (string, *yaml.Node, bool) {
	n = d.resolve(n)
	if n == nil {
		return "", nil, false
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, key, "must be a single value, not %s", kindName(n))
		return "", n, false
	}
	if isNull(n) {
		d.fail(n, key, "needs a value")
		return "", n, false
	}
	return n.Value, n, true
}

// str sets *dst to the value of n.
func (d *decoder) str(dst *string) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		if s, _, ok := d.scalar(n, key); ok {
			*dst = s
		}
	}
}

// item is one element of a string list with its node and key, for errors.
type item struct {
	val  string
	node *yaml.Node
	key  string
}

// list returns the strings of a YAML list, or of a single comma-separated
// string as swanctl.conf writes lists.
func (d *decoder) list(n *yaml.Node, key string) []item {
	r := d.resolve(n)
	if r == nil || isNull(r) {
		return nil
	}
	var out []item
	if r.Kind == yaml.ScalarNode {
		for i, s := range strings.Split(r.Value, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				d.fail(r, index(key, i), "empty list element")
				continue
			}
			out = append(out, item{s, r, index(key, i)})
		}
		return out
	}
	d.sequence(r, key, func(path string, v *yaml.Node) {
		if s, vn, ok := d.scalar(v, path); ok {
			if s == "" {
				d.fail(vn, path, "empty list element")
				return
			}
			out = append(out, item{s, vn, path})
		}
	})
	return out
}

func (d *decoder) boolean(dst *bool) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		s, vn, ok := d.scalar(n, key)
		if !ok {
			return
		}
		switch strings.ToLower(s) {
		case "true", "yes":
			*dst = true
		case "false", "no":
			*dst = false
		default:
			d.fail(vn, key, "must be true or false, not %q", s)
		}
	}
}

// parseUint parses a decimal or 0x-hexadecimal number.
func parseUint(s string, bits int) (uint64, error) {
	base := 10
	digits := s
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		base, digits = 16, h
	}
	if digits == "" || strings.ContainsAny(digits, "+-_") {
		return 0, errors.New("not a number")
	}
	n, err := strconv.ParseUint(digits, base, bits)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return 0, errors.New("too large")
		}
		return 0, errors.New("not a decimal or 0x-hexadecimal number")
	}
	return n, nil
}

// integer sets *dst to a number in [lo, hi].
func (d *decoder) integer(dst *int, lo, hi int) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		s, vn, ok := d.scalar(n, key)
		if !ok {
			return
		}
		neg := lo < 0 && strings.HasPrefix(s, "-")
		v, err := parseUint(strings.TrimPrefix(s, "-"), 62)
		if !neg {
			v, err = parseUint(s, 63)
		}
		if err != nil {
			d.fail(vn, key, "%q: %v", s, err)
			return
		}
		num := int64(v)
		if neg {
			num = -num
		}
		if num < int64(lo) || num > int64(hi) {
			d.fail(vn, key, "must be between %d and %d, not %d", lo, hi, num)
			return
		}
		*dst = int(num)
	}
}

// uint64Field sets *dst to a non-negative number.
func (d *decoder) uint64Field(dst *uint64) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		s, vn, ok := d.scalar(n, key)
		if !ok {
			return
		}
		v, err := parseUint(s, 64)
		if err != nil {
			d.fail(vn, key, "%q: %v", s, err)
			return
		}
		*dst = v
	}
}

// parseDuration parses "90s", "4h", "1h30m", "1d", "2.5d" or a bare number
// of seconds (strongSwan's time format, extended with Go's).
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if s[0] == '-' || s[0] == '+' {
		return 0, errors.New("durations cannot be signed")
	}
	if v, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(v) * time.Second, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.ParseFloat(days, 64)
		if err != nil || v < 0 || v > 3650 || strings.ContainsAny(days, "eEnNxXpP_") {
			return 0, errors.New("invalid number of days (at most 3650)")
		}
		return time.Duration(v * float64(24*time.Hour)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("invalid duration: use a number with s, m, h or d, as in 90s or 4h")
	}
	return v, nil
}

func (d *decoder) duration(dst *time.Duration) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		s, vn, ok := d.scalar(n, key)
		if !ok {
			return
		}
		v, err := parseDuration(s)
		if err != nil {
			d.fail(vn, key, "%q: %v", s, err)
			return
		}
		*dst = v
	}
}

// enum sets *dst to the index of the value in names (values[i]).
func enum[T any](d *decoder, dst *T, names []string, values []T) func(string, *yaml.Node) {
	return func(key string, n *yaml.Node) {
		s, vn, ok := d.scalar(n, key)
		if !ok {
			return
		}
		for i, name := range names {
			if s == name {
				*dst = values[i]
				return
			}
		}
		d.fail(vn, key, "must be %s, not %q", orList(names), s)
	}
}

func orList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// validName reports whether s is a usable name for a connection, child,
// policy or manual SA: it appears in CLI arguments and metric labels.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

var (
	yamlLine        = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	bracketSelector = regexp.MustCompile(`[0-9a-fA-F]\[[a-z0-9%]`)
	// anyUnquoted finds %any where YAML reads a plain scalar.
	anyUnquoted = regexp.MustCompile(`(:|-|\[|,)\s*%any`)
)

// document parses data into its single YAML document's root node. It
// turns the YAML library's errors (and, defensively, panics) into *Error.
func (d *decoder) document(data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil {
			root = nil
			d.fail(nil, "(document)", "YAML parser failed: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(quoteFlowSelectors(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil // empty file: all defaults
		}
		d.yamlError(err, data)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			d.yamlError(err, data)
		} else {
			d.fail(&extra, "(document)", "only one YAML document is allowed (remove the second '---')")
		}
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	return doc.Content[0]
}

func (d *decoder) yamlError(err error, data []byte) {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if strings.Contains(msg, "cannot start any token") && anyUnquoted.Match(data) {
		msg += ` (a value that starts with '%' must be quoted: "%any"; or write any)`
	}
	if bracketSelector.Match(data) && strings.Contains(msg, "did not find expected ',' or ']'") {
		msg += ` (quote selectors with [protocol/port] inside a [...] list: "10.3.0.0/16[tcp/443]")`
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: "(syntax)", Reason: "YAML: " + strings.ReplaceAll(msg, "\n", " ")})
}

// failedUnder reports whether an error was reported for key or a key
// under it.
func (d *decoder) failedUnder(key string) bool {
	for _, e := range d.errs {
		if e.Key == key || strings.HasPrefix(e.Key, key+".") || strings.HasPrefix(e.Key, key+"[") {
			return true
		}
	}
	return false
}
