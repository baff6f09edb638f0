package testenv

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pendingLinks are link targets that another branch adds; each entry must
// go once the file exists (the test says so), so none lingers.
var pendingLinks = map[string]bool{}

// mdLink matches the target of an inline Markdown link or image.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestRepositoryStandsAlone checks the repository's own text files: none
// refers to the folder that once sat beside the checkout ("../" "shared")
// or to an absolute path of a build machine, and every relative link of
// every Markdown file names a file or directory of the repository.
func TestRepositoryStandsAlone(t *testing.T) {
	root := RepoRoot(t)
	outside := []string{"../" + "shared", "/" + "work/"}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" || rel == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || rel == ".git" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return nil // binary: captures, archives
		}
		for _, s := range outside {
			if i := bytes.Index(b, []byte(s)); i >= 0 {
				t.Errorf("%s:%d: refers to %q, outside the repository", rel, bytes.Count(b[:i], []byte("\n"))+1, s)
			}
		}
		if strings.HasSuffix(rel, ".md") {
			checkLinks(t, root, rel, string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range pendingLinks {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err == nil {
			t.Errorf("%s exists now: remove it from pendingLinks", p)
		}
	}
}

// checkLinks reports the relative links of the Markdown file rel (text md)
// whose target is not in the repository.
func checkLinks(t *testing.T, root, rel, md string) {
	t.Helper()
	for _, m := range mdLink.FindAllStringSubmatch(md, -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		target, _, _ = strings.Cut(target, "#")
		p := filepath.Clean(filepath.Join(filepath.Dir(filepath.Join(root, filepath.FromSlash(rel))), filepath.FromSlash(target)))
		inRepo, err := filepath.Rel(root, p)
		if err != nil || inRepo == ".." || strings.HasPrefix(inRepo, ".."+string(filepath.Separator)) {
			t.Errorf("%s: link %q leads outside the repository", rel, m[1])
			continue
		}
		if pendingLinks[filepath.ToSlash(inRepo)] {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: link %q: no such file in the repository", rel, m[1])
		}
	}
}
