package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var section = regexp.MustCompile(`(?m)^(daemon|connections|policies|manual_sas|secrets):`)

// testConfigs returns the configurations written as string constants in
// the repository's tests: string literals, and sums of literals and of
// constants declared in the same directory, that name a top-level section
// and are no fmt template.
func testConfigs(t *testing.T) []example {
	var out []example
	seen := map[string]bool{}
	fset := token.NewFileSet()
	files := map[string][]*ast.File{} // by directory
	names := map[*ast.File]string{}
	walkRepo(t, func(rel, p string) {
		if strings.HasSuffix(p, ".go") {
			f, err := parser.ParseFile(fset, p, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files[filepath.Dir(rel)] = append(files[filepath.Dir(rel)], f)
			names[f] = rel
		}
	})
	for _, dir := range slices.Sorted(maps.Keys(files)) {
		consts := map[string]ast.Expr{}
		for _, f := range files[dir] {
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
		for _, f := range files[dir] {
			rel := names[f]
			if !strings.HasSuffix(rel, "_test.go") {
				continue
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
					out = append(out, example{fmt.Sprintf("%s:%d", rel, fset.Position(e.Pos()).Line), []byte(s)})
				}
				return false
			})
		}
	}
	return out
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
