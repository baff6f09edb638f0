package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/config.md and docs/goipsec.schema.json from reference_test.go")

const (
	referenceFile = "../docs/config.md"
	schemaFile    = "../docs/goipsec.schema.json"
)

// refIndex returns the reference rows by path.
func refIndex() map[string]refKey {
	m := make(map[string]refKey, len(reference))
	for _, r := range reference {
		m[r.path] = r
	}
	return m
}

// objectPath is the path of the object that holds the keys of the mapping
// row r: the row itself, or one name or item inside it.
func objectPath(r refKey) string {
	switch r.kind {
	case kNames:
		return r.path + ".<name>"
	case kItems:
		return r.path + "[]"
	}
	return r.path
}

// parentPath is the object path a key belongs to.
func parentPath(path string) string {
	i := strings.LastIndex(path, ".")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// children returns the rows whose parent is the object at obj, in table
// order.
func children(obj string) []refKey {
	var out []refKey
	for _, r := range reference {
		if parentPath(r.path) == obj {
			out = append(out, r)
		}
	}
	return out
}

// objectPaths returns the root ("") and every object path of the table.
func objectPaths() []string {
	out := []string{""}
	for _, r := range reference {
		if !r.kind.scalar() && r.kind != kList && r.kind != kTS {
			out = append(out, objectPath(r))
		}
	}
	return out
}

// Patterns of the values the decoder reads from strings.
const (
	intPattern  = `^-?([0-9]+|0[xX][0-9a-fA-F]+)$`
	uintPattern = `^([0-9]+|0[xX][0-9a-fA-F]+)$`
	boolPattern = `^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo])$`
	// durationPattern: seconds, days ("1d", "2.5d") or Go's form ("1h30m").
	durationPattern = `^([0-9]+|([0-9]+(\.[0-9]*)?|\.[0-9]+)d|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	hexKeyPattern   = `^0[xX]([0-9a-fA-F]{2})+$`
	namePattern     = `^[A-Za-z0-9._-]{1,64}$`
)

// nonEmpty is a list that must have an item: one the parser requires.
var nonEmpty = map[string]any{"$ref": "#/$defs/nonEmptyList"}

// schemaRules are the constraints between the keys of one object that the
// schema can express, by object path. The parser makes the same checks.
var schemaRules = map[string]map[string]any{
	// An empty local or remote means auth: pubkey without certificates.
	"connections.<name>.local": {
		"type": "object",
		"if":   map[string]any{"required": []string{"auth"}, "properties": map[string]any{"auth": map[string]any{"const": "psk"}}},
		"then": map[string]any{"properties": map[string]any{"certs": false, "cacerts": false, "key": false}},
		"else": map[string]any{"required": []string{"certs"}, "properties": map[string]any{"certs": nonEmpty}},
	},
	"connections.<name>.remote": {
		"type": "object",
		"if":   map[string]any{"required": []string{"auth"}, "properties": map[string]any{"auth": map[string]any{"const": "psk"}}},
		"then": map[string]any{"properties": map[string]any{"certs": false, "cacerts": false}},
		"else": map[string]any{"anyOf": []any{
			map[string]any{"required": []string{"certs"}, "properties": map[string]any{"certs": nonEmpty}},
			map[string]any{"required": []string{"cacerts"}, "properties": map[string]any{"cacerts": nonEmpty}},
		}},
	},
	"connections.<name>.children.<name>": {
		"allOf": []any{
			map[string]any{"not": map[string]any{"required": []string{"esp_proposals", "ah_proposals"}}},
			// Dynamic selectors: both left out, in transport mode, or in
			// tunnel mode for a group's connection (which the schema
			// cannot tell); without mode, both left out means transport
			// mode. Both or neither.
			map[string]any{"dependentRequired": map[string]any{"local_ts": []string{"remote_ts"}, "remote_ts": []string{"local_ts"}}},
		},
	},
	"manual_sas[]": {
		"allOf": []any{
			map[string]any{
				"if":   map[string]any{"required": []string{"mode"}, "properties": map[string]any{"mode": map[string]any{"const": "transport"}}},
				"else": map[string]any{"required": []string{"local_ts", "remote_ts"}},
			},
			map[string]any{
				"if":   map[string]any{"required": []string{"protocol"}, "properties": map[string]any{"protocol": map[string]any{"const": "ah"}}},
				"then": map[string]any{"properties": map[string]any{"encap": map[string]any{"const": "none"}}},
			},
		},
	},
	"secrets.ike[]": {
		"oneOf": []any{map[string]any{"required": []string{"secret"}}, map[string]any{"required": []string{"secret_file"}}},
	},
}

// description is a row's text for the schema.
func (r refKey) description() string {
	d := r.doc
	if r.def != "" {
		d += " Default: " + r.def + "."
	}
	return d
}

func (r refKey) valueSchema() map[string]any {
	intOrString := func(num map[string]any, pattern string) map[string]any {
		num["type"] = "integer"
		return map[string]any{"anyOf": []any{num, map[string]any{"type": "string", "pattern": pattern}}}
	}
	var s map[string]any
	switch r.kind {
	case kMapping, kNames, kItems:
		s = objectSchema(objectPath(r))
		switch r.kind {
		case kNames:
			s = map[string]any{
				"type":                 []string{"object", "null"},
				"propertyNames":        map[string]any{"pattern": namePattern},
				"additionalProperties": s,
			}
			if r.required {
				s["type"] = "object"
				s["minProperties"] = 1
			}
		case kItems:
			s = map[string]any{"type": []string{"array", "null"}, "items": s}
		}
	case kString, kAddr:
		s = map[string]any{"type": "string"}
	case kAbsPath:
		s = map[string]any{"type": "string", "pattern": "^/"}
	case kFile, kSecret:
		s = map[string]any{"type": "string", "minLength": 1}
	case kInt:
		s = intOrString(map[string]any{"minimum": r.lo, "maximum": r.hi}, intPattern)
	case kUint:
		s = intOrString(map[string]any{"minimum": 0}, uintPattern)
	case kSPI:
		s = intOrString(map[string]any{"minimum": 256, "maximum": uint32(1<<32 - 1)}, uintPattern)
	case kBool:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "boolean"}, map[string]any{"type": "string", "pattern": boolPattern}}}
	case kDuration:
		s = map[string]any{"$ref": "#/$defs/duration"}
	case kEnum:
		s = map[string]any{"type": "string", "enum": r.enum}
	case kList, kTS:
		def := "list"
		if r.kind == kTS {
			def = "selectors"
		}
		s = map[string]any{"$ref": "#/$defs/" + def}
		if r.required {
			s = map[string]any{"allOf": []any{s, nonEmpty}}
		}
	case kHexKey:
		// YAML 1.2 readers, such as editors' language servers, read an
		// unquoted 0x key as a (huge) number, which the schema must let
		// pass; the go.yaml.in reader, and so ipsecd, keeps the text.
		s = map[string]any{"anyOf": []any{map[string]any{"type": "string", "pattern": hexKeyPattern}, map[string]any{"type": "integer"}}}
	default:
		panic("config: reference: unknown kind " + string(r.kind))
	}
	if r.refused {
		s = map[string]any{"not": map[string]any{}}
	}
	for k, v := range r.schema {
		s[k] = v
	}
	s["description"] = r.description()
	return s
}

// objectSchema is the schema of the object at obj: its keys, no others.
func objectSchema(obj string) map[string]any {
	props := map[string]any{}
	var required []string
	for _, r := range children(obj) {
		props[r.name()] = r.valueSchema()
		if r.required {
			required = append(required, r.name())
		}
	}
	s := map[string]any{
		"type":                 []string{"object", "null"},
		"additionalProperties": false,
		"properties":           props,
	}
	if required != nil {
		s["type"] = "object"
		s["required"] = required
	}
	for k, v := range schemaRules[obj] {
		s[k] = v
	}
	return s
}

// genSchema returns the JSON Schema (draft 2020-12) of the file.
func genSchema() []byte {
	root := objectSchema("")
	root["type"] = []string{"object", "null"}
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = "goipsec configuration (ipsecd -c FILE)"
	root["description"] = "The YAML configuration of ipsecd. Generated from config/reference_test.go; docs/config.md describes every key. ipsecd --check makes further checks the schema cannot (see docs/config.md)."
	strList := map[string]any{"type": "string", "minLength": 1}
	root["$defs"] = map[string]any{
		"duration": map[string]any{
			"description": "A duration: a number of seconds, a number of days (1d, 2.5d) or Go's form (90s, 4h, 1h30m).",
			"anyOf": []any{
				map[string]any{"type": "integer", "minimum": 0, "maximum": uint32(1<<32 - 1)},
				map[string]any{"type": "string", "pattern": durationPattern},
			},
		},
		"list": map[string]any{
			"description": "A list, or one string of comma-separated items as swanctl.conf writes lists.",
			"anyOf":       []any{strList, map[string]any{"type": "array", "items": strList}, map[string]any{"type": "null"}},
		},
		"nonEmptyList": map[string]any{
			"description": "A list with at least one item.",
			"anyOf":       []any{strList, map[string]any{"type": "array", "items": strList, "minItems": 1}},
		},
		"selectors": map[string]any{
			"description": "Traffic selectors in strongSwan syntax, prefix[protocol/port], as a list or one comma-separated string.",
			"anyOf":       []any{strList, map[string]any{"type": "array", "items": strList}, map[string]any{"type": "null"}},
		},
	}
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// typeText is a row's type as docs/config.md writes it.
func (r refKey) typeText() string {
	switch r.kind {
	case kEnum:
		return "one of `" + strings.Join(r.enum, "`, `") + "`"
	case kInt:
		return fmt.Sprintf("integer, %d to %d", r.lo, r.hi)
	case kSPI:
		return "integer (SPI), 256 to 2^32-1"
	case kUint:
		return "integer, 0 to 2^64-1"
	}
	return string(r.kind)
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// genReference returns docs/config.md.
func genReference() []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration reference

<!-- Generated from config/reference_test.go by
     go test ./config -run 'TestConfigReference|TestConfigSchema' -update
     Edit that table, not this file; a test fails when they differ. -->

ipsecd reads one YAML file (` + "`ipsecd -c FILE`" + `); its vocabulary is strongSwan's
swanctl.conf where the concept is the same. ` + "`ipsecd -c FILE --check`" + ` validates it
and prints every problem as ` + "`file:line: key: reason`" + `. Unknown keys are errors.

Values:

- **list**: a YAML list, or one string of comma-separated items as
  swanctl.conf writes them (` + "`proposals: aes256gcm16-prfsha256-x25519, default`" + `).
- **duration**: ` + "`90s`, `4h`, `1h30m`" + ` (Go), ` + "`1d`, `2.5d`" + ` (days, at most 3650), or a bare
  number of seconds.
- **integer**: decimal or hexadecimal with ` + "`0x`" + `; **boolean**: ` + "`true`, `false`, `yes`, `no`" + `.
- **list of traffic selectors**: strongSwan's ` + "`prefix[protocol/port]`" + `, as
  ` + "`10.1.0.0/16`, `10.2.0.53/32[udp/53]`, `::/0[tcp/443]`" + `. In a one-line ` + "`[...]`" + `
  list ipsecd accepts a selector with brackets unquoted; strict YAML, and so an
  editor, needs it quoted: ` + "`remote_ts: [10.2.0.0/16, \"10.3.0.0/16[tcp/443]\"]`" + `.
- **mapping of names**: keys are names you choose (letters, digits, ` + "`.`, `_`, `-`" + `;
  at most 64), shown as ` + "`<name>`" + ` below. In **list of mappings**, ` + "`[]`" + ` stands for each item.
- **file path**: relative paths are resolved against the configuration file's
  directory.

A file that holds secrets itself (` + "`secret`, `key_in`, `key_out`" + `) must be readable by
its owner only (` + "`chmod 600`" + `), or it is refused.

## Editor support: the JSON Schema

[goipsec.schema.json](goipsec.schema.json) (JSON Schema draft 2020-12, generated
from the same table) gives editors completion, descriptions and checks of
every key. With the YAML language server (VS Code's YAML extension, Neovim,
Helix, ...), name it on the file's first line, by a path absolute or
relative to the YAML file (or a URL):

` + "```yaml" + `
# yaml-language-server: $schema=./goipsec.schema.json
` + "```" + `

The schema refuses unknown keys, wrong types, bad enum values
and durations, and missing required keys, as ipsecd does; tests hold the two
to the same answer on every example here and in the README, the demo and the
benchmark configurations, and on a set of invalid files.

What only ` + "`ipsecd --check`" + ` checks:

`)
	for _, l := range schemaLimits {
		b.WriteString("- " + l + "\n")
	}
	b.WriteString("\nAnd one the other way round: " + parserLenient + "\n")
	sections := []struct{ key, title string }{
		{"daemon", "daemon"},
		{"connections", "connections"},
		{"policies", "policies"},
		{"manual_sas", "manual_sas"},
		{"secrets", "secrets"},
		{"policy_sources", "policy_sources"},
	}
	for _, sec := range sections {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", sec.title, refIndex()[sec.key].doc)
		b.WriteString("| Key | Type | Default | Meaning | Example |\n|---|---|---|---|---|\n")
		for _, r := range reference {
			if r.path != sec.key && !strings.HasPrefix(r.path, sec.key+".") && !strings.HasPrefix(r.path, sec.key+"[]") {
				continue
			}
			def := r.def
			if def != "" {
				def = "`" + def + "`"
			}
			if r.required {
				def = "required"
			}
			ex := ""
			if r.example != "" {
				ex = "`" + r.name() + ": " + r.example + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.path, mdCell(r.typeText()), mdCell(def), mdCell(r.doc), mdCell(ex))
		}
	}
	b.WriteString("\n## Examples\n")
	for _, e := range refExamples {
		fmt.Fprintf(&b, "\n### %s\n\n%s\n\n```yaml\n%s```\n", e.title, e.intro, e.text)
	}
	return b.Bytes()
}

