package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/goipsec/goipsec/transform"
)

// The JSON Schema of the configuration (docs/goipsec.schema.json, made
// from config's reference table) and ipsecd --check must give the same
// answer: both accept every configuration shown in the README, in docs/,
// by the demo and by the benchmark, and both refuse the files in
// testdata/invalid. The files in testdata/checkonly are what the schema
// cannot see by nature (docs/config.md lists it): --check refuses them,
// the schema accepts them, and the test says so if that changes.
// testdata/schemaonly is the one case the other way round.

const repoRoot = "../.."

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c, _ := schemaCompiler(t)
	s, err := c.Compile("goipsec.schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// schemaCompiler returns a compiler that knows the schema as
// "goipsec.schema.json", and the schema as JSON values.
func schemaCompiler(t *testing.T) (*jsonschema.Compiler, any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "goipsec.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("goipsec.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	return c, doc
}

// yamlValue reads a configuration as an editor's YAML language server
// does (strict YAML, one document) into JSON values for the validator.
func yamlValue(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// validate reports the schema's verdict on a configuration.
func validate(s *jsonschema.Schema, data []byte) error {
	v, err := yamlValue(data)
	if err != nil {
		return fmt.Errorf("not strict YAML (quote selectors with brackets, see docs/config.md): %w", err)
	}
	return s.Validate(v)
}

// check runs ipsecd -c FILE --check on data, written with mode 0600 into a
// new directory next to empty key and secret files for the relative paths
// it names, and returns its output when it refuses the file.
func check(t *testing.T, name string, data []byte) (ok bool, out string) {
	t.Helper()
	return checkIn(t, t.TempDir(), name, data)
}

// checkIn is check in the directory dir, which it may reuse.
func checkIn(t *testing.T, dir, name string, data []byte) (ok bool, out string) {
	t.Helper()
	var tree any
	if yaml.Unmarshal(data, &tree) == nil {
		for _, p := range filesNamed(tree) {
			if p != "" && !filepath.IsAbs(p) && !strings.Contains(p, "/") {
				if err := os.WriteFile(filepath.Join(dir, p), []byte("s3cret-for-tests\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"-c", file, "--check"}, &stdout, &stderr)
	return code == 0, strings.TrimSpace(stderr.String())
}

// filesNamed returns the values of the keys "key" and "secret_file"
// anywhere in a YAML tree: the files a configuration reads.
func filesNamed(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "key" || k == "secret_file") {
				out = append(out, s)
			}
			out = append(out, filesNamed(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, filesNamed(x)...)
		}
	}
	return out
}

type example struct {
	name string // where it comes from
	data []byte
}

var (
	yamlBlock   = regexp.MustCompile("(?s)```yaml\n(.*?)```")
	placeholder = regexp.MustCompile(`(?m)^(\s*key_(?:in|out):\s*)0x\.\.\.(.*)$`)
	algorithm   = regexp.MustCompile(`(?m)^\s*(protocol|algorithm):\s*(\S+)`)
)

// markdownExamples returns the complete configurations in ```yaml blocks
// of a Markdown file. A block whose first line is indented is a fragment
// of a larger file and is left out. Keys written as "0x..." get real keys
// of the length the block's algorithm needs.
func markdownExamples(t *testing.T, path string) []example {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []example
	for i, m := range yamlBlock.FindAllSubmatch(b, -1) {
		block := m[1]
		if len(block) == 0 || isFragment(block) || isComments(block) {
			continue
		}
		if placeholder.Match(block) {
			block = fillKeys(t, block)
		}
		out = append(out, example{fmt.Sprintf("%s block %d", filepath.Base(path), i+1), block})
	}
	return out
}

// isFragment reports whether a YAML block is part of a larger file: its
// first line is indented.
func isFragment(b []byte) bool { return b[0] == ' ' }

func isComments(b []byte) bool {
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			return false
		}
	}
	return true
}

// fillKeys replaces the "0x..." keys of a documentation example, in order,
// by distinct keys of the length the preceding algorithm needs.
func fillKeys(t *testing.T, block []byte) []byte {
	var out []string
	proto, alg := "esp", ""
	n := byte(0)
	for _, line := range strings.SplitAfter(string(block), "\n") {
		if m := algorithm.FindStringSubmatch(line); m != nil {
			if m[1] == "protocol" {
				proto = m[2]
			} else {
				alg = m[2]
			}
		}
		if m := placeholder.FindStringSubmatch(strings.TrimSuffix(line, "\n")); m != nil {
			parse := transform.ParseESP
			if proto == "ah" {
				parse = transform.ParseAH
			}
			s, err := parse(alg)
			if err != nil {
				t.Fatalf("a key placeholder after algorithm %q: %v", alg, err)
			}
			n++
			line = m[1] + "0x" + hex.EncodeToString(bytes.Repeat([]byte{n}, s.KeyLen())) + m[2] + "\n"
		}
		out = append(out, line)
	}
	return []byte(strings.Join(out, ""))
}

// demoExamples returns the configurations scripts/demo.sh writes: its
// conf function's here-document, filled in with each call's arguments.
func demoExamples(t *testing.T) []example {
	b, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "demo.sh"))
	if err != nil {
		t.Fatal(err)
	}
	doc := regexp.MustCompile(`(?s)cat <<YAML\n(.*?)\nYAML\n`).FindSubmatch(b)
	calls := regexp.MustCompile(`(?m)^conf ((?:\S+ )+)>`).FindAllSubmatch(b, -1)
	if doc == nil || len(calls) == 0 {
		t.Fatal("scripts/demo.sh: no conf here-document or no call of conf")
	}
	var out []example
	for _, c := range calls {
		args := strings.Fields(string(c[1]))
		text := strings.NewReplacer("$work", "/run/goipsec-demo", "$psk", "00112233445566778899aabbccddeeff0011223344556677").Replace(string(doc[1]))
		for i := len(args); i >= 1; i-- {
			text = strings.ReplaceAll(text, fmt.Sprintf("$%d", i), args[i-1])
		}
		if strings.Contains(text, "$") {
			t.Fatalf("scripts/demo.sh: a variable the test does not fill in:\n%s", text)
		}
		out = append(out, example{"scripts/demo.sh conf " + args[0], []byte(text + "\n")})
	}
	return out
}

// benchExamples returns scripts/bench/goipsec.yaml.in filled in as
// scripts/bench.sh does, for both encapsulations.
func benchExamples(t *testing.T) []example {
	b, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "bench", "goipsec.yaml.in"))
	if err != nil {
		t.Fatal(err)
	}
	var out []example
	for _, encap := range []string{"udp", "none"} {
		text := strings.NewReplacer(
			"@DIR@", "/run/goipsec-bench", "@NAME@", "a", "@MTU@", "1400", "@ENCAP@", encap,
			"@LOCAL@", "192.0.2.1", "@REMOTE@", "192.0.2.2", "@LNET@", "10.1.0.0/16", "@RNET@", "10.2.0.0/16",
			"@SPI_OUT@", "0x00001001", "@SPI_IN@", "0x00002001",
			"@KEY_OUT@", "0x"+strings.Repeat("ab", 36), "@KEY_IN@", "0x"+strings.Repeat("cd", 36),
		).Replace(string(b))
		if strings.Contains(text, "@") {
			t.Fatalf("scripts/bench/goipsec.yaml.in: a placeholder the test does not fill in:\n%s", text)
		}
		out = append(out, example{"scripts/bench/goipsec.yaml.in encap " + encap, []byte(text)})
	}
	return out
}

