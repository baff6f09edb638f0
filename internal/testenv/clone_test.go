package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cloneTests are the packages and tests that read the third-party test data
// (testdata/ at the module root): known-answer vectors, corpora and
// captures; and the check that no file or link leads outside the
// repository. TestSelfContainedClone runs them in a fresh clone.
var cloneTests = []struct{ pkg, run string }{
	{"./ah", "^(TestMalformedCorpus|FuzzOpen)$"},
	{"./esp", "^(TestLinuxReference|TestRFC7634AppendixA)$"},
	{"./ike", "^FuzzHandlePacket$"},
	{"./ike/ikewire", "^(TestCorpusNoPanic|TestLibreswanPackets|TestCapturesRoundTrip|TestRFC7634AppendixB|TestPI2Frame2|FuzzParse)$"},
	{"./ike/keys", "^(TestSKEYSEEDKAT|TestPRFPlusKAT|TestDeriveCAVP)$"},
	{"./internal/testenv", "^(TestManifest|TestReadCaptureTestdata|TestRepositoryStandsAlone)$"},
	{"./packet", "^(TestIPv4ChecksumsOfInnerPackets|TestDecodeInnerPackets|TestFixTransportChecksumCaptures)$"},
	{"./transform", "KAT|^TestRFC7634AppendixA$|^TestLinuxESP$|Wycheproof"},
}

// TestSelfContainedClone clones the repository's HEAD into a fresh
// temporary directory, outside the working tree and with nothing beside it
// (no sibling folders to borrow data from), and runs there, with CI=true, the
// tests that read known-answer vectors, corpora and captures: the
// repository must carry everything they need. It checks what is committed,
// not the working tree's uncommitted changes. It skips only when the
// working tree is not a git checkout (a release tarball) or, outside CI,
// when git is not installed.
func TestSelfContainedClone(t *testing.T) {
	root := RepoRoot(t)
	git, err := exec.LookPath("git")
	if err != nil {
		Missing(t, "git is not installed")
	}
	top, err := exec.Command(git, "-C", root, "rev-parse", "--show-toplevel").Output()
	if err != nil || filepath.Clean(strings.TrimSpace(string(top))) != filepath.Clean(root) {
		if InCI() {
			t.Fatalf("CI=true but %s is not the top of a git checkout (git rev-parse: %q, %v)", root, top, err)
		}
		t.Skipf("skipping: %s is not a git checkout", root)
	}
	head, err := exec.Command(git, "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	rev := strings.TrimSpace(string(head))

	parent := t.TempDir() // a fresh directory: the clone has no siblings
	clone := filepath.Join(parent, "goipsec")
	run(t, parent, nil, git, "clone", "--quiet", "--no-checkout", root, clone)
	run(t, clone, nil, git, "checkout", "--quiet", "--detach", rev)
	if ents, err := os.ReadDir(parent); err != nil || len(ents) != 1 {
		t.Fatalf("the clone's parent %s should hold the clone alone: %v, %v", parent, ents, err)
	}

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	// CI=true turns every skip for a missing requirement into a failure;
	// GOFLAGS=-mod=readonly and GOPROXY=off keep the module graph as
	// go.mod and go.sum say, from the module cache. One go test for all
	// packages, so that they build and run in parallel; the -run pattern is
	// the union of theirs.
	env := append(os.Environ(), "CI=true", "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOWORK=off")
	args := []string{"test", "-count=1", "-json"}
	var runs []string
	for _, c := range cloneTests {
		runs = append(runs, c.run)
		args = append(args, c.pkg)
	}
	args = append(args[:3], append([]string{"-run", strings.Join(runs, "|")}, args[3:]...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir, cmd.Env = clone, env
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	runErr := cmd.Run()

	passed := map[string]int{} // top-level tests passed, by package
	var text strings.Builder   // the output go test -v would print
	dec := json.NewDecoder(&out)
	for dec.More() {
		var ev struct{ Action, Package, Test, Output string }
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("go test -json: %v\n%s", err, stderr.String())
		}
		text.WriteString(ev.Output)
		if ev.Test == "" || strings.Contains(ev.Test, "/") {
			// Subtests may skip: vectors of algorithms goipsec does not
			// implement, such as DES, say so and skip.
			continue
		}
		switch ev.Action {
		case "pass":
			passed[ev.Package]++
		case "skip":
			t.Errorf("%s: %s skipped in the clone under CI=true", ev.Package, ev.Test)
		}
	}
	if runErr != nil {
		lines := strings.Split(text.String(), "\n")
		t.Fatalf("go test in the clone: %v\n%s\n%s", runErr, stderr.String(), strings.Join(lines[max(0, len(lines)-200):], "\n"))
	}
	for _, c := range cloneTests {
		pkg := modulePath + "/" + strings.TrimPrefix(c.pkg, "./")
		if passed[pkg] == 0 {
			t.Errorf("%s: -run %q ran no test in the clone", pkg, c.run)
		}
		t.Logf("%s: %d tests passed in the clone", pkg, passed[pkg])
	}
}

// modulePath is the path of this module, as go.mod names it.
const modulePath = "github.com/goipsec/goipsec"

// run runs name with args in dir (with env, or the test's environment when
// env is nil), failing the test with the output if it fails, and returns
// its combined output.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out.String())
	}
	return out.String()
}
