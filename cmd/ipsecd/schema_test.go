package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	walkRepo(t, func(rel, p string) {
		if !strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml") {
			return
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if isConfig(b) {
			out = append(out, example{rel, b})
		}
	})
	return out
}

// walkRepo calls fn with the path, relative and as is, of every file of
// the repository outside testdata and hidden directories.
func walkRepo(t *testing.T, fn func(rel, path string)) {
	t.Helper()
	err := filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != repoRoot && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(repoRoot, p)
			if err != nil {
				return err
			}
			fn(rel, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
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