// isConfig reports whether a YAML document is a goipsec configuration:
// a mapping whose keys are all top-level sections.
func isConfig(data []byte) bool {
	var top map[string]any
	if yaml.Unmarshal(data, &top) != nil || len(top) == 0 {
		return false
	}
	for k := range top {
		if !section.MatchString(k + ":") {
			return false
		}
	}
	return true
}

// fileExamples returns the goipsec configurations among the repository's
// *.yaml and *.yml files outside testdata (an example installed as
// /etc/goipsec/goipsec.yaml, say), leaving out other YAML files.
func fileExamples(t *testing.T) []example {
	var out []example
	err := filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != repoRoot && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if isConfig(b) {
			rel, _ := filepath.Rel(repoRoot, p)
			out = append(out, example{rel, b})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCheckSchemaAgreeOnExamples: every configuration the project shows
// (README, docs/*.md, the demo, the benchmark, YAML files in the tree)
// passes both ipsecd --check and the schema.
func TestCheckSchemaAgreeOnExamples(t *testing.T) {
	s := compileSchema(t)
	examples := markdownExamples(t, filepath.Join(repoRoot, "README.md"))
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		examples = append(examples, markdownExamples(t, d)...)
	}
	examples = append(examples, demoExamples(t)...)
	examples = append(examples, benchExamples(t)...)
	examples = append(examples, fileExamples(t)...)
	for _, e := range examples {
		if ok, out := check(t, "goipsec.yaml", e.data); !ok {
			t.Errorf("%s: ipsecd --check refuses it: %s", e.name, out)
		}
		if err := validate(s, e.data); err != nil {
			t.Errorf("%s: the schema refuses it: %v", e.name, err)
		}
	}
	if len(examples) < 8 {
		t.Errorf("found %d examples, want at least 8 (README 2, docs/config.md 3, demo 2, bench 2)", len(examples))
	}
	t.Logf("%d examples", len(examples))
}

// testFiles returns the YAML files of a testdata directory.
func testFiles(t *testing.T, dir string) map[string][]byte {
	names, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no testdata/%s/*.yaml: %v", dir, err)
	}
	out := make(map[string][]byte)
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(n)] = b
	}
	return out
}

var checkKey = regexp.MustCompile(`(?m)^# --check: (.+)$`)

// refusedFor checks that ipsecd --check refuses a test file for the key its
// "# --check: KEY" line names.
func refusedFor(t *testing.T, name string, data []byte) (out string) {
	t.Helper()
	m := checkKey.FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s: no \"# --check: KEY\" line", name)
	}
	ok, out := check(t, name, data)
	if ok {
		t.Errorf("%s: ipsecd --check accepts it", name)
	} else if !strings.Contains(out, ": "+string(m[1])+": ") {
		t.Errorf("%s: ipsecd --check refuses it, but not for %s:\n%s", name, m[1], out)
	}
	return out
}

// TestCheckSchemaAgreeOnInvalid: both refuse each file in testdata/invalid
// (unknown keys, wrong types, bad enum values and durations, missing
// required keys, ...), ipsecd --check for the key the file names.
func TestCheckSchemaAgreeOnInvalid(t *testing.T) {
	s := compileSchema(t)
	for name, data := range testFiles(t, "invalid") {
		refusedFor(t, name, data)
		if err := validate(s, data); err == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
	}
}

// TestCheckSchemaKnownDisagreements: each file in testdata/checkonly is
// refused by ipsecd --check and accepted by the schema, which checks each
// value on its own, not what it means next to the others (the list is in
// docs/config.md). A file the schema comes to refuse belongs in
// testdata/invalid.
func TestCheckSchemaKnownDisagreements(t *testing.T) {
	s := compileSchema(t)
	for name, data := range testFiles(t, "checkonly") {
		if out := refusedFor(t, name, data); !onlyCheckCanSee(out) {
			t.Errorf("%s: a reason not in checkOnly:\n%s", name, out)
		}
		if err := validate(s, data); err != nil {
			t.Errorf("%s: the schema refuses it now: move it to testdata/invalid (%v)", name, err)
		}
	}
	// The other way round: ipsecd is more lenient than the schema here
	// (docs/config.md says so too).
	for name, data := range testFiles(t, "schemaonly") {
		if ok, out := check(t, name, data); !ok {
			t.Errorf("%s: ipsecd --check refuses it now: move it to testdata/invalid:\n%s", name, out)
		}
		if err := validate(s, data); err == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
	}
}

var section = regexp.MustCompile(`(?m)^(daemon|connections|policies|manual_sas|secrets):`)

// testConfigs returns the configurations written as string constants in
// the repository's tests: string literals, and sums of literals and of
// constants declared in the same file, that name a top-level section and
// are no fmt template.
func testConfigs(t *testing.T) []example {
	var out []example
	seen := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != repoRoot {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		consts := map[string]ast.Expr{}
		for _, decl := range f.Decls {
			if g, ok := decl.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							consts[n.Name] = vs.Values[i]
						}
					}
				}
			}
		}
		var fold func(e ast.Expr, depth int) (string, bool)
		fold = func(e ast.Expr, depth int) (string, bool) {
			if depth > 20 {
				return "", false
			}
			switch e := e.(type) {
			case *ast.BasicLit:
				if e.Kind == token.STRING {
					s, err := strconv.Unquote(e.Value)
					return s, err == nil
				}
			case *ast.ParenExpr:
				return fold(e.X, depth+1)
			case *ast.Ident:
				if c, ok := consts[e.Name]; ok {
					return fold(c, depth+1)
				}
			case *ast.BinaryExpr:
				if e.Op == token.ADD {
					x, ok1 := fold(e.X, depth+1)
					y, ok2 := fold(e.Y, depth+1)
					return x + y, ok1 && ok2
				}
			}
			return "", false
		}
		ast.Inspect(f, func(n ast.Node) bool {
			e, ok := n.(ast.Expr)
			if !ok {
				return true
			}
			switch e.(type) {
			case *ast.BasicLit, *ast.BinaryExpr:
			default:
				return true
			}
			s, ok := fold(e, 0)
			if !ok {
				return true
			}
			if section.MatchString(s) && !strings.ContainsAny(s, "%") && !seen[s] {
				seen[s] = true
				rel, _ := filepath.Rel(repoRoot, p)
				out = append(out, example{fmt.Sprintf("%s:%d", rel, fset.Position(e.Pos()).Line), []byte(s)})
			}
			return false
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOnly are the reasons of ipsecd --check that the schema cannot see
// by nature: what docs/config.md lists under "What only ipsecd --check
// checks" (and testdata/checkonly shows, one file each).
var checkOnly = []string{
	"unknown keyword", "proposal", "unknown algorithm", // proposals and algorithms
	"invalid prefix", "selector", "not a unicast IP address", "is not an IP address, prefix, DNS name", "identity \"",
	"psk needs a secret in secrets.ike",
	"is already used by", "is already the spi_in",
	"bytes (", "equal to key_out", "same address family", "in transport mode the selectors", "soft limit is larger",
	"must be between", "invalid number of days", // values written as strings; days
	"cannot read", "cannot stat", "accessible by group or others", "is not a regular file",
	"only one YAML document", "merge keys are not supported", "nodes once aliases are expanded",
	"empty list element",
	`"0x`,                                  // a 0x duration, which YAML reads as a number
	"must be hexadecimal starting with 0x", // a key YAML reads as a number
}

// onlyCheckCanSee reports whether every problem --check printed is one
// the schema cannot see.
func onlyCheckCanSee(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		known := false
		for _, r := range checkOnly {
			known = known || strings.Contains(line, r)
		}
		if !known {
			return false
		}
	}
	return true
}

// TestCheckSchemaAgreeOnTestConfigs: on every configuration in the tests
// that is strict YAML, ipsecd --check and the schema agree, but for what
// only --check can see (checkOnly). The ones that are not strict YAML
// (unquoted selectors with brackets in a one-line list, which ipsecd alone
// accepts, and YAML syntax errors) are counted, not compared.
func TestCheckSchemaAgreeOnTestConfigs(t *testing.T) {
	s := compileSchema(t)
	var accepted, refused, loose int
	for _, e := range testConfigs(t) {
		ok, out := check(t, "goipsec.yaml", e.data)
		if _, err := yamlValue(e.data); err != nil {
			loose++
			continue
		}
		err := validate(s, e.data)
		switch {
		case ok:
			accepted++
			if err != nil {
				t.Errorf("%s: ipsecd --check accepts it, the schema refuses it: %v", e.name, err)
			}
		default:
			refused++
			if err == nil && !onlyCheckCanSee(out) {
				t.Errorf("%s: ipsecd --check refuses it, the schema accepts it:\n%s", e.name, out)
			}
		}
	}
	t.Logf("test configurations: %d accepted and %d refused by both (or for what only --check sees), %d not strict YAML", accepted, refused, loose)
	if accepted < 10 || refused < 10 {
		t.Errorf("only %d accepted and %d refused test configurations: is the search broken?", accepted, refused)
	}
}

// TestCheckSchemaAgreeOnMutations puts, in place of each value of the
// examples of docs/config.md in turn, values of every type and some
// edge values, and runs both on each result: they agree but for what
// only --check can see (checkOnly) and for a number or boolean where
// text belongs, which --check reads as text and the schema refuses (both
// listed in docs/config.md).
func TestCheckSchemaAgreeOnMutations(t *testing.T) {
	s := compileSchema(t)
	probes := []string{"null", `""`, "[]", "{}", "zz", "-1", "0", "99999999999", "true", "yes", "1h", "0x10", "[a]", "[10.1.0.0/16]", "{a: 1}"}
	values := func(n *yaml.Node) []*yaml.Node {
		var out []*yaml.Node
		var walk func(n *yaml.Node)
		walk = func(n *yaml.Node) {
			switch n.Kind {
			case yaml.DocumentNode, yaml.SequenceNode:
				for _, c := range n.Content {
					walk(c)
				}
			case yaml.MappingNode:
				for i := 1; i < len(n.Content); i += 2 {
					out = append(out, n.Content[i])
					walk(n.Content[i])
				}
			}
		}
		walk(n)
		return out
	}
	if testing.Short() {
		probes = []string{"null", "{}", "zz", "-1", "true", "[a]"}
	}
	dir := t.TempDir()
	var cases, both, neither, checkOnlySaw, typed int
	for _, e := range markdownExamples(t, filepath.Join(repoRoot, "docs", "config.md")) {
		var doc yaml.Node
		if err := yaml.Unmarshal(e.data, &doc); err != nil {
			t.Fatal(err)
		}
		for i := range values(&doc) {
			for _, p := range probes {
				var d, v yaml.Node
				if err := yaml.Unmarshal(e.data, &d); err != nil {
					t.Fatal(err)
				}
				if err := yaml.Unmarshal([]byte(p), &v); err != nil {
					t.Fatal(err)
				}
				if len(v.Content) == 0 {
					v.Content = []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!null"}}
				}
				*values(&d)[i] = *v.Content[0]
				b, err := yaml.Marshal(&d)
				if err != nil {
					t.Fatal(err)
				}
				cases++
				ok, out := checkIn(t, dir, "goipsec.yaml", b)
				err = validate(s, b)
				tag := v.Content[0].ShortTag()
				switch {
				case ok && err == nil:
					both++
				case !ok && err != nil:
					neither++
				case ok && (tag == "!!int" || tag == "!!bool") &&
					(strings.Contains(err.Error(), "got number") || strings.Contains(err.Error(), "got boolean")):
					typed++
				case !ok && onlyCheckCanSee(out):
					checkOnlySaw++
				default:
					t.Errorf("%s, value %d set to %s: --check accepts: %v; the schema says: %v\n%s\n%s", e.name, i, p, ok, err, out, b)
				}
			}
		}
	}
	t.Logf("%d mutations: %d accepted by both, %d refused by both, %d refused by --check only for what the schema cannot see, %d numbers or booleans where text belongs",
		cases, both, neither, checkOnlySaw, typed)
}

// findObject returns the JSON pointer of the first object schema, in a
// walk of the schema in key order, whose properties include every name in
// keys, or "".
func findObject(v any, ptr string, keys []string) string {
	m, ok := v.(map[string]any)
	if !ok {
		if l, ok := v.([]any); ok {
			for i, x := range l {
				if p := findObject(x, ptr+"/"+strconv.Itoa(i), keys); p != "" {
					return p
				}
			}
		}
		return ""
	}
	if props, ok := m["properties"].(map[string]any); ok {
		all := true
		for _, k := range keys {
			_, has := props[k]
			all = all && has
		}
		if all {
			return ptr
		}
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if p := findObject(m[k], ptr+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"), keys); p != "" {
			return p
		}
	}
	return ""
}

// TestSchemaAcceptsFragments: the YAML blocks of README.md and docs/*.md
// that are parts of a file (indented, such as the certificate lines in
// the README) name keys of one mapping of the schema, and each value
// passes that key's schema. ipsecd --check cannot read a part of a file.
func TestSchemaAcceptsFragments(t *testing.T) {
	c, schema := schemaCompiler(t)
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range append(files, filepath.Join(repoRoot, "README.md")) {
		md, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range yamlBlock.FindAllSubmatch(md, -1) {
			if len(m[1]) == 0 || !isFragment(m[1]) {
				continue
			}
			var part map[string]any
			if err := yaml.Unmarshal(m[1], &part); err != nil {
				t.Errorf("%s: a YAML fragment that is not strict YAML: %v\n%s", filepath.Base(f), err, m[1])
				continue
			}
			keys := make([]string, 0, len(part))
			for k := range part {
				keys = append(keys, k)
			}
			ptr := findObject(schema, "", keys)
			if ptr == "" {
				t.Errorf("%s: no mapping of the schema has the keys %v of the fragment\n%s", filepath.Base(f), keys, m[1])
				continue
			}
			for _, k := range keys {
				s, err := c.Compile("goipsec.schema.json#" + ptr + "/properties/" + k)
				if err != nil {
					t.Fatal(err)
				}
				v, err := yamlValue(mustYAML(t, part[k]))
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Validate(v); err != nil {
					t.Errorf("%s: fragment key %s: %v", filepath.Base(f), k, err)
				}
			}
			n++
		}
	}
	t.Logf("%d fragments", n)
}

func mustYAML(t *testing.T, v any) []byte {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
