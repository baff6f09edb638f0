// Package docstest checks that the documentation names only tests that
// exist, so that docs/threat-model.md cannot point at a test that was
// renamed or removed.
package docstest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/internal/testenv"
)

// testFuncs returns, for each package directory's last element (and for
// the module root, "goipsec"), the names of the Test and Fuzz functions
// declared in its _test.go files.
func testFuncs(t *testing.T, mod string) map[string]map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]*)\(`)
	out := map[string]map[string]bool{}
	err := filepath.WalkDir(mod, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != mod {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg := filepath.Base(filepath.Dir(path))
		if filepath.Dir(path) == mod {
			pkg = "goipsec"
		}
		if out[pkg] == nil {
			out[pkg] = map[string]bool{}
		}
		for _, m := range decl.FindAllSubmatch(b, -1) {
			out[pkg][string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestThreatModelNamesExistingTests checks every `pkg.TestName` and
// `pkg.FuzzName` in docs/threat-model.md against the tree, and that every
// table row of an attacker or failure names at least one test.
func TestThreatModelNamesExistingTests(t *testing.T) {
	mod := testenv.RepoRoot(t)
	doc, err := os.ReadFile(filepath.Join(mod, "docs", "threat-model.md"))
	if err != nil {
		t.Fatal(err)
	}
	funcs := testFuncs(t, mod)
	ref := regexp.MustCompile("`([a-z0-9/]+)\\.((?:Test|Fuzz)[A-Za-z0-9_]*)`")
	refs := 0
	for i, line := range strings.Split(string(doc), "\n") {
		for _, m := range ref.FindAllStringSubmatch(line, -1) {
			refs++
			pkg := filepath.Base(m[1])
			if !funcs[pkg][m[2]] {
				t.Errorf("docs/threat-model.md:%d: %s.%s: no such test in a package %q", i+1, m[1], m[2], pkg)
			}
		}
		row := strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| ---") &&
			!strings.HasPrefix(line, "| Can ") && !strings.HasPrefix(line, "| Event ")
		if row && !ref.MatchString(line) {
			t.Errorf("docs/threat-model.md:%d: a row that names no test: %s", i+1, line)
		}
	}
	if refs < 20 {
		t.Errorf("docs/threat-model.md names %d tests; the parser may be broken", refs)
	}
}
