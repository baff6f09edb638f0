// Package testenv holds what tests share about their environment: where the
// third-party test data lives and how to read it (hex, JSON, packet
// captures), whether this is CI, and whether the test may use root-only
// features such as network namespaces. Tests skip when a requirement of the
// machine is missing (root, a program), except under CI=true, where they fail
// instead: CI runs as root with every package installed by make test. The
// test data is part of the repository (testdata/ at the module root), so a
// missing data file always fails the test.
package testenv

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test, or fails it under CI, saying what is missing.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true but %s", what)
	}
	t.Skipf("skipping: %s", what)
}

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Testdata returns the read-only third-party test data folder, testdata/ at
// the module root (see its README.md and MANIFEST.json). The folder is part
// of the repository: if it is missing the test fails, with or without CI.
func Testdata(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "testdata")
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.json")); err != nil {
		t.Fatalf("testenv: the test data is missing from the repository: %v", err)
	}
	return dir
}

// TestdataFile returns the path of the file rel (slash-separated, relative to
// testdata/) of the test data, failing the test if it does not exist.
func TestdataFile(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Testdata(t), filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: test data file missing from the repository: %v", err)
	}
	return p
}

// RequireRoot skips (or fails under CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "the test needs root (network namespaces, TUN devices)")
	}
}

// RequireCommand returns the path of a program the test needs, skipping (or
// failing under CI) when it is not installed.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not installed (make test installs it)")
	}
	return p
}

// Unhex decodes the hex string s of the test data, failing the test if it
// is not hex.
func Unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ReadJSON decodes the JSON file at path into v, failing the test if it
// cannot be read or decoded.
func ReadJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
