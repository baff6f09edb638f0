package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManifest checks every test data file against the sha256 that
// MANIFEST.json gives for it, so that a changed vector is noticed; that
// every file of testdata/ is listed there; and that README.md names each
// listed file with its origin and licence.
func TestManifest(t *testing.T) {
	dir := Testdata(t)
	raw, err := os.ReadFile(filepath.Join(dir, "MANIFEST.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Files []struct {
			Path   string `json:"path"`
			SHA256 string `json:"sha256"`
		} `json:"files"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) == 0 {
		t.Fatal("MANIFEST.json lists no files")
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{"MANIFEST.json": true}
	for _, f := range m.Files {
		listed[f.Path] = true
		if f.Path != "README.md" && !strings.Contains(string(readme), "| `"+f.Path+"` |") {
			t.Errorf("%s: README.md has no row for it (origin and licence)", f.Path)
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != f.SHA256 {
			t.Errorf("%s: sha256 %s, MANIFEST says %s", f.Path, got, f.SHA256)
		}
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if !listed[filepath.ToSlash(rel)] {
			t.Errorf("%s: not in MANIFEST.json (sha256, source, licence)", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