// checkGenerated compares a generated file with the one in the
// repository, or rewrites it with -update.
func checkGenerated(t *testing.T, path string, want []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./config -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: go test ./config -run %s -update rewrites it from config/reference_test.go", filepath.Base(path), t.Name())
	}
}

// TestConfigReference keeps docs/config.md equal to what the reference
// table generates.
func TestConfigReference(t *testing.T) {
	checkGenerated(t, referenceFile, genReference())
}

// TestConfigSchema keeps docs/goipsec.schema.json equal to what the
// reference table generates.
func TestConfigSchema(t *testing.T) {
	checkGenerated(t, schemaFile, genSchema())
}

// TestConfigReferenceTable checks the table itself: unique paths, parents
// documented, a type and a text on every row, an example on every value,
// enum and range on the rows that need them.
func TestConfigReferenceTable(t *testing.T) {
	idx := refIndex()
	if len(idx) != len(reference) {
		t.Errorf("duplicate paths in the reference table")
	}
	objects := objectPaths()
	for _, r := range reference {
		if !slices.Contains(objects, parentPath(r.path)) {
			t.Errorf("%s: its parent %q is not documented as a mapping", r.path, parentPath(r.path))
		}
		if r.doc == "" || !strings.HasSuffix(r.doc, ".") {
			t.Errorf("%s: no meaning, or not a sentence", r.path)
		}
		if r.kind.scalar() || r.kind == kList || r.kind == kTS {
			if r.example == "" {
				t.Errorf("%s: no example", r.path)
			}
		} else if r.example != "" {
			t.Errorf("%s: a mapping has its example in refExamples", r.path)
		}
		if (r.kind == kEnum) != (len(r.enum) > 0) {
			t.Errorf("%s: enum values for kind %s", r.path, r.kind)
		}
		if (r.kind == kInt) != (r.lo != r.hi) {
			t.Errorf("%s: range for kind %s", r.path, r.kind)
		}
	}
}
